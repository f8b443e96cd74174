"""The loop's control plane as pure decisions: tokens, leases, scaling, the safety margin.

Nothing here does I/O. The lease stores (`lease`) apply `claim_outcome` and the other
rules as conditional writes; the runner (`runner`) sequences them; the simulation
(`simulate`) drives the same code on a virtual clock.

A loop is one lease item (``loop_id``) and at most one token in flight for its next
generation. A run claims generation ``g`` by advancing the lease from ``g`` to ``g + 1`` in one
conditional write, so of two copies of a token (a Kinesis retry, a duplicate delivery, a token
re-put by a run that crashed) exactly one runs: loops never multiply. A run that claimed but
could not re-put is taken over by its own retry once the claimant is certainly dead; a token
that is lost altogether is replaced by the watchdog, which bumps the generation first so a late
copy of the old token cannot run beside the new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from .._config import build_from_env
from .._validate import check_range

__all__ = (
    "CONTROL_ID",
    "ClaimOutcome",
    "Decision",
    "LeaseItem",
    "LoopPolicy",
    "LoopToken",
    "backoff_delays",
    "claim_outcome",
    "decide_tokens",
    "needs_reseed",
    "next_empty_generations",
    "parse_token",
    "safety_margin",
)

TOKEN_VERSION = 1
# The kill switch and the live-loop count share one item so a spawn or an end can check the
# cap and move the count in the same transaction.
CONTROL_ID = "#control"

ClaimOutcome = Literal["claimed", "takeover", "stale", "ended", "unknown"]
LeaseState = Literal["live", "ended"]


@dataclass(frozen=True, slots=True)
class LoopToken:
    """What a Kinesis record (or a direct invoke) carries: which loop, which generation."""

    loop_id: str
    generation: int

    def encode(self) -> bytes:
        """The record's data: compact JSON ``{"v": 1, "loop": ..., "gen": ...}``."""
        doc = {"v": TOKEN_VERSION, "loop": self.loop_id, "gen": self.generation}
        return json.dumps(doc, separators=(",", ":")).encode()

    @property
    def partition_key(self) -> str:
        """Kinesis keeps order per partition key: one loop's tokens stay in one lane."""
        return self.loop_id


def parse_token(data: bytes | str | Mapping[str, Any]) -> LoopToken | None:
    """Decode a token, or None when `data` is not one (a stray record must not block the lane)."""
    doc: Any
    if isinstance(data, Mapping):
        doc = data
    else:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
    if not isinstance(doc, Mapping) or doc.get("v") != TOKEN_VERSION:
        return None
    loop_id, generation = doc.get("loop"), doc.get("gen")
    if not isinstance(loop_id, str) or not loop_id or loop_id == CONTROL_ID:
        return None
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        return None
    return LoopToken(loop_id, generation)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseItem:
    """One loop's lease, as stored (one DynamoDB item per loop id)."""

    loop_id: str
    generation: int
    """The generation the next valid token carries. A claim of ``g`` moves it to ``g + 1``."""
    put_generation: int
    """The highest generation whose token is known to be on the stream."""
    heartbeat: float
    """Epoch seconds of the last claim (or spawn, or re-seed)."""
    run_until: float
    """Epoch seconds after which the claiming run is certainly over (its Lambda deadline)."""
    empty_generations: int = 0
    """Consecutive runs that received nothing with an empty queue."""
    state: LeaseState = "live"


def claim_outcome(item: LeaseItem | None, token: LoopToken, now: float) -> ClaimOutcome:
    """What a run holding `token` may do with the lease as it is.

    ``claimed``: the token is current; the run advances the generation and goes on.
    ``takeover``: this token's generation was claimed by a run that never re-put and is
    certainly dead (a retry after a crash or a failed put); run it again.
    ``stale``: a duplicate or a retry whose work is done or under way: exit, put nothing.
    ``ended``/``unknown``: the loop was ended, or never existed: exit, put nothing.
    """
    if item is None:
        return "unknown"
    if item.state != "live":
        return "ended"
    if item.generation == token.generation:
        return "claimed"
    if (
        item.generation == token.generation + 1
        and item.put_generation < item.generation
        and item.run_until < now
    ):
        return "takeover"
    return "stale"


def needs_reseed(item: LeaseItem, now: float, policy: LoopPolicy) -> bool:
    """Whether the watchdog should replace this loop's token: no claim for too long, no run on."""
    return (
        item.state == "live"
        and now - item.heartbeat > policy.heartbeat_limit
        and item.run_until < now
    )


class Decision(NamedTuple):
    """How many tokens a finished run puts, and why (for logs and metrics)."""

    tokens: Literal[0, 1, 2]
    reason: str


