"""Unit tests of the AWS boundary's clients: SqsQueue, AioLambdaInvoker and AwsClients, their
client-side checks, and the import cost of asyncloop._aws (the error table and `map_errors`
are tested in test_error_table.py).

No network: botocore errors are constructed, and the clients are small recording fakes.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import pytest
from _aws_errors import client_error
from _fresh_imports import loaded_after

from asyncloop._aws import AioLambdaInvoker, AwsClients, SqsQueue
from asyncloop._config import AwsConfig
from asyncloop._exceptions import (
    AwsError,
    ConfigError,
    QueueNotFound,
    TransportError,
)
from asyncloop._types import BatchEntryFailure, Message

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
FUNCTION = "worker"


# --- import cost ------------------------------------------------------------------------------


def test_importing_the_boundary_does_not_import_aioboto3() -> None:
    heavy = ("aioboto3", "aiobotocore", "botocore", "aiohttp")
    assert loaded_after("import asyncloop._aws", heavy) == []


# --- SqsQueue and AioLambdaInvoker over fakes -------------------------------------------------


class RecordingSqsClient:
    """Answers like aiobotocore's SQS client, and records each call."""

    def __init__(self, responses: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.responses = responses or {}

    async def _call(self, name: str, kwargs: dict[str, Any]) -> Any:
        self.calls.append((name, kwargs))
        answer = self.responses.get(name, {})
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def receive_message(self, **kwargs: Any) -> Any:
        return await self._call("receive_message", kwargs)

    async def delete_message_batch(self, **kwargs: Any) -> Any:
        return await self._call("delete_message_batch", kwargs)

    async def change_message_visibility_batch(self, **kwargs: Any) -> Any:
        return await self._call("change_message_visibility_batch", kwargs)

    async def get_queue_attributes(self, **kwargs: Any) -> Any:
        return await self._call("get_queue_attributes", kwargs)


def handles(n: int) -> list[tuple[str, str]]:
    return [(f"e{i}", f"handle-{i}") for i in range(n)]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "entries",
    [
        [],
        handles(11),
        [("same", "h1"), ("same", "h2")],
        [("has space", "h1")],
        [("x" * 81, "h1")],
    ],
    ids=["empty", "eleven", "repeated-id", "bad-id", "long-id"],
)
async def test_batches_that_sqs_would_reject_are_refused_before_sending(
    entries: list[tuple[str, str]],
) -> None:
    client = RecordingSqsClient()
    queue = SqsQueue(client, QUEUE_URL)
    with pytest.raises(ValueError, match="DeleteMessageBatch"):
        await queue.delete_batch(entries)
    with pytest.raises(ValueError, match="ChangeMessageVisibilityBatch"):
        await queue.change_visibility_batch([(i, h, 0) for i, h in entries])
    assert client.calls == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_messages": 0, "wait_time_seconds": 0},
        {"max_messages": 11, "wait_time_seconds": 0},
        {"max_messages": 10, "wait_time_seconds": 21},
        {"max_messages": 10, "wait_time_seconds": 0, "visibility_timeout": 43_201},
    ],
)
async def test_receive_refuses_values_sqs_would_reject(kwargs: dict[str, int]) -> None:
    client = RecordingSqsClient()
    with pytest.raises(ValueError, match=r"must be in \d+\.\.\d+"):
        await SqsQueue(client, QUEUE_URL).receive(**kwargs)
    assert client.calls == []


@pytest.mark.asyncio
async def test_a_visibility_timeout_out_of_range_is_refused() -> None:
    client = RecordingSqsClient()
    with pytest.raises(ValueError, match=r"0\.\.43200"):
        await SqsQueue(client, QUEUE_URL).change_visibility_batch([("a", "h", 43_201)])
    assert client.calls == []


def test_a_malformed_queue_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="queue_url"):
        SqsQueue(RecordingSqsClient(), "not-a-url")


@pytest.mark.asyncio
async def test_receive_asks_for_every_attribute_and_builds_messages() -> None:
    # GIVEN SQS answering one message
    raw = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh-1",
        "Body": "hello",
        "MD5OfBody": "5d41402abc4b2a76b9719d911017c592",
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000"},
        "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}},
    }
    client = RecordingSqsClient({"receive_message": {"Messages": [raw]}})
    before = anyio.current_time()
    # WHEN receiving with a visibility timeout
    messages = await SqsQueue(client, QUEUE_URL).receive(
        max_messages=10, wait_time_seconds=1, visibility_timeout=30
    )
    after = anyio.current_time()
    # THEN the request asks for all attributes, and the message is built from the answer
    [(name, request)] = client.calls
    assert name == "receive_message"
    assert request == {
        "QueueUrl": QUEUE_URL,
        "MaxNumberOfMessages": 10,
        "WaitTimeSeconds": 1,
        "VisibilityTimeout": 30,
        "MessageSystemAttributeNames": ["All"],
        "AttributeNames": ["All"],
        "MessageAttributeNames": ["All"],
    }
    [message] = messages
    assert isinstance(message, Message)
    assert (message.message_id, message.receipt_handle, message.body) == ("m-1", "rh-1", "hello")
    assert message.receive_count == 2
    assert message.message_attributes == raw["MessageAttributes"]
    assert before <= message.received_at <= after


