"""The loop's runs and the watchdog, sequenced over the seams.

`run_token` is one loop invocation: check the kill switch, claim the generation, consume until
the deadline less the safety margin, decide 0/1/2 tokens, re-put with backoff. `run_watchdog`
re-seeds dead loops and keeps `min_loops`. Both talk only to a `LoopRuntime` (lease store,
token sink, consumer run, backlog, clock, sleep), so the tests and the year-long simulation
drive the very code that runs in Lambda. The runtime on AWS is built in `settings`; the
Lambda handlers around these runs are in `app`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .._emf import NAMESPACE, Writer, _stdout, emit_metrics, log
from .._exceptions import AwsError
from .control import (
    Decision,
    LoopPolicy,
    LoopToken,
    backoff_delays,
    decide_tokens,
    needs_reseed,
    next_empty_generations,
)
from .lease import LeaseStore

__all__ = (
    "COUNTERS",
    "LoopRuntime",
    "RunOutcome",
    "TokenSink",
    "WatchdogReport",
    "put_token",
    "run_token",
    "run_watchdog",
    "start_loops",
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
    # Reserve the generation before its token can exist (the invariant in `lease`): from
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
        # The re-seed reserves its generation in the same write (see `lease`)
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