def next_empty_generations(previous: int, *, received: int, backlog: int | None) -> int:
    """Count consecutive idle runs: nothing received and the queue empty (unknown is not empty)."""
    return previous + 1 if received == 0 and backlog == 0 else 0


def decide_tokens(
    *,
    enabled: bool,
    backlog: int | None,
    live_loops: int,
    empty_generations: int,
    policy: LoopPolicy,
) -> Decision:
    """The scaling rule: 0 to end this loop, 1 to go on, 2 to go on and start another.

    The caps are checked again, atomically, when the store applies the decision (two runs
    deciding at once must not both pass `max_loops`); this is the wish.
    """
    if not enabled:
        return Decision(0, "killed")
    if empty_generations >= policy.idle_generations and live_loops > policy.min_loops:
        return Decision(0, "idle")
    if live_loops < policy.min_loops:
        return Decision(2, "below_min")
    if (
        backlog is not None
        and live_loops < policy.max_loops
        and backlog > policy.scale_out_backlog * max(live_loops, 1)
    ):
        return Decision(2, "backlog")
    return Decision(1, "continue")


def backoff_delays(policy: LoopPolicy) -> list[float]:
    """The waits between `put_attempts` tries: doubling from `put_backoff`, capped at 2 s."""
    return [min(2.0, policy.put_backoff * 2**i) for i in range(policy.put_attempts - 1)]


def safety_margin(*, shutdown_grace: float, ack_flush_timeout: float, policy: LoopPolicy) -> float:
    """Seconds kept back from the Lambda deadline so the run drains, flushes and re-puts in time.

    Draining in-flight dispatches (`shutdown_grace`, the dispatch timeout), the final shielded
    delete flush (`ack_flush_timeout`), every put attempt with its backoff, and the lease writes.
    """
    return (
        shutdown_grace
        + ack_flush_timeout
        + sum(backoff_delays(policy))
        + policy.control_budget * (policy.put_attempts + 2)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopPolicy:
    """How the loop scales, ends, re-triggers and is watched."""

    min_loops: int = 1
    """Loops kept alive while the switch is on (0..1000). Default 1. An idle loop does not end
    below it, and the watchdog starts loops up to it. At most `max_loops`."""

    max_loops: int = 4
    """Live loops at most (1..1000). Default 4. Keep it at or below the stream's shards x
    ParallelizationFactor: more loops than lanes would wait in line, not run."""

    scale_out_backlog: int = 1000
    """Visible messages per live loop above which a run puts a second token (1..10^9).
    Default 1000."""

    idle_generations: int = 5
    """Consecutive empty runs (nothing received, queue empty) after which a loop ends, while more
    than `min_loops` are live (1..100000). Default 5."""

    heartbeat_limit: float = 300.0
    """Seconds without a claim after which the watchdog re-seeds a loop (10..86400). Default 300.
    Keep it above the function's timeout plus the stream's delivery delay, or the watchdog
    replaces healthy loops (harmless: the generation fence stops the old token, but wasteful)."""

    run_seconds: float | None = None
    """Longest consumer run per invocation (0.1..900 s), or None to use the invocation's time
    less the safety margin. Default None."""

    put_attempts: int = 5
    """Tries of the re-trigger ``put_record`` (1..20). Default 5."""

    put_backoff: float = 0.1
    """First wait between put tries, doubling up to 2 s (0.0..2 s). Default 0.1."""

    control_budget: float = 1.0
    """Seconds kept back for each lease write and put call in the safety margin (0..30).
    Default 1."""

    def __post_init__(self) -> None:
        check_range("min_loops", self.min_loops, 0, 1000)
        check_range("max_loops", self.max_loops, 1, 1000)
        check_range("min_loops", self.min_loops, 0, self.max_loops)
        check_range("scale_out_backlog", self.scale_out_backlog, 1, 10**9)
        check_range("idle_generations", self.idle_generations, 1, 100_000)
        check_range("heartbeat_limit", self.heartbeat_limit, 10.0, 86_400.0)
        if self.run_seconds is not None:
            check_range("run_seconds", self.run_seconds, 0.1, 900.0)
        check_range("put_attempts", self.put_attempts, 1, 20)
        check_range("put_backoff", self.put_backoff, 0.0, 2.0)
        check_range("control_budget", self.control_budget, 0.0, 30.0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LoopPolicy:
        """Build from ``ASYNCLOOP_<FIELD>`` variables (``ASYNCLOOP_MAX_LOOPS=8``)."""
        return build_from_env(cls, environ, overrides)