@pytest.mark.asyncio
async def test_receive_leaves_visibility_to_the_queue_by_default() -> None:
    client = RecordingSqsClient()
    assert await SqsQueue(client, QUEUE_URL).receive(max_messages=1, wait_time_seconds=0) == []
    assert "VisibilityTimeout" not in client.calls[0][1]


@pytest.mark.asyncio
async def test_batch_answers_become_failures() -> None:
    failed = [{"Id": "e1", "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "bad"}]
    client = RecordingSqsClient(
        {
            "delete_message_batch": {"Successful": [{"Id": "e0"}], "Failed": failed},
            "change_message_visibility_batch": {"Successful": [{"Id": "e0"}, {"Id": "e1"}]},
        }
    )
    queue = SqsQueue(client, QUEUE_URL)
    assert await queue.delete_batch(handles(2)) == [
        BatchEntryFailure(id="e1", code="ReceiptHandleIsInvalid", message="bad", sender_fault=True)
    ]
    assert await queue.change_visibility_batch([("e0", "h0", 0), ("e1", "h1", 5)]) == []
    assert client.calls[0][1]["Entries"] == [
        {"Id": "e0", "ReceiptHandle": "handle-0"},
        {"Id": "e1", "ReceiptHandle": "handle-1"},
    ]
    assert client.calls[1][1]["Entries"][1] == {
        "Id": "e1",
        "ReceiptHandle": "h1",
        "VisibilityTimeout": 5,
    }


@pytest.mark.asyncio
async def test_queue_calls_translate_errors_with_the_queue_url() -> None:
    missing = client_error(
        "AWS.SimpleQueueService.NonExistentQueue", operation="GetQueueAttributes"
    )
    client = RecordingSqsClient({"get_queue_attributes": missing})
    with pytest.raises(QueueNotFound) as caught:
        await SqsQueue(client, QUEUE_URL).get_attributes(["VisibilityTimeout"])
    assert caught.value.queue_url == QUEUE_URL
    assert caught.value.operation == "GetQueueAttributes"
    assert caught.value.__cause__ is missing
    assert client.calls[0][1]["AttributeNames"] == ["VisibilityTimeout"]


class FakePayload:
    """aiobotocore's StreamingBody as the invoker uses it: ``async with`` and ``read()``."""

    def __init__(self, data: bytes, error: Exception | None = None) -> None:
        self.data = data
        self.error = error
        self.entered = False
        self.released = False

    async def __aenter__(self) -> FakePayload:
        self.entered = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.released = True

    async def read(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self.data


class FakeLambdaClient:
    def __init__(self, response: dict[str, Any] | Exception) -> None:
        self.response = response
        self.calls: list[dict[str, Any]] = []

    async def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if isinstance(self.response, Exception):
            raise self.response
        return self.response


@pytest.mark.asyncio
async def test_invoke_reads_and_releases_the_payload() -> None:
    payload = FakePayload(b'{"ok": true}')
    client = FakeLambdaClient({"StatusCode": 200, "FunctionError": "Unhandled", "Payload": payload})
    result = await AioLambdaInvoker(client).invoke(
        function_name=FUNCTION, payload=b"{}", invocation_type="RequestResponse"
    )
    assert (result.status_code, result.function_error, result.payload) == (
        200,
        "Unhandled",
        b'{"ok": true}',
    )
    assert payload.entered
    assert payload.released
    assert client.calls == [
        {"FunctionName": FUNCTION, "InvocationType": "RequestResponse", "Payload": b"{}"}
    ]


@pytest.mark.asyncio
async def test_invoke_releases_the_payload_when_reading_fails() -> None:
    payload = FakePayload(b"", error=aiohttp.ClientPayloadError("truncated"))
    client = FakeLambdaClient({"StatusCode": 200, "Payload": payload})
    with pytest.raises(TransportError) as caught:
        await AioLambdaInvoker(client).invoke(
            function_name=FUNCTION, payload=b"{}", invocation_type="RequestResponse"
        )
    assert payload.released
    # TransportError has no function_name attribute (see _exceptions): the message names it
    assert FUNCTION in str(caught.value)


@pytest.mark.asyncio
async def test_a_throttled_invoke_is_a_throttled_aws_error() -> None:
    throttled = client_error("TooManyRequestsException", status=429, operation="Invoke")
    with pytest.raises(AwsError) as caught:
        await AioLambdaInvoker(FakeLambdaClient(throttled)).invoke(
            function_name=FUNCTION, payload=b"{}", invocation_type="Event"
        )
    assert caught.value.throttled
    assert caught.value.retryable


# --- AwsClients without a network ----------------------------------------------------------------


@pytest.mark.parametrize("pool_size", [0, -1, 1.5, True, 10_001])
def test_pool_size_is_checked(pool_size: Any) -> None:
    with pytest.raises(ConfigError, match="pool_size"):
        AwsClients(AwsConfig(), pool_size=pool_size)


def test_clients_need_async_with() -> None:
    clients = AwsClients(AwsConfig(), pool_size=4)
    with pytest.raises(RuntimeError, match="async with"):
        _ = clients.sqs
