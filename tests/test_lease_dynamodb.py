"""The DynamoDB lease store (`asyncloop._loop.lease_dynamodb`): every botocore error goes
through `map_errors`' table.

The client is an aiobotocore-shaped fake that raises botocore's own exceptions, so these tests
check the translation the store gets, not DynamoDB's conditions (the moto test
`test_dynamodb_lease_store_answers_as_the_in_memory_one` does those).
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, WaiterError

from asyncloop import AwsError, CredentialsError, TransportError
from asyncloop._exceptions import TableError
from asyncloop._loop.control import LoopToken
from asyncloop._loop.lease_dynamodb import DynamoLeaseStore

pytestmark = pytest.mark.asyncio


def client_error(code: str, operation: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} (fake)"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


class Waiter:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.waited: list[str] = []

    async def wait(self, *, TableName: str, WaiterConfig: dict[str, int]) -> None:
        self.waited.append(TableName)
        if self.error is not None:
            raise self.error


class DynamoClient:
    """Answers every call with `answers[method]`: an exception to raise, or a dict to return."""

    def __init__(self, waiter_error: Exception | None = None, **answers: Any) -> None:
        self.answers = answers
        self.waiter = Waiter(waiter_error)
        self.calls: list[str] = []

    def __getattr__(self, method: str) -> Any:
        async def call(**kwargs: Any) -> Any:
            self.calls.append(method)
            answer = self.answers.get(method, {})
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call

    def get_waiter(self, name: str) -> Waiter:
        assert name == "table_exists"
        return self.waiter


async def test_create_table_raises_an_asyncloop_error_not_a_client_error() -> None:
    # GIVEN a client whose CreateTable is refused for the caller's credentials
    refused = client_error("AccessDeniedException", "CreateTable")
    store = DynamoLeaseStore(DynamoClient(create_table=refused), "leases")
    # WHEN the table is created
    with pytest.raises(AwsError) as caught:
        await store.create_table()
    # THEN the error is asyncloop's credentials error, botocore's kept as the cause
    assert isinstance(caught.value, CredentialsError)
    assert caught.value.operation == "CreateTable"
    assert caught.value.__cause__ is refused


async def test_create_table_on_an_existing_table_waits_for_it() -> None:
    # GIVEN a table that exists already
    client = DynamoClient(create_table=client_error("ResourceInUseException", "CreateTable"))
    store = DynamoLeaseStore(client, "leases")
    # WHEN it is created again / THEN that is no error, and the store waits until it is active
    await store.create_table()
    assert client.waiter.waited == ["leases"]


async def test_create_table_that_never_becomes_active_is_a_table_error() -> None:
    # GIVEN a table that does not become active before the waiter gives up
    gave_up = WaiterError("TableExists", "Max attempts exceeded", {})
    store = DynamoLeaseStore(DynamoClient(waiter_error=gave_up), "leases")
    # WHEN it is created / THEN a TableError names the table, the waiter's error as its cause
    with pytest.raises(TableError) as caught:
        await store.create_table()
    assert caught.value.table == "leases"
    assert caught.value.__cause__ is gave_up


@pytest.mark.parametrize(
    "code",
    ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"],
)
async def test_every_dynamodb_throttle_is_throttled_and_retryable(code: str) -> None:
    # GIVEN a lease table that throttles writes with one of DynamoDB's throttling codes
    store = DynamoLeaseStore(DynamoClient(update_item=client_error(code, "UpdateItem")), "t")
    # WHEN a run records its put
    with pytest.raises(TableError) as caught:
        await store.mark_put(LoopToken("L", 1))
    # THEN the error says throttled (back off), by the one table every AWS call uses
    assert (caught.value.throttled, caught.value.retryable) == (True, True)
    assert (caught.value.code, caught.value.operation) == (code, "UpdateItem")
    assert caught.value.table == "t"


async def test_a_failed_condition_is_an_answer_not_an_error() -> None:
    # GIVEN a claim whose condition fails and a lease that moved on
    client = DynamoClient(
        update_item=client_error("ConditionalCheckFailedException", "UpdateItem"),
        get_item={},
        transact_write_items=client_error("TransactionCanceledException", "TransactWriteItems"),
    )
    store = DynamoLeaseStore(client, "t")
    # WHEN claiming, spawning and ending / THEN each answers "no" without raising
    assert await store.claim(LoopToken("L", 0), now=1.0, run_until=2.0) == ("unknown", None)
    assert await store.spawn("L", now=1.0, max_loops=4) is None
    assert await store.end("L", 0, floor=0) is False


async def test_an_unreachable_table_is_a_retryable_transport_error() -> None:
    # GIVEN a DynamoDB endpoint that does not answer
    down = EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    store = DynamoLeaseStore(DynamoClient(get_item=down), "t")
    # WHEN the switch is read / THEN a retryable TransportError
    with pytest.raises(TransportError) as caught:
        await store.get_control()
    assert caught.value.retryable
    assert caught.value.__cause__ is down


async def test_a_missing_table_is_a_table_error_not_a_missing_function() -> None:
    # GIVEN a table that does not exist (DynamoDB shares Lambda's ResourceNotFoundException)
    missing = client_error("ResourceNotFoundException", "Scan")
    store = DynamoLeaseStore(DynamoClient(scan=missing), "gone")
    # WHEN the leases are listed / THEN the error is the table's, permanent
    with pytest.raises(TableError) as caught:
        await store.list_leases()
    assert type(caught.value) is TableError
    assert (caught.value.code, caught.value.retryable) == ("ResourceNotFoundException", False)
