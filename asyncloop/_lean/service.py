"""One AWS service over the lean transport: prepare, sign, send, retry, map errors.

Why: this is the part of an aiobotocore call that must stay botocore's in meaning but not in
cost. Everything that is decided once per run is taken from the aiobotocore client the run
creates anyway, when the channel opens: the endpoint (botocore's endpoint ruleset with the
client's region, ``endpoint_url``, ``AWS_ENDPOINT_URL_<SERVICE>``, FIPS and dual-stack
settings), the signing region and name, the timeouts, CA bundle and pool size, the attempt cap.
Credentials come from the client's credentials object for every request through
`CredentialSource` (static keys read once; refreshable ones reused only until botocore's
advisory refresh point, then ``get_frozen_credentials()`` refreshes them as on the sdk path):
never stale. Error answers (the rare path) are parsed by the client's own botocore parser, so the
error code is the one botocore reports (``__type``, ``x-amzn-query-error``,
``x-amzn-ErrorType``), and mapped by `asyncloop._error_table.error_from_response` through the one
table.

Per request, only what changes is computed: each kind of request (an Invoke of one function
with one invocation type, each SQS operation) is `prepare`d once into its signing shape and
the fixed bytes of its head; a call signs the body, appends the date, token, signature and
length to that head and sends it on the channel's `HttpPool`. A first attempt that succeeds
(nearly every call) returns without entering the retry loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from .._error_table import error_from_response, map_errors
from .._exceptions import AwsError, ClosedError
from .answer import Reply
from .credentials import CredentialSource
from .http import HttpSettings, ssl_context
from .pool import HttpPool
from .retry import DEFAULT_MAX_ATTEMPTS, Retrier
from .signing import SigningShape, SigV4Signer

__all__ = ("Prepared", "ServiceChannel")


def _max_attempts(client: Any) -> int:
    from .._exceptions import ConfigError

    retries = getattr(client.meta.config, "retries", None) or {}
    mode = retries.get("mode", "standard")
    if mode != "standard":
        raise ConfigError(
            f"the lean transport retries as botocore's standard mode, got retry_mode={mode!r}: "
            "use the sdk transport for it",
            field="retry_mode",
        )
    total = retries.get("total_max_attempts")
    return int(total) if total is not None else DEFAULT_MAX_ATTEMPTS


class Prepared(NamedTuple):
    """One kind of request, prepared by `ServiceChannel.prepare`: its signing shape and the
    fixed bytes of its head (the request line and every header but the date, the token, the
    signature and the length)."""

    shape: SigningShape
    head: bytes


class ServiceChannel:
    """Signed, retried requests to one service, configured from an aiobotocore `client`.

    ``await channel.open(operation, params)`` resolves the endpoint as botocore does for that
    operation and opens the HTTP pool; `prepare` makes a kind of request, `call` sends one;
    ``await channel.aclose()`` closes.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._settings = HttpSettings.from_client(client)
        self._retrier = Retrier(
            max_attempts=_max_attempts(client),
            operation_model=client.meta.service_model.operation_model,
        )
        self._pool: HttpPool | None = None
        self._signer: SigV4Signer | None = None
        self._credentials = CredentialSource(client._request_signer._credentials)
        self._endpoint = ""
        self._host = ""
        self._base_path = ""
        self._closed = False

    @property
    def endpoint_url(self) -> str:
        return self._endpoint

    @property
    def settings(self) -> HttpSettings:
        return self._settings

    @property
    def retrier(self) -> Retrier:
        return self._retrier

    async def open(self, operation: str, params: Mapping[str, Any]) -> None:
        """Resolve the endpoint and signing scope for `operation`, and open the pool."""
        from botocore.auth import _host_from_url

        client = self._client
        model = client.meta.service_model.operation_model(operation)
        context: dict[str, Any] = {}
        with map_errors(f"ResolveEndpoint({operation})"):
            url, _, _ = await client._resolve_endpoint_ruleset(model, dict(params), context)
        signing = context.get("signing", {})
        region = signing.get("region") or client.meta.region_name
        name = signing.get("signing_name") or client.meta.service_model.signing_name
        self._signer = SigV4Signer(service=name, region=region)
        self._endpoint = url
        self._host = _host_from_url(url)
        self._base_path = urlsplit(url).path.rstrip("/")
        settings = self._settings
        self._pool = HttpPool(
            url,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            pool_size=settings.pool_size,
            ssl_context=ssl_context(settings.verify) if url.startswith("https:") else None,
        )

    async def aclose(self) -> None:
        """Close the pool; idempotent."""
        pool, self._pool = self._pool, None
        self._closed = True
        if pool is not None:
            await pool.aclose()

    def _check_open(self) -> tuple[HttpPool, SigV4Signer]:
        pool, signer = self._pool, self._signer
        if pool is None or signer is None:
            if self._closed:
                raise ClosedError("the lean transport is closed")
            raise RuntimeError("the lean transport is not open: use `async with`")
        return pool, signer

    def prepare(self, path: str, headers: Mapping[str, str]) -> Prepared:
        """A ``POST`` to `path` (already percent-encoded) with `headers`, signed as given."""
        _, signer = self._check_open()
        full_path = self._base_path + path
        shape = signer.shape(method="POST", host=self._host, path=full_path, headers=headers)
        # Not signed, as aiobotocore adds them after signing
        unsigned = {"Accept-Encoding": "identity"}
        if self._settings.user_agent:
            unsigned["User-Agent"] = self._settings.user_agent
        lines = [f"POST {full_path} HTTP/1.1\r\n"]
        for name, value in {**shape.headers, **unsigned}.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} has a line break: {value!r}")
            lines.append(f"{name}: {value}\r\n")
        return Prepared(shape, "".join(lines).encode("ascii"))

    async def _send(
        self, pool: HttpPool, prepared: Prepared, body: bytes, read_timeout: float | None
    ) -> Reply:
        source = self._credentials
        credentials = source.current() or await source.get()
        amz_date, token, authorization = prepared.shape.signature(body, credentials)
        if token is None:
            tail = (
                f"X-Amz-Date: {amz_date}\r\nAuthorization: {authorization}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
        else:
            tail = (
                f"X-Amz-Date: {amz_date}\r\nX-Amz-Security-Token: {token}\r\n"
                f"Authorization: {authorization}\r\nContent-Length: {len(body)}\r\n\r\n"
            )
        return await pool.request(
            b"".join((prepared.head, tail.encode(), body)), read_timeout=read_timeout
        )

    async def call(
        self,
        operation: str,
        prepared: Prepared,
        body: bytes,
        *,
        read_timeout: float | None = None,
        queue_url: str | None = None,
        function_name: str | None = None,
    ) -> Reply:
        """Send `body` as `prepared` with retries; a 2xx `Reply`.

        Raises the `asyncloop.AwsError` the table gives for an error answer (after botocore's
        retries), `TransportError` for a network failure, `CredentialsError` without
        credentials. `read_timeout` (seconds) overrides the pool's (a long poll's longer read).
        """
        pool, _ = self._check_open()
        first: Reply | Exception
        try:
            reply = await self._send(pool, prepared, body, read_timeout)
        except Exception as exc:
            first = exc
        else:
            if reply.status_code < 300:
                self._retrier.succeeded(reply)
                return reply
            first = reply
        # The rare path: what failed goes to the retrier as its first attempt
        return await self._retry(
            operation,
            first,
            pool,
            prepared,
            body,
            read_timeout=read_timeout,
            queue_url=queue_url,
            function_name=function_name,
        )

    async def _retry(
        self,
        operation: str,
        first: Reply | Exception,
        pool: HttpPool,
        prepared: Prepared,
        body: bytes,
        *,
        read_timeout: float | None,
        queue_url: str | None,
        function_name: str | None,
    ) -> Reply:
        async def send() -> Reply:
            return await self._send(pool, prepared, body, read_timeout)

        async def parse_error(reply: Reply) -> Mapping[str, Any]:
            model = self._client.meta.service_model.operation_model(operation)
            parsed: Mapping[str, Any] = await self._client._response_parser.parse(
                {
                    "status_code": reply.status_code,
                    "headers": reply.headers,
                    "body": reply.body,
                    "context": {"operation_name": operation},
                },
                model.output_shape,
            )
            return parsed

        try:
            reply, parsed = await self._retrier.run(
                operation, send, parse_error, endpoint_url=self._endpoint, first=first
            )
        except Exception:
            with map_errors(operation, queue_url=queue_url, function_name=function_name):
                raise
        if parsed is None:
            return reply
        error = parsed.get("Error", {})
        raise _error(
            operation,
            error,
            reply.status_code,
            queue_url=queue_url,
            function_name=function_name,
        )


def _error(
    operation: str,
    error: Mapping[str, Any],
    status: int,
    *,
    queue_url: str | None,
    function_name: str | None,
) -> AwsError:
    return error_from_response(
        operation,
        code=error.get("Code"),
        message=error.get("Message"),
        status=status,
        alt_code=error.get("QueryErrorCode"),
        queue_url=queue_url,
        function_name=function_name,
    )
