"""The DynamoDB lease store: `lease`'s rules as conditional writes on one table.

Every call goes through `map_errors` (a failed condition is `ConditionFailed`, read here as the
answer "no"); the invariant the writes keep is written out in `lease`.

DynamoDB layout (hash key ``loop_id``, string)::

    loop_id=<id>        generation N, put_generation N, heartbeat N, run_until N,
                        empty_generations N, state S ("live")
    loop_id=#control    enabled BOOL, live N

"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._error_table import map_errors
from .._exceptions import AwsError, ConditionFailed
from .control import CONTROL_ID, ClaimOutcome, LeaseItem, LoopToken, claim_outcome
from .lease import Control

__all__ = ("DynamoLeaseStore",)


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

    def _count_live(self, sign: str, condition: str, values: dict[str, Any]) -> dict[str, Any]:
        """The transaction item that moves the control row's live count by one (`sign` is
        ``+`` or ``-``) if `condition` holds, with `values` for its placeholders."""
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"loop_id": {"S": CONTROL_ID}},
                "UpdateExpression": f"SET live = live {sign} :one",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": {":one": _n(1), **values},
            }
        }

    async def spawn(self, loop_id: str, *, now: float, max_loops: int) -> LoopToken | None:
        answer = await self._call(
            "transact_write_items",
            TransactItems=[
                self._count_live(
                    "+",
                    "enabled = :true AND live < :max",
                    {":true": {"BOOL": True}, ":max": _n(max_loops)},
                ),
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
                self._count_live("-", "live > :floor", {":floor": _n(floor)}),
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
