"""The loop lease store: a Protocol, a DynamoDB implementation and an in-memory one.

One item per loop id, plus one control item (`CONTROL_ID`) holding the kill switch and the
live-loop count. Every change is a conditional write whose condition is the rule in
`control`, so two runs racing on one loop cannot both win, and spawning or ending a loop
moves the live count in the same transaction as the lease (the count never drifts).

DynamoDB layout (hash key ``loop_id``, string)::

    loop_id=<id>        generation N, put_generation N, heartbeat N, run_until N,
                        empty_generations N, state S ("live")
    loop_id=#control    enabled BOOL, live N

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

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple, Protocol

from .._aws import map_errors
from .._exceptions import AwsError, ConditionFailed
from .control import CONTROL_ID, ClaimOutcome, LeaseItem, LoopToken, claim_outcome

__all__ = ("Control", "DynamoLeaseStore", "InMemoryLeaseStore", "LeaseStore")


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


def _api_name(method: str) -> str:
    """DynamoDB's operation name for a client method: ``update_item`` -> ``UpdateItem``."""
    return "".join(word.title() for word in method.split("_"))


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value)}


def _item_from_ddb(raw: Mapping[str, Any]) -> LeaseItem:
    def num(name: str, default: float = 0.0) -> float:
        cell = raw.get(name)
        return float(cell["N"]) if cell is not None else default

    return LeaseItem(
        loop_id=raw["loop_id"]["S"],
        generation=int(num("generation")),
        put_generation=int(num("put_generation", -1)),
        heartbeat=num("heartbeat"),
        run_until=num("run_until"),
        empty_generations=int(num("empty_generations")),
        state="live" if raw.get("state", {}).get("S", "live") == "live" else "ended",
    )


