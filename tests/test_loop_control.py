"""The loop's control decisions (`asyncloop._loop.control`): tokens, the claim rule, the
scaling rule, the policy and the safety margin. Runs over the lease store are in
test_loop_runner.py."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncloop import ConfigError
from asyncloop._loop.control import (
    CONTROL_ID,
    LeaseItem,
    LoopPolicy,
    LoopToken,
    backoff_delays,
    claim_outcome,
    decide_tokens,
    needs_reseed,
    next_empty_generations,
    parse_token,
    safety_margin,
)

# -- tokens ---------------------------------------------------------------------------------


@given(
    loop_id=st.text(min_size=1, max_size=64).filter(lambda s: s != CONTROL_ID),
    generation=st.integers(min_value=0, max_value=2**53),
)
def test_a_token_survives_its_encoding(loop_id: str, generation: int) -> None:
    token = LoopToken(loop_id, generation)

    assert parse_token(token.encode()) == token
    assert token.partition_key == loop_id


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"loop": "a", "gen": 1}',
        b'{"v": 2, "loop": "a", "gen": 1}',
        b'{"v": 1, "loop": "", "gen": 1}',
        b'{"v": 1, "loop": "a", "gen": -1}',
        b'{"v": 1, "loop": "a", "gen": true}',
        b'{"v": 1, "loop": "a", "gen": 1.5}',
        json.dumps({"v": 1, "loop": CONTROL_ID, "gen": 0}).encode(),
    ],
)
def test_anything_else_is_not_a_token(data: bytes) -> None:
    assert parse_token(data) is None


# -- the claim rule -------------------------------------------------------------------------


def lease(**changes: object) -> LeaseItem:
    base = LeaseItem(loop_id="L", generation=5, put_generation=5, heartbeat=100.0, run_until=0.0)
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("item", "token_generation", "now", "expected"),
    [
        (lease(), 5, 200.0, "claimed"),
        # The run of 5 advanced the lease and its token for 6 is out: a copy of 5 is stale
        (lease(generation=6, put_generation=6), 5, 200.0, "stale"),
        # The run of 5 advanced the lease, never put 6, and is past its deadline: take over
        (lease(generation=6, put_generation=5, run_until=150.0), 5, 200.0, "takeover"),
        # ... but not while that run may still be going
        (lease(generation=6, put_generation=5, run_until=250.0), 5, 200.0, "stale"),
        # Older and newer generations never run
        (lease(generation=7, put_generation=6), 5, 200.0, "stale"),
        (lease(), 6, 200.0, "stale"),
        (lease(state="ended"), 5, 200.0, "ended"),
        (None, 5, 200.0, "unknown"),
    ],
)
def test_claim_outcome(
    item: LeaseItem | None, token_generation: int, now: float, expected: str
) -> None:
    assert claim_outcome(item, LoopToken("L", token_generation), now) == expected


@given(
    generation=st.integers(0, 100),
    put_generation=st.integers(-1, 100),
    token_generation=st.integers(0, 100),
    run_until=st.floats(0, 1000),
    now=st.floats(0, 1000),
)
def test_at_most_one_generation_is_runnable(
    generation: int, put_generation: int, token_generation: int, run_until: float, now: float
) -> None:
    # GIVEN any lease
    item = lease(generation=generation, put_generation=put_generation, run_until=run_until)
    # WHEN every token generation asks
    runnable = [
        g
        for g in range(0, 102)
        if claim_outcome(item, LoopToken("L", g), now) in ("claimed", "takeover")
    ]
    # THEN at most two may run: the current one, and the retry of the previous one only when
    # its run is certainly over and never put the current token
    assert len(runnable) <= 2
    if len(runnable) == 2:
        assert runnable == [generation - 1, generation]
        assert put_generation < generation
        assert run_until < now


def test_needs_reseed_only_when_silent_and_not_running() -> None:
    policy = LoopPolicy(heartbeat_limit=300.0)

    assert needs_reseed(lease(heartbeat=0.0), 301.0, policy)
    assert not needs_reseed(lease(heartbeat=0.0), 299.0, policy)
    assert not needs_reseed(lease(heartbeat=0.0, run_until=400.0), 301.0, policy)
    assert not needs_reseed(lease(heartbeat=0.0, state="ended"), 301.0, policy)


# -- the scaling rule -----------------------------------------------------------------------

POLICY = LoopPolicy(min_loops=1, max_loops=4, scale_out_backlog=100, idle_generations=3)


@pytest.mark.parametrize(
    ("enabled", "backlog", "live", "empty", "expected"),
    [
        (False, 10_000, 2, 0, (0, "killed")),
        (True, 0, 2, 3, (0, "idle")),
        (True, 0, 1, 3, (1, "continue")),  # idle, but the last loop above min stays
        (True, 0, 2, 2, (1, "continue")),  # not idle long enough
        (True, 201, 2, 0, (2, "backlog")),
        (True, 200, 2, 0, (1, "continue")),  # at the threshold, not past it
        (True, 10_000, 4, 0, (1, "continue")),  # at the cap
        (True, None, 2, 0, (1, "continue")),  # backlog unknown: go on, don't scale
        (True, 0, 0, 0, (2, "below_min")),
    ],
)
def test_decide_tokens(
    enabled: bool, backlog: int | None, live: int, empty: int, expected: tuple[int, str]
) -> None:
    decision = decide_tokens(
        enabled=enabled, backlog=backlog, live_loops=live, empty_generations=empty, policy=POLICY
    )

    assert tuple(decision) == expected


@given(
    backlog=st.one_of(st.none(), st.integers(0, 10**9)),
    live=st.integers(0, 10),
    empty=st.integers(0, 10),
    min_loops=st.integers(0, 5),
    extra=st.integers(0, 5),
)
def test_scaling_never_passes_the_bounds(
    backlog: int | None, live: int, empty: int, min_loops: int, extra: int
) -> None:
    policy = LoopPolicy(min_loops=min_loops, max_loops=max(1, min_loops + extra))
    decision = decide_tokens(
        enabled=True, backlog=backlog, live_loops=live, empty_generations=empty, policy=policy
    )

    if decision.tokens == 2:
        assert live < policy.max_loops
    if decision.tokens == 0:
        assert live > policy.min_loops


def test_empty_generations_count_only_idle_runs() -> None:
    assert next_empty_generations(2, received=0, backlog=0) == 3
    assert next_empty_generations(2, received=1, backlog=0) == 0
    assert next_empty_generations(2, received=0, backlog=5) == 0
    assert next_empty_generations(2, received=0, backlog=None) == 0


# -- the policy -----------------------------------------------------------------------------


def test_policy_errors_name_the_field_the_range_and_the_value() -> None:
    with pytest.raises(ConfigError, match=r"min_loops must be in 0\.\.2, got 3") as caught:
        LoopPolicy(min_loops=3, max_loops=2)
    assert caught.value.field == "min_loops"
    with pytest.raises(ConfigError, match=r"heartbeat_limit must be in 10\.0\.\.86400\.0, got 1"):
        LoopPolicy(heartbeat_limit=1)


def test_policy_from_env() -> None:
    policy = LoopPolicy.from_env({"ASYNCLOOP_MAX_LOOPS": "8", "ASYNCLOOP_RUN_SECONDS": "30.5"})

    assert (policy.max_loops, policy.run_seconds) == (8, 30.5)
    with pytest.raises(ConfigError, match="ASYNCLOOP_MAX_LOOPS must be an integer, got 'many'"):
        LoopPolicy.from_env({"ASYNCLOOP_MAX_LOOPS": "many"})


def test_policy_from_env_range_errors_name_the_variable() -> None:
    # GIVEN a variable whose value parses but is out of range
    environ = {"ASYNCLOOP_RUN_SECONDS": "nan"}

    # WHEN the policy is built from the environment
    # THEN the error names the variable the user set, not the field
    with pytest.raises(ConfigError, match=r"^ASYNCLOOP_RUN_SECONDS must be in .*got nan"):
        LoopPolicy.from_env(environ)


def test_safety_margin_covers_drain_flush_and_every_put() -> None:
    policy = LoopPolicy(put_attempts=4, put_backoff=0.5, control_budget=1.0)

    assert backoff_delays(policy) == [0.5, 1.0, 2.0]
    # drain 5 + flush 5 + backoff 3.5 + (4 puts + 2 lease writes) x 1
    assert safety_margin(shutdown_grace=5, ack_flush_timeout=5, policy=policy) == 19.5
