"""Retries for the lean transport, with botocore's ``standard`` mode doing the deciding.

Why: a retry policy is easy to get subtly different (which codes, which statuses, the quota,
the jitter), and the consumer's AIMD and at-least-once reasoning were measured against
botocore's. So this module writes only the loop; the decisions are botocore's own objects
from ``botocore.retries.standard``, fed the same `RetryContext` botocore builds:

- ``StandardRetryConditions(max_attempts)``: the attempt cap (the client's
  ``total_max_attempts``, default 3), transient codes and statuses (500, 502, 503, 504),
  the throttling codes, the service model's retryable errors, connection errors;
- ``ExponentialBackoff``: ``rand(0, 1) * min(2 ** (attempt - 1), 20)`` seconds;
- ``RetryQuotaChecker(RetryQuota())``: one 500-token quota per service and transport
  (as per client in botocore), 5 per retry, 10 per timeout, paid back on success.

A first attempt that succeeds never enters the loop: the caller makes it and tells the
retrier (`succeeded`: botocore's after-call quota payback); any other outcome is handed to
`run` as its first attempt. The
HTTP pool's exceptions are turned into the botocore exceptions aiobotocore raises for the
same failure, so the checkers (and later `asyncloop._error_table.map_errors`) see what they
see on the sdk path.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import anyio

from .answer import ProtocolError, Reply
from .pool import ConnectError, ConnectTimeout, Disconnected, ReadTimeout, TlsError

__all__ = ("DEFAULT_MAX_ATTEMPTS", "Retrier", "as_botocore_error")

DEFAULT_MAX_ATTEMPTS: Final = 3


# As aiobotocore's httpsession.AIOHTTPSession.send maps aiohttp's: a refused or unresolvable
# endpoint, a connection closed early or a garbled answer, the two timeouts, TLS
_BOTOCORE_ERRORS: Final[tuple[tuple[type[Exception] | tuple[type[Exception], ...], str], ...]] = (
    (ConnectError, "EndpointConnectionError"),
    ((Disconnected, ProtocolError), "ConnectionClosedError"),
    (ConnectTimeout, "ConnectTimeoutError"),
    (ReadTimeout, "ReadTimeoutError"),
    (TlsError, "SSLError"),
)


def as_botocore_error(exc: BaseException, endpoint_url: str) -> Exception | None:
    """The botocore exception aiobotocore raises for the same network failure, or None."""
    from botocore import exceptions as bce

    for kinds, name in _BOTOCORE_ERRORS:
        if isinstance(exc, kinds):
            error: Exception = getattr(bce, name)(endpoint_url=endpoint_url, error=exc)
            return error
    # Anything else is not a network failure (a bug is not retried)
    return None


class Retrier:
    """Runs one call's attempts as botocore's standard retry mode would.

    `max_attempts` counts the first attempt (1..20); `operation_model(name)` gives botocore's
    operation model (its checkers read the modeled retryable errors and the service name).
    `sleep` and `rand` are for tests. One `Retrier` per service: its quota is shared by
    every call to that service.
    """

    def __init__(
        self,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        operation_model: Callable[[str], Any],
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        from botocore.retries import quota, standard

        if isinstance(max_attempts, bool) or not 1 <= max_attempts <= 20:
            raise ValueError(f"max_attempts must be in 1..20, got {max_attempts!r}")
        self._max_attempts = max_attempts
        self._standard = standard
        self._conditions = standard.StandardRetryConditions(max_attempts=max_attempts)
        self._backoff = standard.ExponentialBackoff(random=rand)
        self._quota = standard.RetryQuotaChecker(quota.RetryQuota())
        self._quota_state = self._quota._quota
        self._operation_model = operation_model
        self._sleep = sleep

    @property
    def max_attempts(self) -> int:
        return self._max_attempts

    @property
    def available_quota(self) -> int:
        """Tokens left in the retry quota (500 when nothing failed lately)."""
        return int(self._quota_state.available_capacity)

    def succeeded(self, reply: Reply) -> None:
        """A first attempt succeeded: botocore's after-call hook pays the quota back."""
        self._quota.release_retry_quota({}, reply)

    async def run(
        self,
        operation: str,
        send: Callable[[], Awaitable[Reply]],
        parse_error: Callable[[Reply], Awaitable[Mapping[str, Any]]],
        *,
        endpoint_url: str,
        first: Reply | Exception | None = None,
    ) -> tuple[Reply, Mapping[str, Any] | None]:
        """Attempt `send` until it succeeds or botocore's policy says stop.

        `first` is the first attempt's outcome when the caller made it (a reply or the
        exception it raised): then `send` makes the retries only. Returns the successful
        reply and None, or the last error reply and its parsed form
        (``{"Error": {"Code": ...}}``, from `parse_error`) for the caller to raise; re-raises
        the last network failure as its botocore exception (the pool's one as its cause) and
        any other exception as it is.
        """
        context: dict[str, Any] = {}
        model = None
        attempt = 1
        outcome = first
        while True:
            if outcome is None:
                try:
                    outcome = await send()
                except Exception as exc:
                    outcome = exc
            reply: Reply | None = None
            parsed: Mapping[str, Any] | None = None
            caught: Exception | None = None
            cause: Exception | None = None
            if isinstance(outcome, Reply):
                reply = outcome
            else:
                mapped = as_botocore_error(outcome, endpoint_url)
                if mapped is None:
                    raise outcome
                caught, cause = mapped, outcome
            if reply is not None and reply.status_code < 300:
                # botocore's after-call hook: pays the quota back
                self._quota.release_retry_quota(context, reply)
                return reply, None
            if reply is not None:
                parsed = await parse_error(reply)
            if model is None:
                model = self._operation_model(operation)
            retry_context = self._standard.RetryContext(
                attempt_number=attempt,
                operation_model=model,
                parsed_response=parsed,
                http_response=reply,
                caught_exception=caught,
                request_context=context,
            )
            if self._conditions.is_retryable(retry_context) and self._quota.acquire_retry_quota(
                retry_context
            ):
                await self._sleep(self._backoff.delay_amount(retry_context))
                attempt += 1
                outcome = None
                continue
            if caught is not None:
                raise caught from cause
            assert reply is not None
            return reply, parsed