class DynamoLeaseStore:
    """A `LeaseStore` on a DynamoDB table, through an aiobotocore ``dynamodb`` client.

    The client is borrowed (from `AwsClients`); the table is created by the template, or by
    `create_table` for tests and ``asyncloop loop start --create-table``.
    """

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self.table = table

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """One call (`operation` is the client's method, ``update_item``); None when its
        condition failed; other errors are translated by `map_errors` (a `TableError`, or a
        `CredentialsError` or `TransportError`)."""
        try:
            with map_errors(_api_name(operation), table=self.table):
                answer: dict[str, Any] = await getattr(self._client, operation)(**kwargs)
        except ConditionFailed:
            return None
        return answer

    async def create_table(self) -> None:
        """Create the table (on-demand billing) and wait until it exists; no-op if it does.
        Raises what `map_errors` translates (a `TableError` when the table cannot be made)."""
        try:
            with map_errors("CreateTable", table=self.table):
                await self._client.create_table(
                    TableName=self.table,
                    KeySchema=[{"AttributeName": "loop_id", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "loop_id", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
        except AwsError as exc:
            # CreateTable's answer for a table that exists (or is being created)
            if exc.code != "ResourceInUseException":
                raise
        # The waiter polls DescribeTable; giving up is botocore's WaiterError
        with map_errors("DescribeTable", table=self.table):
            waiter = self._client.get_waiter("table_exists")
            await waiter.wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    async def _get(self, loop_id: str) -> LeaseItem | None:
        answer = await self._call(
            "get_item", TableName=self.table, Key={"loop_id": {"S": loop_id}}, ConsistentRead=True
        )
        raw = (answer or {}).get("Item")
        return _item_from_ddb(raw) if raw else None

    async def get_control(self) -> Control:
        answer = await self._call(
            "get_item",
            TableName=self.table,
            Key={"loop_id": {"S": CONTROL_ID}},
            ConsistentRead=True,
        )
        raw = (answer or {}).get("Item") or {}
        return Control(
            bool(raw.get("enabled", {}).get("BOOL", False)), int(raw.get("live", {}).get("N", 0))
        )

    async def set_enabled(self, enabled: bool) -> None:
        await self._call(
            "update_item",
            TableName=self.table,
            Key={"loop_id": {"S": CONTROL_ID}},
            UpdateExpression="SET enabled = :e, live = if_not_exists(live, :zero)",
            ExpressionAttributeValues={":e": {"BOOL": enabled}, ":zero": {"N": "0"}},
        )

    async def claim(
        self, token: LoopToken, *, now: float, run_until: float
    ) -> tuple[ClaimOutcome, LeaseItem | None]:
        key = {"loop_id": {"S": token.loop_id}}
        answer = await self._call(
            "update_item",
            TableName=self.table,
            Key=key,
            UpdateExpression="SET generation = :next, heartbeat = :now, run_until = :until",
            ConditionExpression="#s = :live AND generation = :gen",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":live": {"S": "live"},
                ":gen": _n(token.generation),
                ":next": _n(token.generation + 1),
                ":now": _n(now),
                ":until": _n(run_until),
            },
            ReturnValues="ALL_OLD",
        )
        if answer is not None:
            return "claimed", _item_from_ddb(answer["Attributes"])
        item = await self._get(token.loop_id)
        outcome = claim_outcome(item, token, now)
        if outcome != "takeover":
            return outcome, item
        answer = await self._call(
            "update_item",
            TableName=self.table,
            Key=key,
            UpdateExpression="SET heartbeat = :now, run_until = :until",
            ConditionExpression=(
                "#s = :live AND generation = :next AND put_generation < :next AND run_until < :now"
            ),
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":live": {"S": "live"},
                ":next": _n(token.generation + 1),
                ":now": _n(now),
                ":until": _n(run_until),
            },
        )
        return ("takeover" if answer is not None else "stale"), item

    async def mark_put(self, token: LoopToken, *, empty_generations: int | None = None) -> None:
        sets = ["put_generation = :gen"]
        values = {":gen": _n(token.generation)}
        if empty_generations is not None:
            sets.append("empty_generations = :empty")
            values[":empty"] = _n(empty_generations)
        await self._call(
            "update_item",
            TableName=self.table,
            Key={"loop_id": {"S": token.loop_id}},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="generation = :gen",
            ExpressionAttributeValues=values,
        )

    async def release(self, loop_id: str, generation: int) -> None:
        await self._call(
            "update_item",
            TableName=self.table,
            Key={"loop_id": {"S": loop_id}},
            UpdateExpression="SET run_until = :zero, put_generation = :before",
            ConditionExpression="generation = :gen",
            ExpressionAttributeValues={
                ":gen": _n(generation),
                ":zero": _n(0),
                ":before": _n(generation - 1),
            },
        )

    async def spawn(self, loop_id: str, *, now: float, max_loops: int) -> LoopToken | None:
        answer = await self._call(
            "transact_write_items",
            TransactItems=[
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {"loop_id": {"S": CONTROL_ID}},
                        "UpdateExpression": "SET live = live + :one",
                        "ConditionExpression": "enabled = :true AND live < :max",
                        "ExpressionAttributeValues": {
                            ":one": _n(1),
                            ":true": {"BOOL": True},
                            ":max": _n(max_loops),
                        },
                    }
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {
                            "loop_id": {"S": loop_id},
                            "generation": _n(0),
                            "put_generation": _n(-1),
                            "heartbeat": _n(now),
                            "run_until": _n(0),
                            "empty_generations": _n(0),
                            "state": {"S": "live"},
                        },
                        "ConditionExpression": "attribute_not_exists(loop_id)",
                    }
                },
            ],
        )
        return LoopToken(loop_id, 0) if answer is not None else None

    async def end(self, loop_id: str, generation: int, *, floor: int) -> bool:
        answer = await self._call(
            "transact_write_items",
            TransactItems=[
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {"loop_id": {"S": CONTROL_ID}},
                        "UpdateExpression": "SET live = live - :one",
                        "ConditionExpression": "live > :floor",
                        "ExpressionAttributeValues": {":one": _n(1), ":floor": _n(floor)},
                    }
                },
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": {"loop_id": {"S": loop_id}},
                        "ConditionExpression": "generation = :gen",
                        "ExpressionAttributeValues": {":gen": _n(generation)},
                    }
                },
            ],
        )
        return answer is not None

    async def reseed(self, item: LeaseItem, *, now: float) -> LoopToken | None:
        answer = await self._call(
            "update_item",
            TableName=self.table,
            Key={"loop_id": {"S": item.loop_id}},
            UpdateExpression=(
                "SET generation = :next, put_generation = :next, heartbeat = :now,"
                " run_until = :zero"
            ),
            ConditionExpression="generation = :gen AND heartbeat = :hb AND run_until = :until",
            ExpressionAttributeValues={
                ":gen": _n(item.generation),
                ":next": _n(item.generation + 1),
                ":hb": _n(item.heartbeat),
                ":until": _n(item.run_until),
                ":now": _n(now),
                ":zero": _n(0),
            },
        )
        return LoopToken(item.loop_id, item.generation + 1) if answer is not None else None

    async def list_leases(self) -> list[LeaseItem]:
        items: list[LeaseItem] = []
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
            if start:
                kwargs["ExclusiveStartKey"] = start
            answer = await self._call("scan", **kwargs) or {}
            items.extend(
                _item_from_ddb(raw)
                for raw in answer.get("Items", [])
                if raw["loop_id"]["S"] != CONTROL_ID
            )
            start = answer.get("LastEvaluatedKey")
            if not start:
                return items
