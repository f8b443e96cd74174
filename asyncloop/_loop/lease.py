"""The loop lease store: its Protocol, the invariant it keeps, and an in-memory store.

The DynamoDB store is in `lease_dynamodb`.

One item per loop id, plus one control item (`CONTROL_ID`) holding the kill switch and the
live-loop count. Every change is a conditional write whose condition is the rule in
`control`, so two runs racing on one loop cannot both win, and spawning or ending a loop
moves the live count in the same transaction as the lease (the count never drifts).

At most one run per loop at any time
------------------------------------
A run *holds* its loop from its claim (or takeover) until it first tries to put the next
token, or until ``run_until`` (its invocation's deadline) passes; it consumes only while it
holds the loop. The protocol keeps one holder at a time because:

1. A generation ``G`` is written once: a claim (token ``G - 1``) and a re-seed move the lease
   from ``G - 1`` to ``G`` by a write conditional on ``G - 1``, and a takeover keeps ``G``;
   nothing lowers it. So tokens of ``G`` come from one *issuer*: the run that claimed
   ``G - 1`` (or a takeover of it), or the watchdog's re-seed.
2. An issuer reserves ``G`` (``put_generation = G``) before any token of ``G`` can exist: a
   run calls `mark_put` before its put, a re-seed reserves in its own write. Only the issuer
   lowers it again (`release`), and only when none of its puts went out.
3. A claim needs a token of ``G``, which the holder of ``G`` puts only as its holding ends.
   A takeover (a copy of the token of ``G - 1``) needs ``put_generation < G`` (so no token of
   ``G`` is out: by 2) and ``run_until < now`` (so the holder is dead). A re-seed needs
   ``run_until < now`` too, and holds nothing.

So while a run holds ``G`` no token of ``G`` is out and ``run_until`` is ahead: neither a
claim nor a takeover can start a second run. In particular a late copy of a re-seeded
loop's old token finds ``G`` reserved and exits stale, instead of running beside the
re-seed's token. The protocol assumes a put reported failed did not land (a Kinesis
``PutRecord`` that timed out after writing would break 2); the platform's cap on the loop
function's concurrency (the template) is the backstop beneath it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple, Protocol

from .control import ClaimOutcome, LeaseItem, LoopToken, claim_outcome

__all__ = ("Control", "InMemoryLeaseStore", "LeaseStore")


class Control(NamedTuple):
    """The kill switch (``enabled``) and how many loops are live."""

    enabled: bool
    live: int


class LeaseStore(Protocol):
    """Where loops are leased. Conditional failures are answers (False, None, ``stale``), not
    errors; a store that cannot be reached raises `asyncloop.AwsError` (the DynamoDB store: a
    `TableError`, or a `CredentialsError` or `TransportError`, by `map_errors`' table)."""

    async def get_control(self) -> Control:
        """The switch and the live count; a missing control item reads as off with 0 live."""
        ...

    async def set_enabled(self, enabled: bool) -> None:
        """Turn the kill switch (creates the control item)."""
        ...

    async def claim(
        self, token: LoopToken, *, now: float, run_until: float
    ) -> tuple[ClaimOutcome, LeaseItem | None]:
        """Claim `token`'s generation (see `claim_outcome`); answers the outcome and the lease
        as it was before the claim."""
        ...

    async def mark_put(self, token: LoopToken, *, empty_generations: int | None = None) -> None:
        """Reserve `token`'s generation (``put_generation``) before `token` is put, if the
        lease is still at it, with the idle count the run measured. After this no copy of
        the previous token can take the generation over."""
        ...

    async def release(self, loop_id: str, generation: int) -> None:
        """The run that advanced `loop_id` to `generation` has no token out (every put
        failed, or it failed before putting): undo its reservation and let its retry take
        over at once instead of waiting for its deadline. Only that run may call it."""
        ...

    async def spawn(self, loop_id: str, *, now: float, max_loops: int) -> LoopToken | None:
        """Create a live loop if the switch is on and fewer than `max_loops` are live; its
        first token, or None."""
        ...

    async def end(self, loop_id: str, generation: int, *, floor: int) -> bool:
        """End the loop if its lease is still at `generation` and more than `floor` loops are
        live; whether it ended."""
        ...

    async def reseed(self, item: LeaseItem, *, now: float) -> LoopToken | None:
        """Fence off `item`'s lost token by bumping its generation and reserving the new one
        in the same write, if the lease is unchanged since `item` was read; the replacement
        token, or None."""
        ...

    async def list_leases(self) -> list[LeaseItem]:
        """Every live loop's lease."""
        ...


class InMemoryLeaseStore:
    """A `LeaseStore` in a dict, with the DynamoDB store's conditions. It never suspends, so the
    simulation can drive a year of runs through it quickly."""

    def __init__(self) -> None:
        self.leases: dict[str, LeaseItem] = {}
        self.enabled = False
        self.live = 0

    async def get_control(self) -> Control:
        return Control(self.enabled, self.live)

    async def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled

    async def claim(
        self, token: LoopToken, *, now: float, run_until: float
    ) -> tuple[ClaimOutcome, LeaseItem | None]:
        item = self.leases.get(token.loop_id)
        outcome = claim_outcome(item, token, now)
        if item is not None and outcome == "claimed":
            self.leases[token.loop_id] = replace(
                item, generation=token.generation + 1, heartbeat=now, run_until=run_until
            )
        elif item is not None and outcome == "takeover":
            self.leases[token.loop_id] = replace(item, heartbeat=now, run_until=run_until)
        return outcome, item

    async def mark_put(self, token: LoopToken, *, empty_generations: int | None = None) -> None:
        item = self.leases.get(token.loop_id)
        if item is None or item.generation != token.generation:
            return
        if item.put_generation < token.generation:
            item = replace(item, put_generation=token.generation)
        if empty_generations is not None:
            item = replace(item, empty_generations=empty_generations)
        self.leases[token.loop_id] = item

    async def release(self, loop_id: str, generation: int) -> None:
        item = self.leases.get(loop_id)
        if item is not None and item.generation == generation:
            self.leases[loop_id] = replace(item, run_until=0.0, put_generation=generation - 1)

    async def spawn(self, loop_id: str, *, now: float, max_loops: int) -> LoopToken | None:
        if not self.enabled or self.live >= max_loops or loop_id in self.leases:
            return None
        self.live += 1
        self.leases[loop_id] = LeaseItem(
            loop_id=loop_id, generation=0, put_generation=-1, heartbeat=now, run_until=0.0
        )
        return LoopToken(loop_id, 0)

    async def end(self, loop_id: str, generation: int, *, floor: int) -> bool:
        item = self.leases.get(loop_id)
        if item is None or item.generation != generation or self.live <= floor:
            return False
        del self.leases[loop_id]
        self.live -= 1
        return True

    async def reseed(self, item: LeaseItem, *, now: float) -> LoopToken | None:
        current = self.leases.get(item.loop_id)
        if current != item:
            return None
        self.leases[item.loop_id] = replace(
            item,
            generation=item.generation + 1,
            put_generation=item.generation + 1,
            heartbeat=now,
            run_until=0.0,
        )
        return LoopToken(item.loop_id, item.generation + 1)

    async def list_leases(self) -> list[LeaseItem]:
        return list(self.leases.values())
