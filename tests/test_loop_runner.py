"""The loop's runs and the watchdog (`asyncloop._loop.runner`) over the in-memory lease store:
the same code paths the Lambda handler and the simulation use."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from asyncloop import TransportError
from asyncloop._exceptions import TableError
from asyncloop._loop.control import (
    LoopPolicy,
    LoopToken,
    backoff_delays,
)
from asyncloop._loop.lease import Control, InMemoryLeaseStore
from asyncloop._loop.runner import LoopRuntime, run_token, run_watchdog, start_loops

# -- runs over the in-memory store ----------------------------------------------------------


@dataclass
class Harness:
    """A runtime over the in-memory store, a recording sink and a scripted queue."""

    store: InMemoryLeaseStore = field(default_factory=InMemoryLeaseStore)
    put: list[LoopToken] = field(default_factory=list)
    put_failures: int = 0
    received: list[int] = field(default_factory=list)
    backlog: int = 0
    now: float = 1000.0
    lines: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    consumed: list[float] = field(default_factory=list)
    ids: int = 0
    policy: LoopPolicy = field(
        default_factory=lambda: LoopPolicy(
            min_loops=1, max_loops=3, scale_out_backlog=100, idle_generations=2
        )
    )

    def runtime(self) -> LoopRuntime:
        async def put(token: LoopToken) -> None:
            if self.put_failures:
                self.put_failures -= 1
                raise TransportError("stream down", operation="PutRecord", retryable=True)
            self.put.append(token)

        async def consume(run_for: float) -> Mapping[str, int]:
            self.consumed.append(run_for)
            n = self.received.pop(0) if self.received else 0
            return {"received": n, "succeeded": n, "deleted": n}

        async def backlog() -> int:
            return self.backlog

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        def new_id() -> str:
            self.ids += 1
            return f"loop-{self.ids}"

        sink = type("Sink", (), {"put": staticmethod(put)})()
        return LoopRuntime(
            lease=self.store,
            sink=sink,
            consume=consume,
            backlog=backlog,
            policy=self.policy,
            margin=10.0,
            clock=lambda: self.now,
            sleep=sleep,
            new_loop_id=new_id,
            write=self.lines.append,
        )


@pytest.fixture
def harness() -> Harness:
    return Harness()


async def started(h: Harness, loops: int = 1) -> LoopToken:
    ids = await start_loops(h.runtime(), loops)
    assert len(ids) == loops
    first = h.put.pop(0)
    h.put.clear()
    return first


@pytest.mark.asyncio
async def test_a_run_claims_consumes_and_puts_the_next_generation(harness: Harness) -> None:
    # GIVEN a started loop
    token = await started(harness)
    harness.received = [7]
    harness.backlog = 3
    # WHEN its token runs with 60 s left
    outcome = await run_token(harness.runtime(), token, remaining=60.0)
    # THEN it consumed for the time less the margin and put exactly the next generation
    assert (outcome.action, outcome.tokens) == ("ran", 1)
    assert harness.consumed == [50.0]
    assert harness.put == [LoopToken(token.loop_id, 1)]
    item = harness.store.leases[token.loop_id]
    assert (item.generation, item.put_generation, item.heartbeat) == (1, 1, 1000.0)
    # AND it wrote one EMF line with its counts
    emf = [json.loads(line) for line in harness.lines if "_aws" in line]
    assert emf[-1]["received"] == 7
    assert emf[-1]["generation"] == 0
    assert emf[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "asyncloop"


@pytest.mark.asyncio
async def test_a_duplicate_token_exits_without_putting(harness: Harness) -> None:
    token = await started(harness)
    await run_token(harness.runtime(), token, remaining=60.0)
    harness.put.clear()
    # WHEN the same token is delivered again (a Kinesis retry or duplicate)
    outcome = await run_token(harness.runtime(), token, remaining=60.0)
    # THEN it does nothing
    assert outcome.action == "stale"
    assert harness.put == []
    assert harness.consumed == [50.0]
    # AND its metrics line carries no heartbeat (`generation`): only runs that claimed do
    last = json.loads(harness.lines[-1])
    assert "generation" not in last
    assert last["action"] == "stale"


@pytest.mark.asyncio
async def test_a_retry_after_a_crash_before_the_put_takes_over_once_the_run_is_dead(
    harness: Harness,
) -> None:
    # GIVEN a run that claimed generation 0 and died before putting generation 1
    token = await started(harness)
    rt = harness.runtime()
    await harness.store.claim(token, now=harness.now, run_until=harness.now + 60.0)
    # WHEN its retry arrives while the dead run's deadline has not passed
    early = await run_token(rt, token, remaining=60.0)
    # THEN it may not run (the run could still be alive)
    assert early.action == "stale"
    assert harness.put == []
    # WHEN the retry comes after that deadline
    harness.now += 61.0
    late = await run_token(rt, token, remaining=60.0)
    # THEN it runs generation 0 again and puts generation 1
    assert late.action == "ran"
    assert late.claim == "takeover"
    assert harness.put == [LoopToken(token.loop_id, 1)]


@pytest.mark.asyncio
async def test_a_put_that_fails_every_retry_releases_the_lease_for_the_retry(
    harness: Harness,
) -> None:
    token = await started(harness)
    harness.put_failures = harness.policy.put_attempts
    # WHEN every put attempt fails
    outcome = await run_token(harness.runtime(), token, remaining=60.0)
    # THEN the run reports it, after backing off between attempts
    assert outcome.action == "put_failed"
    assert harness.sleeps == backoff_delays(harness.policy)
    # AND the retry of the token may take over at once (no waiting for the deadline)
    retry = await run_token(harness.runtime(), token, remaining=60.0)
    assert (retry.action, retry.claim) == ("ran", "takeover")
    assert harness.put == [LoopToken(token.loop_id, 1)]


@pytest.mark.asyncio
async def test_backlog_scales_out_by_one_loop_within_the_cap(harness: Harness) -> None:
    token = await started(harness)
    harness.backlog = 10_000
    rt = harness.runtime()
    # WHEN runs keep seeing a large backlog
    out = await run_token(rt, token, remaining=60.0)
    # THEN each puts its own next token and a new loop's first, until max_loops
    assert out.tokens == 2
    assert harness.put == [LoopToken(token.loop_id, 1), LoopToken("loop-2", 0)]
    out = await run_token(rt, LoopToken("loop-2", 0), remaining=60.0)
    assert out.tokens == 2
    out = await run_token(rt, LoopToken("loop-3", 0), remaining=60.0)
    assert out.tokens == 1
    assert harness.store.live == 3 == len(harness.store.leases)


@pytest.mark.asyncio
async def test_idle_loops_end_down_to_min_loops(harness: Harness) -> None:
    # GIVEN two loops and an empty queue
    first = await started(harness, loops=2)
    second = LoopToken("loop-2", 0)
    rt = harness.runtime()
    # WHEN each runs empty for idle_generations runs
    a1 = await run_token(rt, first, remaining=60.0)
    b1 = await run_token(rt, second, remaining=60.0)
    a2 = await run_token(rt, LoopToken(first.loop_id, 1), remaining=60.0)
    b2 = await run_token(rt, LoopToken(second.loop_id, 1), remaining=60.0)
    # THEN the first to reach the limit ends; the last one stays (min_loops = 1)
    assert [a1.action, b1.action, a2.action, b2.action] == ["ran", "ran", "ended", "ran"]
    assert b2.reason == "continue"
    assert harness.store.live == 1
    assert list(harness.store.leases) == [second.loop_id]


@pytest.mark.asyncio
async def test_two_idle_loops_racing_cannot_both_end_below_min_loops(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two idle loops, one about to end, the other having read the count before that
    first = await started(harness, loops=2)
    second = LoopToken("loop-2", 0)
    rt = harness.runtime()
    await run_token(rt, first, remaining=60.0)
    await run_token(rt, second, remaining=60.0)
    assert (await run_token(rt, LoopToken(first.loop_id, 1), remaining=60.0)).action == "ended"

    async def stale_count() -> Control:
        return Control(True, 2)

    monkeypatch.setattr(harness.store, "get_control", stale_count)
    # WHEN the second decides to end on its stale count
    out = await run_token(rt, LoopToken(second.loop_id, 1), remaining=60.0)
    # THEN the store's floor refuses and the loop goes on
    assert (out.action, out.reason) == ("ran", "at_min_loops")
    assert harness.store.live == 1


@pytest.mark.asyncio
async def test_the_kill_switch_ends_a_loop_at_its_next_run(harness: Harness) -> None:
    token = await started(harness)
    await harness.store.set_enabled(False)

    outcome = await run_token(harness.runtime(), token, remaining=60.0)

    assert (outcome.action, outcome.reason) == ("ended", "killed")
    assert harness.put == []
    assert harness.consumed == []
    assert harness.store.live == 0


@pytest.mark.asyncio
async def test_the_watchdog_reseeds_a_silent_loop_and_fences_its_old_token(
    harness: Harness,
) -> None:
    # GIVEN a loop whose token was lost
    token = await started(harness)
    rt = harness.runtime()
    # WHEN the watchdog runs before and after the heartbeat limit
    harness.now += harness.policy.heartbeat_limit - 1
    assert (await run_watchdog(rt)).reseeded == []
    harness.now += 2
    report = await run_watchdog(rt)
    # THEN it re-seeds with the next generation, and the lost token can no longer run
    assert report.reseeded == [token.loop_id]
    assert harness.put == [LoopToken(token.loop_id, 1)]
    assert (await run_token(rt, token, remaining=60.0)).action == "stale"
    assert (await run_token(rt, LoopToken(token.loop_id, 1), remaining=60.0)).action == "ran"


@pytest.mark.asyncio
async def test_the_watchdog_keeps_min_loops_and_ends_silent_loops_when_off(
    harness: Harness,
) -> None:
    rt = harness.runtime()
    await harness.store.set_enabled(True)
    # WHEN the switch is on and no loop lives
    report = await run_watchdog(rt)
    # THEN it starts min_loops
    assert report.spawned == ["loop-1"]
    # WHEN the switch is off and that loop's token is lost
    await harness.store.set_enabled(False)
    harness.now += harness.policy.heartbeat_limit + 1
    report = await run_watchdog(rt)
    # THEN the watchdog ends it (no run would come to do it)
    assert report.ended == ["loop-1"]
    assert harness.store.live == 0


# -- correctness on a bad day ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_late_copy_of_the_old_token_racing_a_re_seed_exits_stale(
    harness: Harness,
) -> None:
    # GIVEN a loop whose token for generation 0 is stuck, silent past the heartbeat limit
    token = await started(harness)
    rt = harness.runtime()
    harness.now += harness.policy.heartbeat_limit + 1
    late: list[str] = []
    put = rt.sink.put

    class Racing:
        async def put(self, new: LoopToken) -> None:
            # WHEN the stuck copy arrives while the watchdog's re-seed is being put
            if not late:
                late.append("arrived")
                late.append((await run_token(rt, token, remaining=60.0)).action)
            await put(new)

    rt.sink = Racing()
    report = await run_watchdog(rt)
    # THEN the copy exits stale: the re-seed reserved its generation
    assert report.reseeded == [token.loop_id]
    assert late == ["arrived", "stale"]
    assert harness.consumed == []
    # AND the re-seed's token is the one run of the loop
    assert harness.put == [LoopToken(token.loop_id, 1)]
    assert (await run_token(rt, LoopToken(token.loop_id, 1), remaining=60.0)).action == "ran"
    assert len(harness.consumed) == 1


class ThrottledStore(InMemoryLeaseStore):
    """The in-memory store whose named writes are throttled."""

    def __init__(self, *throttled: str) -> None:
        super().__init__()
        self.throttled = set(throttled)

    def _check(self, operation: str) -> None:
        if operation in self.throttled:
            raise TableError(
                f"{operation} throttled",
                operation=operation,
                code="ThrottlingException",
                retryable=True,
                throttled=True,
            )

    async def mark_put(self, token: LoopToken, *, empty_generations: int | None = None) -> None:
        self._check("mark_put")
        await super().mark_put(token, empty_generations=empty_generations)

    async def spawn(self, loop_id: str, *, now: float, max_loops: int) -> LoopToken | None:
        self._check("spawn")
        return await super().spawn(loop_id, now=now, max_loops=max_loops)


@pytest.mark.asyncio
async def test_a_throttled_lease_write_after_the_put_does_not_fail_the_run() -> None:
    # GIVEN a loop with a backlog to scale out for, and a lease table throttling spawns
    harness = Harness(store=ThrottledStore())
    token = await started(harness)
    harness.backlog = 10_000
    assert isinstance(harness.store, ThrottledStore)
    harness.store.throttled.add("spawn")
    # WHEN the run has put its next token and its spawn is throttled
    outcome = await run_token(harness.runtime(), token, remaining=60.0)
    # THEN the run re-triggered and says so (its retry would only exit stale)
    assert (outcome.action, outcome.tokens) == ("ran", 1)
    assert harness.put == [LoopToken(token.loop_id, 1)]
    warned = [json.loads(line) for line in harness.lines if "lease_write_failed" in line]
    assert [(w["operation"], w["code"]) for w in warned] == [("spawn", "ThrottlingException")]


@pytest.mark.asyncio
async def test_a_run_reports_failure_only_when_its_next_token_is_not_out() -> None:
    # GIVEN a loop whose lease table throttles the write that records the next token
    harness = Harness(store=ThrottledStore())
    token = await started(harness)
    assert isinstance(harness.store, ThrottledStore)
    harness.store.throttled.add("mark_put")
    rt = harness.runtime()
    # WHEN the run fails on that write
    with pytest.raises(TableError):
        await run_token(rt, token, remaining=60.0)
    # THEN nothing was put, so the retry the failure causes is the loop's only token
    assert harness.put == []
    harness.store.throttled.clear()
    retry = await run_token(rt, token, remaining=60.0)
    assert (retry.action, retry.claim) == ("ran", "takeover")
    assert harness.put == [LoopToken(token.loop_id, 1)]
