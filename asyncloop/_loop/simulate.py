"""A virtual-clock simulation of the loop's control plane: a year of runs in seconds.

The runs and the watchdog are the real `run_token` and `run_watchdog`, over the real
`InMemoryLeaseStore`; only Kinesis, Lambda's event source mapping, the queue and the clock are
modelled. Each invocation is a coroutine on a tiny discrete-event scheduler: ``await`` on the
simulated sleep suspends it until the virtual time comes, so runs overlap as they would.

Injected faults, each at its own rate: the invocation crashes right after its re-put (the
mapping retries the record), crashes before it, a record is delivered twice, a put attempt
fails, a put is accepted and lost, an invocation is throttled (delivered late), a watchdog
tick is missed, a re-seed meets a late copy of the token it replaces (a stuck record arriving
while the re-seed's put is under way: each put takes `put_latency`). The observer checks
invariants as it goes (no two consumers of one loop at once, live loops within bounds, the
live count equal to the leases, each generation run once, no loop silent for longer than the
watchdog allows, the kill switch ending every loop).

Over 400 lines on purpose: the simulated world (`_Sim`) is one state machine whose fault
injection, event source model and invariant checks share its state; split apart, each half
would reach into the other's.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Coroutine, Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from .._emf import Writer
from .._exceptions import TransportError
from .control import ClaimOutcome, LeaseItem, LoopPolicy, LoopToken, safety_margin
from .lease import InMemoryLeaseStore
from .runner import LoopRuntime, run_token, run_watchdog, start_loops

__all__ = ("FAULT_RATES", "SimConfig", "SimReport", "simulate")

DAY = 86_400.0
_MAX_VIOLATIONS = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """One simulated deployment: its policy, timings, workload and fault rates."""

    days: float = 365.0
    seed: int = 1
    policy: LoopPolicy = field(
        default_factory=lambda: LoopPolicy(
            min_loops=1,
            max_loops=4,
            scale_out_backlog=20_000,
            idle_generations=5,
            heartbeat_limit=300.0,
            run_seconds=60.0,
        )
    )
    lambda_timeout: float = 75.0
    """The loop function's timeout (s): each invocation's remaining time."""
    shutdown_grace: float = 5.0
    ack_flush_timeout: float = 5.0
    stream_latency: float = 0.3
    """Seconds from put to the next invocation."""
    put_latency: float = 0.02
    """Seconds a put call takes (the watchdog's re-seed is exposed to a late copy meanwhile)."""
    watchdog_period: float = 60.0
    esm_retries: int = 3
    """The mapping's MaximumRetryAttempts: a record failing more often is dropped."""
    esm_retry_delay: float = 2.0
    throttle_delay: float = 20.0
    """Longest wait of a throttled invocation before the mapping tries again."""
    loop_rate: float = 400.0
    """Messages per second one loop consumes."""
    base_rate: float = 300.0
    """Mean arrivals per second; a daily wave from 0 to twice this, quiet nights included."""
    burst_per_day: float = 0.5
    """Bursts per day (Poisson), each `burst_size` messages at once."""
    burst_size: int = 2_000_000
    kill_at: float | None = 0.5
    """When to turn the switch off, as a fraction of `days` (None: never); on again an hour on."""
    crash_after_put: float = 1e-4
    crash_before_put: float = 2e-5
    duplicate: float = 1e-4
    put_failure: float = 1e-3
    lost_put: float = 1e-5
    throttle: float = 1e-3
    watchdog_miss: float = 1e-2
    late_copy: float = 0.5
    """Of the re-seeds' puts: a copy of the old token arrives as the put starts."""
    stream_outages_per_day: float = 0.02
    """Periods when every put fails (Poisson), each `stream_outage` seconds long."""
    stream_outage: float = 600.0

    def with_faults_scaled(self, factor: float) -> SimConfig:
        """This deployment with every fault rate (`FAULT_RATES`) multiplied by `factor`."""
        return replace(self, **{name: getattr(self, name) * factor for name in FAULT_RATES})


# The SimConfig fields that are fault rates (`asyncloop loop simulate --fault-scale` scales them).
FAULT_RATES: Final = (
    "crash_after_put",
    "crash_before_put",
    "duplicate",
    "put_failure",
    "lost_put",
    "throttle",
    "watchdog_miss",
    "stream_outages_per_day",
    "late_copy",
)
# The faults the report counts: one per rate, a stream outage counted as one outage.
_FAULT_KINDS: Final = tuple(
    "stream_outage" if rate == "stream_outages_per_day" else rate for rate in FAULT_RATES
)


@dataclass(slots=True)
class SimReport:
    """What the simulated year did and whether every invariant held."""

    days: float
    seed: int
    invocations: int = 0
    runs: int = 0
    takeovers: int = 0
    stale_exits: int = 0
    ended_idle: int = 0
    ended_killed: int = 0
    spawned: int = 0
    reseeded: int = 0
    reseed_races: int = 0
    """Late copies of a re-seeded loop's old token that reached the lease before the re-seed's
    token ran (each must exit stale)."""
    put_failed_runs: int = 0
    dropped_records: int = 0
    messages: int = 0
    backlog_max: int = 0
    live_min: int = 0
    live_max: int = 0
    longest_zero_loops_s: float = 0.0
    longest_claim_gap_s: float = 0.0
    claim_gap_bound_s: float = 0.0
    longest_watchdog_miss_streak: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    invariants: dict[str, bool] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(self.invariants.values())

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["ok"] = self.ok
        return out


class _Sleep:
    """The only thing a simulated task awaits: resume me `delay` seconds later."""

    __slots__ = ("delay",)

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __await__(self) -> Generator[_Sleep, None, None]:
        yield self


class _Crash(_Sleep):
    """Kill the invocation here, as a runtime crash would: no except block runs."""

    def __init__(self) -> None:
        super().__init__(0.0)


async def _sleep(delay: float) -> None:
    await _Sleep(delay)


@dataclass(slots=True)
class _Task:
    kind: str
    coro: Coroutine[Any, Any, Any] | None = None
    token: LoopToken | None = None
    attempt: int = 0
    active_loop: str | None = None


class _Observed(InMemoryLeaseStore):
    """The in-memory store, telling the simulation what each claim decided."""

    def __init__(self, sim: _Sim) -> None:
        super().__init__()
        self._sim = sim

    async def claim(
        self, token: LoopToken, *, now: float, run_until: float
    ) -> tuple[ClaimOutcome, LeaseItem | None]:
        outcome, item = await super().claim(token, now=now, run_until=run_until)
        reseeded = self._sim.reseeded_generation.get(token.loop_id)
        if item is not None and item.generation == reseeded == token.generation + 1:
            self._sim.report.reseed_races += 1
        self._sim.claimed(token, outcome)
        return outcome, item

    async def reseed(self, item: LeaseItem, *, now: float) -> LoopToken | None:
        token = await super().reseed(item, now=now)
        if token is not None:
            self._sim.reseeded_generation[token.loop_id] = token.generation
        return token


class _Sim:
    def __init__(self, config: SimConfig, write: Writer | None) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.now = 0.0
        self.heap: list[tuple[float, int, _Task | str]] = []
        self.seq = itertools.count()
        self.current: _Task | None = None
        self.report = SimReport(days=config.days, seed=config.seed)
        self.faults = dict.fromkeys(_FAULT_KINDS, 0)
        self.violations: dict[str, int] = {}
        self.reseeded_generation: dict[str, int] = {}
        self.store = _Observed(self)
        self.enabled_since: float | None = None
        self.killed_at: float | None = None
        self.active: dict[str, int] = {}
        self.zero_since: float | None = None
        self.last_claim: dict[str, float] = {}
        self.claimed_generations: dict[str, int] = {}
        self.miss_streak = 0
        self.max_miss_streak = 0
        self.backlog = 0.0
        self.arrivals_until = 0.0
        self.burst_at = self._next_burst(0.0)
        self.outage_until = -1.0
        self.next_outage = self._next_outage(0.0)
        self.loop_ids = (f"loop-{i:06d}" for i in itertools.count())
        margin = safety_margin(
            shutdown_grace=config.shutdown_grace,
            ack_flush_timeout=config.ack_flush_timeout,
            policy=config.policy,
        )
        self.rt = LoopRuntime(
            lease=self.store,
            sink=_SimSink(self),
            consume=self.consume,
            backlog=self.backlog_now,
            policy=config.policy,
            margin=margin,
            clock=lambda: self.now,
            sleep=_sleep,
            new_loop_id=lambda: next(self.loop_ids),
            metrics=write is not None,
            write=write if write is not None else _discard,
        )
        # The longest a live loop may go without a claim: the watchdog's limit, the ticks it
        # may miss, a run's whole invocation, and a delivery delayed by every retry.
        self.report.claim_gap_bound_s = 0.0

    # -- scheduling ------------------------------------------------------------------------

    def at(self, when: float, item: _Task | str) -> None:
        heapq.heappush(self.heap, (when, next(self.seq), item))

    def spawn_task(self, task: _Task, delay: float = 0.0) -> None:
        self.at(self.now + delay, task)

    def step(self, task: _Task) -> None:
        assert task.coro is not None
        self.current = task
        try:
            request = task.coro.send(None)
        except StopIteration as done:
            self.current = None
            self.finished(task, done.value)
            return
        self.current = None
        if isinstance(request, _Crash):
            task.coro.close()
            self.crashed(task)
        else:
            self.at(self.now + request.delay, task)

    def fault(self, name: str, rate: float) -> bool:
        if rate > 0 and self.rng.random() < rate:
            self.faults[name] += 1
            return True
        return False

    def violate(self, name: str, detail: str) -> None:
        self.report.invariants[name] = False
        count = self.violations.get(name, 0)
        self.violations[name] = count + 1
        if count < 3:
            self.report.violations.append(f"t={self.now:.1f}s {name}: {detail}")
        # A broken control plane multiplies its loops without end: stop, the answer is known
        if count + 1 >= _MAX_VIOLATIONS:
            self.report.violations.append(
                f"t={self.now:.1f}s stopped: {name} broken {count + 1} times"
            )
            self.heap.clear()

    # -- the stream and the event source mapping -------------------------------------------

    def deliver(self, token: LoopToken, delay: float, attempt: int = 0) -> None:
        self.at(self.now + delay, _Task("loop", token=token, attempt=attempt))

    def invoke(self, task: _Task) -> None:
        assert task.token is not None
        if self.fault("throttle", self.cfg.throttle):
            # The mapping waits and tries the same record again
            self.at(self.now + self.rng.uniform(1.0, self.cfg.throttle_delay), task)
            return
        self.report.invocations += 1
        task.coro = run_token(self.rt, task.token, remaining=self.cfg.lambda_timeout)
        self.step(task)

    def retry_or_drop(self, task: _Task) -> None:
        assert task.token is not None
        if task.attempt >= self.cfg.esm_retries:
            self.report.dropped_records += 1
            return
        self.deliver(task.token, self.cfg.esm_retry_delay * 2**task.attempt, task.attempt + 1)

    def finished(self, task: _Task, result: Any) -> None:
        if task.kind == "loop":
            self.end_active(task)
            if result.action == "put_failed":
                self.report.put_failed_runs += 1
                self.retry_or_drop(task)
            elif result.action == "ended":
                if result.reason == "killed":
                    self.report.ended_killed += 1
                else:
                    self.report.ended_idle += 1
            if result.spawned is not None:
                self.report.spawned += 1
                self.last_claim[result.spawned] = self.now
        elif task.kind == "start":
            for loop_id in result:
                self.last_claim[loop_id] = self.now
        elif task.kind == "watchdog":
            self.report.reseeded += len(result.reseeded)
            self.report.spawned += len(result.spawned)
            # A re-seed is not a claim: the loop's silence lasts until its new token runs
            for loop_id in result.spawned:
                self.last_claim[loop_id] = self.now
            self.check_after_watchdog()

    def crashed(self, task: _Task) -> None:
        self.end_active(task)
        self.retry_or_drop(task)

    # -- the queue ---------------------------------------------------------------------------

    def _next_burst(self, after: float) -> float:
        rate = self.cfg.burst_per_day / DAY
        return after + self.rng.expovariate(rate) if rate > 0 else math.inf

    def _next_outage(self, after: float) -> float:
        rate = self.cfg.stream_outages_per_day / DAY
        return after + self.rng.expovariate(rate) if rate > 0 else math.inf

    def stream_down(self) -> bool:
        while self.next_outage <= self.now:
            self.faults["stream_outage"] += 1
            self.outage_until = self.next_outage + self.cfg.stream_outage
            self.next_outage = self._next_outage(self.next_outage)
        return self.now < self.outage_until

    def arrivals(self) -> None:
        start, end = self.arrivals_until, self.now
        if end <= start:
            return
        mid = (start + end) / 2
        rate = self.cfg.base_rate * max(0.0, 2 * math.sin(2 * math.pi * mid / DAY))
        self.backlog += rate * (end - start)
        while self.burst_at <= end:
            self.backlog += self.cfg.burst_size
            self.burst_at = self._next_burst(self.burst_at)
        self.arrivals_until = end
        self.report.backlog_max = max(self.report.backlog_max, int(self.backlog))

    async def backlog_now(self) -> int:
        self.arrivals()
        return int(self.backlog)

    async def consume(self, run_for: float) -> Mapping[str, int]:
        task = self.current
        assert task is not None
        assert task.token is not None
        loop_id = task.token.loop_id
        self.begin_active(task, loop_id)
        self.arrivals()
        taken = int(min(self.backlog, self.cfg.loop_rate * run_for))
        self.backlog -= taken
        self.report.messages += taken
        await _Sleep(run_for)
        # One consumer per loop is the invariant: a run's consuming ends here
        self.end_active(task)
        return {"received": taken, "succeeded": taken, "deleted": taken}

    # -- invariants --------------------------------------------------------------------------

    def claimed(self, token: LoopToken, outcome: ClaimOutcome) -> None:
        if outcome == "claimed":
            self.report.runs += 1
            last = self.claimed_generations.get(token.loop_id, -1)
            if token.generation <= last:
                self.violate(
                    "each_generation_runs_once",
                    f"{token.loop_id} generation {token.generation} claimed after {last}",
                )
            self.claimed_generations[token.loop_id] = token.generation
        elif outcome == "takeover":
            self.report.takeovers += 1
        else:
            self.report.stale_exits += 1
            return
        previous = self.last_claim.get(token.loop_id)
        if previous is not None:
            self.report.longest_claim_gap_s = max(
                self.report.longest_claim_gap_s, self.now - previous
            )
        self.last_claim[token.loop_id] = self.now

    def begin_active(self, task: _Task, loop_id: str) -> None:
        count = self.active.get(loop_id, 0) + 1
        self.active[loop_id] = count
        task.active_loop = loop_id
        if count > 1:
            self.violate("one_run_per_loop", f"{count} runs of {loop_id} at once")
        if len(self.active) > self.cfg.policy.max_loops:
            self.violate("at_most_max_loops", f"{len(self.active)} loops running")
        if self.zero_since is not None:
            if self.enabled_since is not None and self.zero_since >= self.enabled_since:
                gap = self.now - self.zero_since
                self.report.longest_zero_loops_s = max(self.report.longest_zero_loops_s, gap)
            self.zero_since = None

    def end_active(self, task: _Task) -> None:
        loop_id = task.active_loop
        if loop_id is None:
            return
        task.active_loop = None
        count = self.active[loop_id] - 1
        if count:
            self.active[loop_id] = count
        else:
            del self.active[loop_id]
        if not self.active:
            self.zero_since = self.now

    def sample(self) -> None:
        store = self.store
        if store.live != len(store.leases):
            self.violate(
                "live_count_matches_leases", f"count {store.live}, {len(store.leases)} leases"
            )
        if store.live > self.cfg.policy.max_loops:
            self.violate("at_most_max_loops", f"live count {store.live}")
        if (
            self.enabled_since is not None
            and self.now - self.enabled_since > self.cfg.watchdog_period * 3
        ):
            report = self.report
            report.live_min = min(report.live_min, store.live)
            report.live_max = max(report.live_max, store.live)
            bound = self.claim_gap_bound()
            for loop_id in store.leases:
                silent = self.now - self.last_claim.get(loop_id, self.enabled_since)
                if silent > bound:
                    self.violate("no_silent_loop", f"{loop_id} without a claim for {silent:.0f}s")
                    self.last_claim[loop_id] = self.now

    def claim_gap_bound(self) -> float:
        """The longest a live loop may go without a claim, by construction.

        A put that fails for good (every retry, then every retry of the record, each a whole
        invocation) leaves a lease whose heartbeat the watchdog sees after `heartbeat_limit`
        and the ticks it misses; a re-seed whose own put fails waits one limit more; a stream
        outage adds its length; the new token may be throttled.
        """
        cfg = self.cfg
        retries = sum(cfg.esm_retry_delay * 2.0**i for i in range(cfg.esm_retries))
        bound = (
            2 * cfg.policy.heartbeat_limit
            + cfg.watchdog_period * (self.max_miss_streak + 2)
            + cfg.lambda_timeout * (cfg.esm_retries + 1)
            + retries
            + cfg.throttle_delay * 3
            + (cfg.stream_outage if cfg.stream_outages_per_day > 0 else 0.0)
        )
        self.report.claim_gap_bound_s = max(self.report.claim_gap_bound_s, bound)
        return bound

    def check_after_watchdog(self) -> None:
        if self.enabled_since is not None and self.store.live < self.cfg.policy.min_loops:
            self.violate("at_least_min_loops", f"{self.store.live} live after the watchdog")

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> SimReport:
        cfg = self.cfg
        end = cfg.days * DAY
        self.report.invariants = dict.fromkeys(
            (
                "one_run_per_loop",
                "at_most_max_loops",
                "at_least_min_loops",
                "live_count_matches_leases",
                "each_generation_runs_once",
                "no_silent_loop",
                "kill_switch_ends_loops",
            ),
            True,
        )
        self.report.live_min = cfg.policy.max_loops
        self.at(0.0, "start")
        self.at(cfg.watchdog_period, "tick")
        if cfg.kill_at is not None:
            self.at(cfg.kill_at * end, "kill")
        while self.heap:
            when, _, item = heapq.heappop(self.heap)
            if when > end:
                break
            self.now = when
            if isinstance(item, _Task):
                if item.coro is None:
                    self.invoke(item)
                else:
                    self.step(item)
            elif item == "tick":
                self.tick()
            elif item == "start":
                self.start()
            elif item == "kill":
                self.kill()
            elif item == "killed_check":
                self.killed_check()
        self.report.faults = dict(self.faults)
        self.report.longest_watchdog_miss_streak = self.max_miss_streak
        return self.report

    def tick(self) -> None:
        self.at(self.now + self.cfg.watchdog_period, "tick")
        self.sample()
        if self.fault("watchdog_miss", self.cfg.watchdog_miss):
            self.miss_streak += 1
            self.max_miss_streak = max(self.max_miss_streak, self.miss_streak)
            return
        self.miss_streak = 0
        self.step(_Task("watchdog", run_watchdog(self.rt)))

    def start(self) -> None:
        self.enabled_since = self.now
        self.killed_at = None
        self.step(_Task("start", start_loops(self.rt, self.cfg.policy.min_loops)))

    def kill(self) -> None:
        self.store.enabled = False
        self.enabled_since = None
        self.killed_at = self.now
        self.at(self.now + 3600.0, "killed_check")

    def killed_check(self) -> None:
        if self.store.live or self.active or self.store.leases:
            self.violate(
                "kill_switch_ends_loops",
                f"an hour after the switch: {self.store.live} live, {len(self.active)} running",
            )
        self.at(self.now, "start")


def _discard(line: str) -> None:
    pass


class _SimSink:
    """The stream: a put is delivered to a new invocation after `stream_latency`."""

    def __init__(self, sim: _Sim) -> None:
        self._sim = sim

    async def put(self, token: LoopToken) -> None:
        sim = self._sim
        in_loop = sim.current is not None and sim.current.kind == "loop"
        if in_loop and sim.fault("crash_before_put", sim.cfg.crash_before_put):
            await _Crash()
        re_seed = sim.current is not None and sim.current.kind == "watchdog" and token.generation
        if re_seed and sim.fault("late_copy", sim.cfg.late_copy):
            sim.deliver(LoopToken(token.loop_id, token.generation - 1), 0.0)
        await _Sleep(sim.cfg.put_latency)
        if sim.stream_down() or sim.fault("put_failure", sim.cfg.put_failure):
            raise TransportError("simulated put failure", operation="PutRecord", retryable=True)
        if not sim.fault("lost_put", sim.cfg.lost_put):
            sim.deliver(token, sim.cfg.stream_latency)
            if sim.fault("duplicate", sim.cfg.duplicate):
                sim.deliver(token, sim.cfg.stream_latency + sim.rng.uniform(0.0, 30.0))
        if in_loop and sim.fault("crash_after_put", sim.cfg.crash_after_put):
            await _Crash()


def simulate(config: SimConfig, *, write: Writer | None = None) -> SimReport:
    """Run the simulation; `write` receives the runs' metric and log lines (default: none)."""
    started = time.perf_counter()
    report = _Sim(config, write).run()
    report.wall_s = round(time.perf_counter() - started, 3)
    report.longest_zero_loops_s = round(report.longest_zero_loops_s, 3)
    report.longest_claim_gap_s = round(report.longest_claim_gap_s, 3)
    return report
