"""The virtual-clock simulation: a short run with faults turned up holds every invariant, and
the invariants do catch a control plane that is broken on purpose."""

from __future__ import annotations

from dataclasses import replace

import pytest

import asyncloop._loop.lease
import asyncloop._loop.runner
from asyncloop._cli import main
from asyncloop._loop.control import ClaimOutcome, LeaseItem, LoopToken
from asyncloop._loop.simulate import SimConfig, SimReport, simulate

# Fault rates a hundred times the year's, so two days see every kind of fault
STORMY = SimConfig(
    days=2.0,
    seed=7,
    kill_at=0.5,
    crash_after_put=1e-2,
    crash_before_put=2e-3,
    duplicate=1e-2,
    put_failure=5e-2,
    lost_put=1e-3,
    throttle=2e-2,
    watchdog_miss=0.1,
    stream_outages_per_day=1.0,
    burst_per_day=4.0,
)


@pytest.fixture(scope="module")
def stormy() -> SimReport:
    return simulate(STORMY)


def test_every_invariant_holds_through_a_storm_of_faults(stormy: SimReport) -> None:
    assert stormy.violations == []
    assert stormy.ok
    assert set(stormy.invariants) == {
        "one_run_per_loop",
        "at_most_max_loops",
        "at_least_min_loops",
        "live_count_matches_leases",
        "each_generation_runs_once",
        "no_silent_loop",
        "kill_switch_ends_loops",
    }


def test_the_storm_exercised_every_fault_and_every_repair(stormy: SimReport) -> None:
    # Each fault kind happened...
    assert all(count > 0 for count in stormy.faults.values()), stormy.faults
    # ...and each repair path ran: duplicates and crashed runs' retries exited stale, failed
    # puts were taken over, lost tokens re-seeded, the backlog scaled out and idling ended it
    assert stormy.stale_exits > 0
    assert stormy.takeovers > 0
    assert stormy.reseeded > 0
    assert stormy.spawned > 0
    assert stormy.ended_idle > 0
    assert stormy.ended_killed > 0
    assert 1 <= stormy.live_min <= stormy.live_max <= STORMY.policy.max_loops
    # Loops work: about two days of one-minute runs for at least one loop
    assert stormy.runs > 2 * 24 * 60 * 0.9


def test_the_simulation_is_deterministic_per_seed() -> None:
    a = simulate(replace(STORMY, days=0.5)).to_dict()
    b = simulate(replace(STORMY, days=0.5)).to_dict()
    c = simulate(replace(STORMY, days=0.5, seed=8)).to_dict()
    for doc in (a, b, c):
        doc.pop("wall_s")

    assert a == b
    assert a != c


def test_without_the_generation_fence_duplicates_multiply_and_are_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a lease store that lets any token of a live loop run (no fencing)
    def unfenced(item: LeaseItem | None, token: LoopToken, now: float) -> ClaimOutcome:
        return "unknown" if item is None else "claimed"

    monkeypatch.setattr(asyncloop._loop.lease, "claim_outcome", unfenced)
    # WHEN duplicates are delivered
    report = simulate(replace(STORMY, days=0.5, kill_at=None))
    # THEN the invariants say so
    assert not report.ok
    assert not report.invariants["each_generation_runs_once"]


def test_without_re_seeding_a_lost_token_is_caught_as_a_silent_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a watchdog that never re-seeds, and tokens that get lost
    monkeypatch.setattr(asyncloop._loop.runner, "needs_reseed", lambda *args: False)
    config = replace(STORMY, days=0.5, kill_at=None, lost_put=0.05)
    # WHEN the simulation runs
    report = simulate(config)
    # THEN a loop that fell silent is reported
    assert not report.invariants["no_silent_loop"]


def test_cli_simulate_reports_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["loop", "simulate", "--days", "0.5", "--seed", "3"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("simulated 0.5 days (seed 3)")
    assert "every invariant held" in out


def test_cli_simulate_rejects_bad_days_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["loop", "simulate", "--days", "0"])

    err = capsys.readouterr().err
    assert code == 2
    assert err == "asyncloop: error: --days must be in 0..3660, got 0.0\n"


def test_cli_simulate_exits_one_when_an_invariant_breaks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unfenced(item: LeaseItem | None, token: LoopToken, now: float) -> ClaimOutcome:
        return "unknown" if item is None else "claimed"

    monkeypatch.setattr(asyncloop._loop.lease, "claim_outcome", unfenced)

    code = main(["loop", "simulate", "--days", "0.5", "--fault-scale", "100"])

    assert code == 1
    assert "INVARIANTS BROKEN" in capsys.readouterr().out


def test_cli_start_rejects_more_loops_than_the_cap(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["loop", "start", "--table", "t", "--stream", "s", "--loops", "5", "--max-loops", "2"]
    )

    assert code == 2
    assert capsys.readouterr().err == (
        "asyncloop: error: --loops must be in 0..--max-loops (2), got 5\n"
    )


def test_the_storm_races_re_seeds_with_late_copies_and_each_copy_exits_stale(
    stormy: SimReport,
) -> None:
    # GIVEN the storm, where a re-seed's put meets a late copy of the token it replaces
    # THEN that interleaving happened, and no copy ran beside the re-seed's token
    assert stormy.faults["late_copy"] > 0
    assert stormy.reseed_races > 0
    assert stormy.invariants["one_run_per_loop"]


def test_a_re_seed_that_does_not_reserve_its_generation_is_caught_running_two_consumers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a re-seed that bumps the generation but leaves put_generation below it (main's)
    async def unreserved(
        self: asyncloop._loop.lease.InMemoryLeaseStore, item: LeaseItem, *, now: float
    ) -> LoopToken | None:
        if self.leases.get(item.loop_id) != item:
            return None
        self.leases[item.loop_id] = replace(
            item, generation=item.generation + 1, heartbeat=now, run_until=0.0
        )
        return LoopToken(item.loop_id, item.generation + 1)

    monkeypatch.setattr(asyncloop._loop.lease.InMemoryLeaseStore, "reseed", unreserved)
    # WHEN re-seeds meet late copies of the old tokens
    report = simulate(replace(STORMY, days=0.5, kill_at=None))
    # THEN a copy takes the generation over beside the re-seed's token, and it is caught
    assert report.reseed_races > 0
    assert not report.invariants["one_run_per_loop"]
