"""The loop's runs and the watchdog, sequenced over the seams; and their AWS wiring.

`run_token` is one loop invocation: check the kill switch, claim the generation, consume until
the deadline less the safety margin, decide 0/1/2 tokens, re-put with backoff. `run_watchdog`
re-seeds dead loops and keeps `min_loops`. Both talk only to a `LoopRuntime` (lease store,
token sink, consumer run, backlog, clock, sleep), so the tests and the year-long simulation
drive the very code that runs in Lambda. `LoopApp` keeps one event loop and one set of AWS
clients across warm invocations.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from ._config import AwsConfig, ConsumerConfig, LambdaConfig, validate_queue_url
from ._emf import NAMESPACE, Writer, _stdout, emit_metrics, log
from ._exceptions import AwsError, ConfigError
from ._lease import LeaseStore
from ._loop_control import (
    Decision,
    LoopPolicy,
    LoopToken,
    backoff_delays,
    decide_tokens,
    needs_reseed,
    next_empty_generations,
    parse_token,
    safety_margin,
)

__all__ = (
    "KinesisTokenSink",
    "LoopApp",
    "LoopRuntime",
    "LoopSettings",
    "RunOutcome",
    "TokenSink",
    "WatchdogReport",
    "build_aws_runtime",
    "put_token",
    "run_token",
    "run_watchdog",
)

_T = TypeVar("_T")

COUNTERS = ("received", "succeeded", "failed", "deleted", "released")


class TokenSink(Protocol):
    """Where tokens go (a Kinesis stream). One attempt per call; raises `AwsError`."""

    async def put(self, token: LoopToken) -> None: ...


ConsumeFn = Callable[[float], Awaitable[Mapping[str, int]]]
"""Consume for this many seconds; the counters of `COUNTERS`."""


@dataclass(slots=True, kw_only=True)
class LoopRuntime:
    """Everything a run touches. The AWS one comes from `build_aws_runtime`."""

    lease: LeaseStore
    sink: TokenSink
    consume: ConsumeFn
    backlog: Callable[[], Awaitable[int]]
    policy: LoopPolicy
    margin: float
    """Seconds kept back from the invocation's deadline (`safety_margin`)."""
    clock: Callable[[], float] = time.time
    """Epoch seconds: leases are compared across machines."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    new_loop_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    dimensions: Mapping[str, str] = field(default_factory=dict)
    namespace: str = NAMESPACE
    write: Writer = _stdout
    metrics: bool = True


@dataclass(slots=True)
class RunOutcome:
    """What one token's run did."""

    loop_id: str
    generation: int
    action: str
    """``ran`` (re-put), ``ended`` (idle or killed), ``stale``, ``unknown``, ``put_failed``."""
    tokens: int = 0
    reason: str = ""
    """Why it put that many tokens, or why it ended (`Decision.reason`, ``killed``)."""
    claim: str = ""
    """``claimed``, or ``takeover`` when it re-ran a generation whose run died unput."""
    counts: dict[str, int] = field(default_factory=dict)
    backlog: int | None = None
    spawned: str | None = None


@dataclass(slots=True)
class WatchdogReport:
    enabled: bool
    live: int = 0
    leases: int = 0
    reseeded: list[str] = field(default_factory=list)
    spawned: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    put_failed: int = 0


async def put_token(rt: LoopRuntime, token: LoopToken) -> bool:
    """Put `token`, retried `put_attempts` times with doubling backoff; whether it went."""
    delays = backoff_delays(rt.policy)
    for attempt in range(rt.policy.put_attempts):
        try:
            await rt.sink.put(token)
        except AwsError as exc:
            log(
                "put_failed",
                level="WARNING",
                write=rt.write,
                loop_id=token.loop_id,
                generation=token.generation,
                attempt=attempt + 1,
                code=exc.code,
            )
            if attempt < len(delays):
                await rt.sleep(delays[attempt])
        else:
            return True
    return False


