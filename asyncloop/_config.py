"""Configuration: one frozen, keyword-only dataclass per concern, checked on construction.

Every check and its error message come from `_validate` (`check_range`...), so the message
always states the field, the allowed range and the value it got.
All durations are seconds (float).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar, get_args

from ._exceptions import ConfigError
from ._limits import INVOCATION_TYPES, MAX_BATCH, MAX_VISIBILITY, MAX_WAIT_TIME, InvocationType
from ._validate import (
    check_bool,
    check_choice,
    check_int,
    check_range,
    parse_bool,
    parse_value,
    validate_function_name,
)

__all__ = ("AwsConfig", "ConsumerConfig", "LambdaConfig", "build_from_env")

DeleteBy = Literal["consumer", "worker"]
PayloadFormat = Literal["seed", "sqs-event"]
RetryMode = Literal["standard", "adaptive", "legacy"]
Transport = Literal["sdk", "lean"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerConfig:
    """How the consumer receives, dispatches, acknowledges and stops."""

    receivers: int = 4
    """Concurrent ReceiveMessage long polls (1..1024). Default 4. More receivers keep a
    high `max_in_flight` fed; each poll asks for at most `batch_size` messages."""

    max_in_flight: int = 64
    """Dispatches under way at once, and messages held from receive to dispatch done
    (1..100000). Default 64. With `prefetch`, up to that many more are held. A receive asks
    only for ``min(batch_size, free capacity)`` and waits while it is zero."""

    prefetch: int = 0
    """Messages held beyond `max_in_flight`, received ahead so that a finished dispatch
    starts the next at once rather than after a ReceiveMessage round trip (0..100000).
    Default 0: no message waits locally for a dispatch slot. A prefetched message waits in
    the hand-off until a dispatch finishes (about one dispatch's duration): its visibility
    timeout runs meanwhile and the heartbeat extends it as it does any held message's; a
    stop releases it unstarted (visibility 0) at once, while dispatches under way drain.
    Dispatches under way never exceed `max_in_flight` (nor the adaptive limit); held
    messages are at most the limit plus `prefetch`. Worth about one receive round trip per
    dispatch: set it to a batch or two (10-20) for short, steady invokes; leave it at 0 for
    long handlers, FIFO queues with few groups, or several consumers sharing a queue
    (prefetched messages are invisible to them)."""

    batch_size: int = 10
    """MaxNumberOfMessages per receive (1..10). Default 10."""

    receive_batch_window: float = 0.0
    """Longest a receiver waits for more free capacity before it receives (0..1 s; 0 turns
    it off). Default 0. While messages are flowing (its last receive returned some), a
    receiver that took fewer than `batch_size` free slots waits up to this long for more,
    then asks SQS for all it took in one call, as Lambda's batching window does: fewer
    ReceiveMessage calls per message, at the cost of up to this long idle on the slots it
    waits with. It only waits for capacity: it never holds messages, and a stop ends the
    wait at once."""

    wait_time_seconds: int = 20
    """Long-poll wait per receive (0..20, whole seconds as SQS takes them). Default 20.
    Clamped to the time left before `duration`/`deadline`, so no poll outlives the run."""

    visibility_timeout: int | None = None
    """VisibilityTimeout asked on receive (0..43200 s), or None for the queue's own.
    Default None. When set, it is also the timeout the visibility heartbeat works from
    (otherwise the Consumer's `visibility_timeout` argument, the queue's own, is)."""

    delete_by: DeleteBy = "consumer"
    """``consumer``: delete after a successful dispatch, in batches. ``worker``: never delete;
    the worker deletes with the receipt handle it was given (the seed's design).
    Default consumer."""

    until_empty: bool = False
    """Stop once every receiver got an empty answer, nothing is held or being released, and
    no message this run released with a delay (a throttled one, see
    `throttle_release_visibility`) is still invisible. Default False. Receives then wait at
    most 1 s (``min(wait_time_seconds, 1)``, still a long poll), so a drained queue ends the
    run about a second after the last message is done, not after a whole idle
    `wait_time_seconds`. A message that failed stays invisible for its visibility timeout (or
    failure backoff) and is not waited for. With ``wait_time_seconds=0`` on real SQS an empty
    answer can be a sampling miss: long-poll."""

    duration: float | None = None
    """Stop after this many seconds (> 0), or None. Default None. The stop then takes up to
    `shutdown_grace` + `ack_flush_timeout` more, and `Stats.duration_s` counts it."""

    deadline: float | None = None
    """Stop at this time on the event loop's clock (``anyio.current_time()``), or None. The
    earlier of `duration` and `deadline` wins."""

    shutdown_grace: float = 30.0
    """On stop, the one deadline for receiving and draining (0..3600 s), counted from the
    moment the stop began. Default 30. A receive under way may finish until then (what it
    returns is released) and is abandoned there; dispatches under way may finish until then,
    and are then cancelled and their messages released. Time a receive took is not given
    again to the drain: the whole stop takes at most `shutdown_grace` + `ack_flush_timeout`
    (40 s with the defaults, so a supervisor's kill timeout should be longer)."""

    ack_flush_interval: float = 0.05
    """Longest a successful message waits for its batch of deletes to fill (0.001..10 s).
    Default 0.05. Full batches of 10 go at once."""

    ack_flush_timeout: float = 10.0
    """On stop, how long the final shielded flush of deletes and releases may take (0.1..300 s),
    after the `shutdown_grace` deadline (or as soon as the drain ended). Default 10. Deletes
    still unsent then are given up (those messages are delivered again: duplicates, never
    losses)."""

    max_pending_acks: int = 1000
    """Deletes waiting or under way before workers wait for them (10..1000000). Default 1000.
    A slow DeleteMessageBatch then holds capacity, so it slows receiving instead of growing
    memory."""

    delete_concurrency: int | None = None
    """DeleteMessageBatch and ChangeMessageVisibilityBatch calls under way at once (1..256),
    or None to size it to the load: ``max(8, ceil(max_in_flight / 32))``, capped at 256.
    Default None. Too few calls cap throughput at about ``10 * calls / delete latency``: 8
    calls at 20 ms per DeleteMessageBatch top out near 4,000 messages/s."""

    delete_attempts: int = 3
    """Tries per delete entry that fails inside a batch (1..10), after botocore's own retries of
    the call. Default 3. After the last, the message is left to redeliver and counted. Also the
    tries per entry of a visibility change (release, failure backoff, heartbeat extension)."""

    failure_backoff_base: float | None = None
    """Failure backoff (0..43200 s), or None/0 to leave a failed message's visibility as it is
    (it returns when the queue's visibility timeout ends). Default None. When set, a dispatch
    that fails (not a throttle) sets the message's visibility to ``base * 2**(receives - 1)``
    seconds (``ApproximateReceiveCount``), capped at `failure_backoff_cap`, with equal jitter
    (a random value between half and all of it), rounded up to whole seconds. It goes through
    the batched ChangeMessageVisibilityBatch path, so retries of a bad message back off while
    its receive count climbs to the queue's maxReceiveCount (and the DLQ)."""

    failure_backoff_cap: float = 900.0
    """Largest failure backoff visibility (1..43200 s), at least `failure_backoff_base`.
    Default 900. A payload over the target's limit (`PayloadTooLarge`) never succeeds: it
    gets the cap at once."""

    adaptive_concurrency: bool = True
    """Lower the dispatch concurrency when the target throttles (``DispatchThrottled``, a
    Lambda 429): additive increase (+1 per `limit` successes), multiplicative decrease (halved
    once per window of dispatches), floor 1, ceiling `max_in_flight`. Receiving follows the
    limit, so no more messages are held than can be dispatched. Default True. Costs nothing
    until the first throttle."""

    throttle_retries: int = 3
    """In-process re-dispatches of a throttled message (0..100) before it is released. Default
    3. A retry waits `throttle_retry_delay` (full jitter, doubling, at most 2 s) and for a free
    slot under the lowered limit; it does not cost a receive, so a throttling storm does not
    burn receive counts towards the DLQ. With no known visibility timeout the wait is not
    checked against it (a message whose timeout ends first is a duplicate, never a loss)."""

    throttle_retry_delay: float = 0.05
    """Base of the wait before an in-process retry of a throttled dispatch (0..10 s).
    Default 0.05."""

    throttle_release_visibility: int = 1
    """A throttled message that used up `throttle_retries` (or is throttled while stopping) is
    released with a visibility drawn from 0..this many whole seconds (0..900), so the retries
    of a burst spread out. Default 1. It costs one receive when it comes back."""

    max_visibility_extension: float = 3600.0
    """Visibility heartbeat: total seconds a held message's visibility may be extended beyond
    its first timeout (0..43200; 0 turns the heartbeat off). Default 3600. Needs the queue's
    visibility timeout: `visibility_timeout` here, or the Consumer's `visibility_timeout`
    argument. Messages held with less than half of it left are extended by it again, in
    ChangeMessageVisibilityBatch calls of at most 10; an extension that finds the receipt
    handle invalid cancels the dispatch and counts ``lease_lost``."""

    def __post_init__(self) -> None:
        check_int("receivers", self.receivers, 1, 1024)
        check_int("max_in_flight", self.max_in_flight, 1, 100_000)
        check_int("prefetch", self.prefetch, 0, 100_000)
        check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        check_range("receive_batch_window", self.receive_batch_window, 0.0, 1.0)
        check_int("wait_time_seconds", self.wait_time_seconds, 0, MAX_WAIT_TIME)
        if self.visibility_timeout is not None:
            check_int("visibility_timeout", self.visibility_timeout, 0, MAX_VISIBILITY)
        check_choice("delete_by", self.delete_by, get_args(DeleteBy))
        check_bool("until_empty", self.until_empty)
        if self.duration is not None:
            check_range("duration", self.duration, 0.001, None)
        if self.deadline is not None:
            check_range("deadline", self.deadline, 0.0, None)
        check_range("shutdown_grace", self.shutdown_grace, 0.0, 3600.0)
        check_range("ack_flush_interval", self.ack_flush_interval, 0.001, 10.0)
        check_range("ack_flush_timeout", self.ack_flush_timeout, 0.1, 300.0)
        check_int("max_pending_acks", self.max_pending_acks, 10, 1_000_000)
        if self.delete_concurrency is not None:
            check_int("delete_concurrency", self.delete_concurrency, 1, 256)
        check_int("delete_attempts", self.delete_attempts, 1, 10)
        if self.failure_backoff_base is not None:
            check_range(
                "failure_backoff_base", self.failure_backoff_base, 0.0, float(MAX_VISIBILITY)
            )
        check_range("failure_backoff_cap", self.failure_backoff_cap, 1.0, float(MAX_VISIBILITY))
        if self.failure_backoff_base and self.failure_backoff_cap < self.failure_backoff_base:
            raise ConfigError(
                f"failure_backoff_cap must be >= failure_backoff_base "
                f"({self.failure_backoff_base}), got {self.failure_backoff_cap!r}",
                field="failure_backoff_cap",
            )
        check_bool("adaptive_concurrency", self.adaptive_concurrency)
        check_int("throttle_retries", self.throttle_retries, 0, 100)
        check_range("throttle_retry_delay", self.throttle_retry_delay, 0.0, 10.0)
        check_int("throttle_release_visibility", self.throttle_release_visibility, 0, 900)
        check_range(
            "max_visibility_extension", self.max_visibility_extension, 0.0, float(MAX_VISIBILITY)
        )

    @property
    def ack_concurrency(self) -> int:
        """`delete_concurrency`, or the size derived from `max_in_flight` when it is None."""
        if self.delete_concurrency is not None:
            return self.delete_concurrency
        return max(8, min(256, -(-self.max_in_flight // 32)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConsumerConfig:
        """Build from ``ASYNCLOOP_<FIELD>`` variables (``ASYNCLOOP_MAX_IN_FLIGHT=128``)."""
        return build_from_env(cls, environ, overrides)


@dataclass(frozen=True, slots=True, kw_only=True)
class LambdaConfig:
    """How messages become Lambda invokes."""

    function_name: str
    """The function's name, ARN or partial ARN; required."""

    invocation_type: InvocationType = "Event"
    """``Event`` (asynchronous: success means accepted, 202) or ``RequestResponse`` (success
    means the function returned without ``FunctionError``). Default Event."""

    payload: PayloadFormat = "seed"
    """``seed``: the seed's consumer.js record ``{"Records": [{"sqs": {...}}]}``;
    ``sqs-event``: a record in the shape of Lambda's own SQS event. Default seed."""

    def __post_init__(self) -> None:
        validate_function_name(self.function_name)
        check_choice("invocation_type", self.invocation_type, INVOCATION_TYPES)
        check_choice("payload", self.payload, get_args(PayloadFormat))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LambdaConfig:
        """Build from ``ASYNCLOOP_<FIELD>`` variables."""
        return build_from_env(cls, environ, overrides)


@dataclass(frozen=True, slots=True, kw_only=True)
class AwsConfig:
    """How asyncloop talks to AWS (or an emulator)."""

    region: str | None = None
    """The region, or None for the environment's (``AWS_REGION``, profile). Default None."""

    endpoint_url: str | None = None
    """One endpoint for every service (moto, fauxqs, a proxy), or None for AWS. Default None."""

    retry_mode: RetryMode = "standard"
    """botocore's retry mode. Default standard (exponential backoff with jitter)."""

    max_attempts: int = 5
    """botocore's attempts per call, the first included (1..20). Default 5."""

    connect_timeout: float = 5.0
    """Seconds to open a connection (0.1..120). Default 5."""

    read_timeout: float = 70.0
    """Seconds to wait for an answer (1..1000). Default 70: above SQS's 20 s long poll; raise it
    above your function's timeout for RequestResponse invokes."""

    max_pool_connections: int | None = None
    """HTTP connections per client (1..10000), or None to size it to receivers + max_in_flight
    (botocore's default of 10 would silently cap concurrency). Default None."""

    transport: Transport = "lean"
    """How the consumer's hot calls (ReceiveMessage, DeleteMessageBatch,
    ChangeMessageVisibilityBatch, Invoke) reach AWS. ``lean``: signed and sent on asyncloop's
    own keep-alive HTTP/1.1 connections without botocore's per-call machinery
    (``asyncloop._lean``: less CPU per call, same answers and errors, botocore's standard
    retries, credentials and endpoints), sized and configured like the SDK clients'. ``sdk``:
    through aiobotocore end to end (`SqsQueue`, `AioLambdaInvoker`); the lean transport
    refuses, with a `ConfigError` saying to use ``sdk``, what it does not do: a `retry_mode`
    other than standard, an HTTP(S) proxy, client certificates. Control-plane calls
    (GetQueueAttributes, GetFunction) use aiobotocore either way. Default lean."""

    def __post_init__(self) -> None:
        check_choice("transport", self.transport, get_args(Transport))
        check_choice("retry_mode", self.retry_mode, get_args(RetryMode))
        check_range("max_attempts", self.max_attempts, 1, 20)
        check_range("connect_timeout", self.connect_timeout, 0.1, 120.0)
        check_range("read_timeout", self.read_timeout, 1.0, 1000.0)
        if self.max_pool_connections is not None:
            check_range("max_pool_connections", self.max_pool_connections, 1, 10_000)
        if self.endpoint_url is not None and not re.match(r"^https?://[^/\s]+", self.endpoint_url):
            raise ConfigError(
                f"endpoint_url must be an http(s) URL, got {self.endpoint_url!r}",
                field="endpoint_url",
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> AwsConfig:
        """Build from ``ASYNCLOOP_<FIELD>`` variables."""
        return build_from_env(cls, environ, overrides)


def _env_name(field: str) -> str:
    """``max_in_flight`` -> ``ASYNCLOOP_MAX_IN_FLIGHT``."""
    return "ASYNCLOOP_" + field.upper()


def _from_env(
    cls: type[Any], environ: Mapping[str, str] | None, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """`cls`'s fields parsed from their ``ASYNCLOOP_<FIELD>`` variables, then `overrides`
    (a field that is overridden is not read, so its variable cannot fail the build)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(cls):
        key = _env_name(f.name)
        if key in env and f.name not in overrides:
            values[f.name] = parse_value(env[key], _field_kind(f.type), name=key, field=f.name)
    values.update(overrides)
    return values


_C = TypeVar("_C")


def build_from_env(
    cls: type[_C], environ: Mapping[str, str] | None, overrides: Mapping[str, Any]
) -> _C:
    """`cls` from `_from_env`; a validation error names the variables, not the fields, of
    everything the caller did not override (that is what the user can set)."""
    try:
        return cls(**_from_env(cls, environ, overrides))
    except ConfigError as exc:
        if exc.field is None or exc.field in overrides:
            raise
        message = str(exc)
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name not in overrides:
                message = re.sub(rf"\b{f.name}\b", _env_name(f.name), message)
        raise ConfigError(message, field=exc.field) from exc


def _field_kind(annotation: object) -> Callable[[str], Any]:
    text = str(annotation)
    if "bool" in text:
        return parse_bool
    if text.startswith("int"):
        return int
    if text.startswith("float"):
        return float
    return str