async def run_token(rt: LoopRuntime, token: LoopToken, *, remaining: float) -> RunOutcome:
    """One loop run for `token` with `remaining` seconds before the invocation is killed.

    The run reports a failure (``put_failed``, or an exception) only when its next token is
    certainly not on the stream, so that the retry of `token` may take over; once the token
    is out, a failing lease write after it is logged (``lease_write_failed``), not raised.
    """
    now = rt.clock()
    control = await rt.lease.get_control()
    if not control.enabled:
        ended = await rt.lease.end(token.loop_id, token.generation, floor=0)
        return _finish(
            rt,
            RunOutcome(
                token.loop_id, token.generation, "ended" if ended else "stale", reason="killed"
            ),
        )
    outcome, before = await rt.lease.claim(token, now=now, run_until=now + remaining)
    if outcome not in ("claimed", "takeover") or before is None:
        return _finish(rt, RunOutcome(token.loop_id, token.generation, outcome))
    following = LoopToken(token.loop_id, token.generation + 1)
    run = RunOutcome(token.loop_id, token.generation, "ran", claim=outcome)
    try:
        decision = await _consume_and_decide(
            rt, run, following, before.empty_generations, control.live, remaining
        )
    except Exception:
        # Let this token's retry take over at once: nothing was put
        await _quietly(rt.lease.release(token.loop_id, following.generation))
        raise
    if decision is None:
        return _finish(rt, run)
    if not await put_token(rt, following):
        await rt.lease.release(token.loop_id, following.generation)
        run.action = "put_failed"
        return _finish(rt, run)
    run.tokens = 1
    # The loop goes on: nothing after this put may report the run failed (its retry would
    # only exit stale), so the scale-out is best effort.
    if decision.tokens == 2:
        spawned = await _after_put(
            rt,
            token,
            "spawn",
            rt.lease.spawn(rt.new_loop_id(), now=rt.clock(), max_loops=rt.policy.max_loops),
        )
        # A spawn whose put fails is a live lease without a token: the watchdog re-seeds it
        if spawned is not None and await _seed(rt, spawned, token):
            run.tokens, run.spawned = 2, spawned.loop_id
    return _finish(rt, run)


async def _consume_and_decide(
    rt: LoopRuntime,
    run: RunOutcome,
    following: LoopToken,
    empty_before: int,
    live: int,
    remaining: float,
) -> Decision | None:
    """Consume, decide, and either end the loop (None) or reserve `following`."""
    policy = rt.policy
    run_for = remaining - rt.margin
    if policy.run_seconds is not None:
        run_for = min(run_for, policy.run_seconds)
    if run_for > 0:
        try:
            run.counts = dict(await rt.consume(run_for))
        # The loop outlives a bad run: a queue or Lambda outage must not end it
        except Exception as exc:
            log(
                "consume_failed",
                level="ERROR",
                write=rt.write,
                loop_id=run.loop_id,
                error=type(exc).__name__,
                detail=str(exc),
            )
    else:
        log(
            "no_time_to_consume",
            level="WARNING",
            write=rt.write,
            loop_id=run.loop_id,
            remaining=remaining,
            margin=rt.margin,
        )
    try:
        run.backlog = await rt.backlog()
    except AwsError:
        run.backlog = None
    empty = next_empty_generations(
        empty_before, received=run.counts.get("received", 0), backlog=run.backlog
    )
    decision = decide_tokens(
        enabled=True, backlog=run.backlog, live_loops=live, empty_generations=empty, policy=policy
    )
    if decision.tokens == 0:
        if await rt.lease.end(run.loop_id, following.generation, floor=policy.min_loops):
            run.action, run.reason = "ended", decision.reason
            return None
        decision = Decision(1, "at_min_loops")
    run.reason = decision.reason
    # Reserve the generation before its token can exist (the invariant in `_lease`): from
    # here on no copy of the run's token can take this generation over.
    await rt.lease.mark_put(following, empty_generations=empty)
    return decision


async def _after_put(
    rt: LoopRuntime, token: LoopToken, what: str, call: Awaitable[_T]
) -> _T | None:
    """`call`'s answer, or None (logged) when the lease store failed: a write after the loop's
    own token went out is not the run's failure."""
    try:
        return await call
    except AwsError as exc:
        _lease_write_failed(rt, token, what, exc)
        return None


def _lease_write_failed(rt: LoopRuntime, token: LoopToken, what: str, exc: AwsError) -> None:
    log(
        "lease_write_failed",
        level="WARNING",
        write=rt.write,
        loop_id=token.loop_id,
        generation=token.generation,
        operation=what,
        code=exc.code,
    )


async def _seed(rt: LoopRuntime, token: LoopToken, by: LoopToken) -> bool:
    """Reserve and put a new loop's first token; whether it went. A loop whose reservation or
    put failed is a live lease without a token: the watchdog re-seeds it."""
    try:
        await rt.lease.mark_put(token)
    except AwsError as exc:
        _lease_write_failed(rt, by, "mark_put", exc)
        return False
    return await put_token(rt, token)


async def _quietly(call: Awaitable[object]) -> None:
    with suppress(AwsError):
        await call


def _finish(rt: LoopRuntime, run: RunOutcome) -> RunOutcome:
    if rt.metrics:
        metrics: dict[str, float | int] = {name: run.counts.get(name, 0) for name in COUNTERS}
        # `generation` is the heartbeat the template's alarm counts: only runs that claimed
        if run.claim:
            metrics["generation"] = run.generation
        metrics["tokens"] = run.tokens
        if run.backlog is not None:
            metrics["backlog"] = run.backlog
        emit_metrics(
            metrics,
            dimensions=rt.dimensions,
            namespace=rt.namespace,
            properties={
                "event": "loop_run",
                "loop_id": run.loop_id,
                "action": run.action,
                "reason": run.reason,
            },
            write=rt.write,
        )
    return run


async def run_watchdog(rt: LoopRuntime) -> WatchdogReport:
    """Re-seed loops with no claim for `heartbeat_limit`; start loops up to `min_loops`."""
    policy = rt.policy
    now = rt.clock()
    control = await rt.lease.get_control()
    report = WatchdogReport(control.enabled, control.live)
    leases = await rt.lease.list_leases()
    report.leases = len(leases)
    for item in leases:
        if not needs_reseed(item, now, policy):
            continue
        if not control.enabled:
            # Switched off and silent: no run will come to end it, so end it here
            if await rt.lease.end(item.loop_id, item.generation, floor=0):
                report.ended.append(item.loop_id)
            continue
        # The re-seed reserves its generation in the same write (see `_lease`)
        token = await rt.lease.reseed(item, now=now)
        if token is None:
            continue
        if await put_token(rt, token):
            report.reseeded.append(token.loop_id)
        else:
            report.put_failed += 1
    live = control.live - len(report.ended)
    while control.enabled and live < policy.min_loops:
        token = await rt.lease.spawn(rt.new_loop_id(), now=now, max_loops=policy.max_loops)
        if token is None:
            break
        live += 1
        report.spawned.append(token.loop_id)
        if not await _seed(rt, token, token):
            report.put_failed += 1
    report.live = live
    if rt.metrics:
        emit_metrics(
            {"live_loops": live, "reseeded": len(report.reseeded), "spawned": len(report.spawned)},
            dimensions=rt.dimensions,
            namespace=rt.namespace,
            properties={"event": "watchdog", "lease_items": report.leases},
            write=rt.write,
        )
    return report


async def start_loops(rt: LoopRuntime, loops: int) -> list[str]:
    """Turn the switch on and spawn loops until `loops` are live (at most `max_loops`)."""
    await rt.lease.set_enabled(True)
    control = await rt.lease.get_control()
    started: list[str] = []
    for _ in range(max(0, loops - control.live)):
        token = await rt.lease.spawn(
            rt.new_loop_id(), now=rt.clock(), max_loops=rt.policy.max_loops
        )
        if token is None:
            break
        await _seed(rt, token, token)
        started.append(token.loop_id)
    return started


# -- AWS wiring ---------------------------------------------------------------------------


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set ({what})", field=name)
    return value


# Lambda-sized defaults: the drain and the final flush come out of every invocation's time.
_LAMBDA_CONSUMER_DEFAULTS: Mapping[str, Any] = {"shutdown_grace": 5.0, "ack_flush_timeout": 5.0}
# And short client timeouts: a put or a lease write stuck for AwsConfig's default 70 s would
# outlive the margin. The read timeout stays above the long poll (set from it below).
_LAMBDA_AWS_DEFAULTS: Mapping[str, Any] = {"connect_timeout": 2.0, "max_attempts": 3}


def _unset(environ: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The `defaults` whose ``ASYNCLOOP_<FIELD>`` is not set: the environment wins."""
    return {k: v for k, v in defaults.items() if f"ASYNCLOOP_{k.upper()}" not in environ}


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopSettings:
    """Everything the Lambda entry points read from the environment.

    Defaults differ from the library's where an invocation's deadline demands it (each only
    when its variable is unset): ``shutdown_grace`` and ``ack_flush_timeout`` 5 s (they come
    out of every run's time), ``connect_timeout`` 2 s, ``max_attempts`` 3 and
    ``read_timeout`` the long poll plus 5 s (a stuck call must not outlive the margin).
    """

    queue_url: str
    lease_table: str
    stream_name: str
    lambda_config: LambdaConfig
    consumer: ConsumerConfig
    aws: AwsConfig
    policy: LoopPolicy
    metrics_namespace: str = NAMESPACE

    @property
    def margin(self) -> float:
        return safety_margin(
            shutdown_grace=self.consumer.shutdown_grace,
            ack_flush_timeout=self.consumer.ack_flush_timeout,
            policy=self.policy,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LoopSettings:
        """``ASYNCLOOP_QUEUE_URL``, ``ASYNCLOOP_LEASE_TABLE``, ``ASYNCLOOP_STREAM_NAME``,
        ``ASYNCLOOP_FUNCTION_NAME`` (the worker) are required; every config field is
        ``ASYNCLOOP_<FIELD>``. Raises `ConfigError` naming the variable."""
        queue_url = validate_queue_url(
            _required(environ, "ASYNCLOOP_QUEUE_URL", "the SQS queue the loop consumes"),
            field="ASYNCLOOP_QUEUE_URL",
        )
        _required(environ, "ASYNCLOOP_FUNCTION_NAME", "the worker function each message invokes")
        consumer = ConsumerConfig.from_env(environ, **_unset(environ, _LAMBDA_CONSUMER_DEFAULTS))
        aws_defaults = {
            **_LAMBDA_AWS_DEFAULTS,
            "read_timeout": float(consumer.wait_time_seconds + 5),
        }
        return cls(
            queue_url=queue_url,
            lease_table=_required(environ, "ASYNCLOOP_LEASE_TABLE", "the DynamoDB lease table"),
            stream_name=_required(
                environ, "ASYNCLOOP_STREAM_NAME", "the Kinesis stream of loop tokens"
            ),
            lambda_config=LambdaConfig.from_env(environ),
            consumer=consumer,
            aws=AwsConfig.from_env(environ, **_unset(environ, aws_defaults)),
            policy=LoopPolicy.from_env(environ),
            metrics_namespace=environ.get("ASYNCLOOP_METRICS_NAMESPACE", "").strip() or NAMESPACE,
        )


class KinesisTokenSink:
    """`TokenSink` on a Kinesis stream: one record per token, partition key = loop id."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self._client = client
        self.stream_name = stream_name

    async def put(self, token: LoopToken) -> None:
        from ._aws import map_errors

        with map_errors("PutRecord"):
            await self._client.put_record(
                StreamName=self.stream_name, Data=token.encode(), PartitionKey=token.partition_key
            )


async def build_aws_runtime(settings: LoopSettings, stack: AsyncExitStack) -> LoopRuntime:
    """The runtime on real clients (kept open on `stack` for the life of the process)."""
    import anyio

    from ._aws import AioLambdaInvoker, AwsClients, SqsQueue
    from ._consumer import Consumer
    from ._dispatch import LambdaDispatcher
    from ._lease import DynamoLeaseStore

    consumer = settings.consumer
    clients = await stack.enter_async_context(
        AwsClients(settings.aws, pool_size=consumer.receivers + consumer.max_in_flight + 4)
    )
    queue = SqsQueue(clients.sqs, settings.queue_url)
    dispatcher = LambdaDispatcher(
        invoker=AioLambdaInvoker(clients.lambda_),
        config=settings.lambda_config,
        queue_url=settings.queue_url,
        region=settings.aws.region,
    )

    async def consume(run_for: float) -> Mapping[str, int]:
        config = dataclasses.replace(consumer, deadline=anyio.current_time() + run_for)
        stats = await Consumer(queue=queue, dispatcher=dispatcher, config=config).run()
        return {name: int(getattr(stats, name)) for name in COUNTERS}

    async def backlog() -> int:
        attributes = await queue.get_attributes(["ApproximateNumberOfMessages"])
        return int(attributes.get("ApproximateNumberOfMessages", "0"))

    return LoopRuntime(
        lease=DynamoLeaseStore(await clients.client("dynamodb"), settings.lease_table),
        sink=KinesisTokenSink(await clients.client("kinesis"), settings.stream_name),
        consume=consume,
        backlog=backlog,
        policy=settings.policy,
        margin=settings.margin,
        dimensions={"Queue": settings.queue_url.rstrip("/").rsplit("/", 1)[-1]},
        namespace=settings.metrics_namespace,
    )


RuntimeFactory = Callable[[LoopSettings, AsyncExitStack], Awaitable[LoopRuntime]]


class TokenRecord(NamedTuple):
    """One record of a loop event: its sequence number, its token, or why it has none."""

    sequence: str | None
    token: LoopToken | None
    problem: str = ""
    """Empty for a token; else what was wrong (``not_a_record``, ``data_not_base64``...)."""


def kinesis_records(event: object) -> list[TokenRecord]:
    """One `TokenRecord` per record of a Kinesis event; a direct invoke carrying a token is one
    record without a sequence number. Never raises: whatever the event holds, a record that
    carries no token comes back with its `problem` named, to be skipped (a stray record must
    not fail the invocation and block its lane)."""
    if not isinstance(event, Mapping):
        return [TokenRecord(None, None, "event_not_an_object")]
    records = event.get("Records")
    if not isinstance(records, list):
        token = parse_token(event)
        return [TokenRecord(None, token, "" if token else "not_a_token")]
    return [_kinesis_record(record) for record in records]


def _kinesis_record(record: object) -> TokenRecord:
    kinesis = record.get("kinesis") if isinstance(record, Mapping) else None
    if not isinstance(kinesis, Mapping):
        return TokenRecord(None, None, "not_a_kinesis_record")
    sequence = kinesis.get("sequenceNumber")
    # Only a string names the record in batchItemFailures; anything else names no record
    sequence = sequence if isinstance(sequence, str) and sequence else None
    data = kinesis.get("data")
    if not isinstance(data, str):
        return TokenRecord(sequence, None, "data_not_a_string")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return TokenRecord(sequence, None, "data_not_base64")
    token = parse_token(raw)
    return TokenRecord(sequence, token, "" if token else "not_a_token")


def remaining_seconds(context: Any, default: float = 60.0) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter() / 1000.0 if callable(getter) else default


class LoopApp:
    """The loop and watchdog handlers with one event loop and one runtime kept across warm
    invocations. The runtime is built on first use, so a bad environment fails the first
    invocation with a `ConfigError` naming the variable, and a fixed one is picked up by the
    next (nothing half-built is cached)."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str],
        runner: asyncio.Runner | None = None,
        runtime_factory: RuntimeFactory = build_aws_runtime,
    ) -> None:
        self._environ = environ
        self._own_runner = runner is None
        self._runner = runner if runner is not None else asyncio.Runner()
        self._factory = runtime_factory
        self._stack: AsyncExitStack | None = None
        self._runtime: LoopRuntime | None = None

    async def runtime(self) -> LoopRuntime:
        if self._runtime is None:
            settings = LoopSettings.from_env(self._environ)
            stack = AsyncExitStack()
            try:
                self._runtime = await self._factory(settings, stack)
            except BaseException:
                await stack.aclose()
                raise
            self._stack = stack
        return self._runtime

    def loop_handler(self, event: object, context: Any) -> dict[str, Any]:
        """Run the event's tokens. Records without a token (and an event that is not an
        object) are skipped, logged as ``invalid_token`` with their `problem` and counted in
        the answer's ``invalid``."""
        return self._runner.run(self._loop(event, remaining_seconds(context)))

    def watchdog_handler(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        return self._runner.run(self._watchdog())

    async def _loop(self, event: object, remaining: float) -> dict[str, Any]:
        import anyio

        rt = await self.runtime()
        if isinstance(event, Mapping) and event.get("action") == "start":
            loops = event.get("loops", rt.policy.min_loops)
            if isinstance(loops, bool) or not isinstance(loops, int) or loops < 0:
                raise ConfigError(f"loops must be a non-negative int, got {loops!r}", field="loops")
            return {"started": await start_loops(rt, loops)}
        records = kinesis_records(event)
        failures: list[dict[str, str]] = []
        outcomes: list[RunOutcome | None] = [None] * len(records)

        invalid = 0

        async def one(index: int, sequence: str | None, token: LoopToken | None) -> None:
            if token is None:
                nonlocal invalid
                invalid += 1
                log(
                    "invalid_token",
                    level="WARNING",
                    write=rt.write,
                    sequence_number=sequence,
                    problem=records[index].problem,
                )
                return
            try:
                outcomes[index] = await run_token(rt, token, remaining=remaining)
            except Exception as exc:
                log(
                    "run_failed",
                    level="ERROR",
                    write=rt.write,
                    loop_id=token.loop_id,
                    generation=token.generation,
                    error=type(exc).__name__,
                    detail=str(exc),
                )
                if sequence is None:
                    raise
                failures.append({"itemIdentifier": sequence})
                return
            run = outcomes[index]
            if run is not None and run.action == "put_failed":
                if sequence is None:
                    raise AwsError(
                        "re-trigger put_record failed after every retry", operation="PutRecord"
                    )
                failures.append({"itemIdentifier": sequence})

        if len(records) == 1:
            # BatchSize 1, the design: errors reach Lambda as themselves, not in a group
            await one(0, records[0].sequence, records[0].token)
        else:
            # A larger batch runs its tokens side by side, each with the whole invocation's
            # time, rather than one after another.
            async with anyio.create_task_group() as group:
                for index, record in enumerate(records):
                    group.start_soon(one, index, record.sequence, record.token)
        if failures and len(failures) == len(records):
            # Without ReportBatchItemFailures on the mapping a returned list would be ignored:
            # a batch that failed whole raises, which the mapping retries either way.
            raise AwsError(
                f"{len(failures)} loop token(s) failed to re-trigger; the mapping retries them",
                operation="PutRecord",
            )
        return {
            "batchItemFailures": sorted(failures, key=_sequence_key),
            "runs": [dataclasses.asdict(o) for o in outcomes if o is not None],
            "invalid": invalid,
        }

    async def _watchdog(self) -> dict[str, Any]:
        rt = await self.runtime()
        return dataclasses.asdict(await run_watchdog(rt))

    def close(self) -> None:
        """Close the clients and (if this app made it) the event loop."""
        if self._stack is not None:
            stack, self._stack, self._runtime = self._stack, None, None
            self._runner.run(stack.aclose())
        if self._own_runner:
            self._runner.close()


def _sequence_key(failure: Mapping[str, str]) -> int:
    value = failure["itemIdentifier"]
    return int(value) if value.isdigit() else 0
