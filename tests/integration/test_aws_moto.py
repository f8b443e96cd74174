"""The AWS boundary against moto's server over real HTTP (and two tiny local servers).

Setup goes through plain aioboto3 clients (`aws_admin` and the factories); only the code under
test goes through `AwsClients`, `SqsQueue` and `AioLambdaInvoker`.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from _moto import REGION, AdminClients, CountMessages, MakeFunction, MakeQueue, SendMessages
from botocore.exceptions import ClientError, EndpointConnectionError

from asyncloop._aws import AioLambdaInvoker, AwsClients, SqsQueue
from asyncloop._config import AwsConfig
from asyncloop._exceptions import (
    ClosedError,
    FunctionError,
    FunctionNotFound,
    QueueNotFound,
    TransportError,
)
from asyncloop._protocols import LambdaInvoker, Queue
from asyncloop._types import BatchEntryFailure, Message
from asyncloop.testing._moto import MotoServer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.fixture
def aws_config(moto_endpoint: str) -> AwsConfig:
    return AwsConfig(region=REGION, endpoint_url=moto_endpoint, max_attempts=2)


@pytest_asyncio.fixture
async def aws(aws_config: AwsConfig) -> AsyncIterator[AwsClients]:
    async with AwsClients(aws_config, pool_size=16) as clients:
        yield clients


async def receive_all(queue: Queue, expected: int) -> list[Message]:
    """Receive until `expected` messages arrived (moto may answer fewer than asked)."""
    received: list[Message] = []
    for _ in range(expected + 3):
        received += await queue.receive(max_messages=10, wait_time_seconds=0)
        if len(received) >= expected:
            break
    assert len(received) == expected
    return received


# --- SqsQueue -----------------------------------------------------------------------------------


async def test_receive_returns_messages_with_their_attributes(
    aws: AwsClients, aws_admin: AdminClients, make_queue: MakeQueue
) -> None:
    # GIVEN a queue holding one message with a message attribute
    info = await make_queue()
    await aws_admin.sqs.send_message(
        QueueUrl=info.url,
        MessageBody='{"job": 1}',
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
    )
    queue: Queue = SqsQueue(aws.sqs, info.url)
    # WHEN it is received
    [message] = await receive_all(queue, 1)
    # THEN the message carries its body, its system attributes and its message attributes
    assert message.body == '{"job": 1}'
    assert message.md5_of_body
    assert message.receive_count == 1
    assert message.sent_timestamp is not None
    assert message.message_attributes["kind"]["StringValue"] == "test"
    assert message.received_at > 0


async def test_delete_batch_deletes_and_reports_a_bogus_receipt_handle(
    aws: AwsClients,
    make_queue: MakeQueue,
    send_messages: SendMessages,
    count_messages: CountMessages,
) -> None:
    # GIVEN two received messages
    info = await make_queue()
    await send_messages(info.url, 2)
    queue = SqsQueue(aws.sqs, info.url)
    received = await receive_all(queue, 2)
    # WHEN deleting them with a bogus entry in the same batch
    entries = [(f"e{i}", m.receipt_handle) for i, m in enumerate(received)]
    failures = await queue.delete_batch([*entries, ("bogus", "not-a-receipt-handle")])
    # THEN only the bogus entry failed, and the queue is empty
    assert [(f.id, f.code, f.sender_fault) for f in failures] == [
        ("bogus", "ReceiptHandleIsInvalid", True)
    ]
    assert all(isinstance(f, BatchEntryFailure) for f in failures)
    assert await count_messages(info.url) == 0


async def test_change_visibility_batch_releases_and_reports_a_bogus_receipt_handle(
    aws: AwsClients, make_queue: MakeQueue, send_messages: SendMessages
) -> None:
    # GIVEN a received message, invisible for the queue's 30 s
    info = await make_queue(visibility_timeout=30)
    await send_messages(info.url, 1)
    queue = SqsQueue(aws.sqs, info.url)
    [first] = await receive_all(queue, 1)
    assert await queue.receive(max_messages=10, wait_time_seconds=0) == []
    # WHEN its visibility is set to 0, with a bogus entry in the same batch
    failures = await queue.change_visibility_batch(
        [("release", first.receipt_handle, 0), ("bogus", "not-a-receipt-handle", 0)]
    )
    # THEN only the bogus entry failed, and the message is back at once
    assert [(f.id, f.code) for f in failures] == [("bogus", "ReceiptHandleIsInvalid")]
    [again] = await receive_all(queue, 1)
    assert again.message_id == first.message_id
    assert again.receive_count == 2


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [(f"e{i}", "handle") for i in range(11)],
        [("same", "handle-1"), ("same", "handle-2")],
    ],
    ids=["empty", "eleven", "repeated-id"],
)
async def test_batches_real_sqs_rejects_are_refused_though_moto_accepts_them(
    aws: AwsClients,
    make_queue: MakeQueue,
    send_messages: SendMessages,
    count_messages: CountMessages,
    entries: list[tuple[str, str]],
) -> None:
    # GIVEN a received message whose handle is in a batch SQS would reject as a whole
    info = await make_queue()
    await send_messages(info.url, 1)
    queue = SqsQueue(aws.sqs, info.url)
    [message] = await receive_all(queue, 1)
    entries = [(entry_id, message.receipt_handle) for entry_id, _ in entries]
    # WHEN deleting or releasing it THEN the call is refused before reaching moto
    with pytest.raises(ValueError, match="DeleteMessageBatch"):
        await queue.delete_batch(entries)
    with pytest.raises(ValueError, match="ChangeMessageVisibilityBatch"):
        await queue.change_visibility_batch([(i, h, 0) for i, h in entries])
    # and the message is still there, still invisible
    assert await count_messages(info.url) == 1
    assert await queue.receive(max_messages=10, wait_time_seconds=0) == []


async def test_get_attributes_reads_visibility_redrive_and_backlog(
    aws: AwsClients, make_queue: MakeQueue, send_messages: SendMessages
) -> None:
    # GIVEN a queue with a 7 s visibility timeout, a DLQ after 4 receives, and 5 messages
    info = await make_queue(visibility_timeout=7, max_receive_count=4)
    await send_messages(info.url, 5)
    queue = SqsQueue(aws.sqs, info.url)
    # WHEN reading its attributes
    attributes = await queue.get_attributes()
    some = await queue.get_attributes(["VisibilityTimeout"])
    # THEN they say so, as strings
    assert attributes["VisibilityTimeout"] == "7"
    assert attributes["ApproximateNumberOfMessages"] == "5"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == info.dlq_arn
    assert int(redrive["maxReceiveCount"]) == 4
    assert some == {"VisibilityTimeout": "7"}


async def test_a_missing_queue_is_queue_not_found(aws: AwsClients, moto_endpoint: str) -> None:
    # GIVEN the URL of a queue that does not exist
    url = f"{moto_endpoint}/123456789012/no-such-queue"
    queue = SqsQueue(aws.sqs, url)
    # WHEN it is used THEN the error says which queue, and keeps botocore's as the cause
    with pytest.raises(QueueNotFound) as caught:
        await queue.get_attributes()
    assert caught.value.queue_url == url
    assert caught.value.operation == "GetQueueAttributes"
    assert caught.value.code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
    assert not caught.value.retryable
    assert isinstance(caught.value.__cause__, ClientError)
    with pytest.raises(QueueNotFound):
        await queue.receive(max_messages=1, wait_time_seconds=0)


# --- AioLambdaInvoker --------------------------------------------------------------------------


@pytest.mark.parametrize(("invocation_type", "status"), [("Event", 202), ("RequestResponse", 200)])
async def test_invoke_answers_the_status_of_its_invocation_type(
    aws: AwsClients, make_function: MakeFunction, invocation_type: Any, status: int
) -> None:
    # GIVEN a function (moto without Docker runs no code and echoes the payload)
    name = await make_function()
    invoker: LambdaInvoker = AioLambdaInvoker(aws.lambda_)
    # WHEN it is invoked
    result = await invoker.invoke(
        function_name=name, payload=b'{"hello": "world"}', invocation_type=invocation_type
    )
    # THEN the status is the invocation type's, with no function error
    assert result.status_code == status
    assert result.function_error is None
    if invocation_type == "RequestResponse":
        assert json.loads(result.payload) == {"hello": "world"}


async def test_get_function_finds_a_function_and_refuses_a_missing_one(
    aws: AwsClients, make_function: MakeFunction
) -> None:
    name = await make_function()
    invoker = AioLambdaInvoker(aws.lambda_)
    found = await invoker.get_function(name)
    assert found["Configuration"]["FunctionName"] == name
    assert "ResponseMetadata" not in found
    with pytest.raises(FunctionNotFound) as caught:
        await invoker.get_function("no-such-function")
    assert caught.value.function_name == "no-such-function"
    assert caught.value.code == "ResourceNotFoundException"
    assert isinstance(caught.value.__cause__, ClientError)


@dataclass
class ThrottlingLambda:
    endpoint_url: str
    invokes: int = 0


@pytest_asyncio.fixture
async def throttling_lambda(aws_credentials: None) -> AsyncIterator[ThrottlingLambda]:
    """An endpoint on 127.0.0.1 whose Invoke always answers 429 TooManyRequestsException."""
    from aiohttp import web

    server = ThrottlingLambda(endpoint_url="")

    async def invoke(request: web.Request) -> web.Response:
        await request.read()
        server.invokes += 1
        return web.json_response(
            {"Type": "User", "message": "Rate Exceeded.", "Reason": "ConcurrentInvocationLimit"},
            status=429,
            headers={"x-amzn-ErrorType": "TooManyRequestsException"},
        )

    app = web.Application()
    app.router.add_post("/2015-03-31/functions/{name}/invocations", invoke)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        server.endpoint_url = f"http://{host}:{port}"
        yield server
    finally:
        await runner.cleanup()


async def test_a_429_is_a_throttled_function_error(throttling_lambda: ThrottlingLambda) -> None:
    # GIVEN Lambda refusing for concurrency, and one attempt per call (no botocore retries)
    config = AwsConfig(region=REGION, endpoint_url=throttling_lambda.endpoint_url, max_attempts=1)
    async with AwsClients(config, pool_size=2) as aws:
        # WHEN invoking THEN the error is throttled and retryable, with no botocore type
        with pytest.raises(FunctionError) as caught:
            await AioLambdaInvoker(aws.lambda_).invoke(
                function_name="busy", payload=b"{}", invocation_type="Event"
            )
    assert caught.value.throttled
    assert caught.value.retryable
    assert caught.value.code == "TooManyRequestsException"
    assert caught.value.function_name == "busy"
    assert throttling_lambda.invokes == 1


# --- AwsClients ---------------------------------------------------------------------------------


async def test_pool_size_timeouts_and_retries_reach_the_botocore_config(moto_endpoint: str) -> None:
    config = AwsConfig(
        region=REGION,
        endpoint_url=moto_endpoint,
        retry_mode="adaptive",
        max_attempts=3,
        connect_timeout=2.5,
        read_timeout=33.0,
    )
    async with AwsClients(config, pool_size=37) as aws:
        kinesis = await aws.client("kinesis")
        for client in (aws.sqs, aws.lambda_, kinesis):
            botocore_config = client.meta.config
            assert botocore_config.max_pool_connections == 37
            assert botocore_config.connect_timeout == 2.5
            assert botocore_config.read_timeout == 33.0
            assert botocore_config.retries["mode"] == "adaptive"
            # AwsConfig.max_attempts counts the first attempt, as botocore's total_max_attempts
            assert botocore_config.retries["total_max_attempts"] == 3
            assert client.meta.region_name == REGION
            assert client.meta.endpoint_url == moto_endpoint


async def test_an_explicit_max_pool_connections_wins_over_pool_size(moto_endpoint: str) -> None:
    config = AwsConfig(region=REGION, endpoint_url=moto_endpoint, max_pool_connections=5)
    async with AwsClients(config, pool_size=37) as aws:
        assert aws.pool_size == 5
        assert aws.sqs.meta.config.max_pool_connections == 5


async def test_other_clients_are_created_once_and_closed_with_the_rest(
    aws_config: AwsConfig,
) -> None:
    async with AwsClients(aws_config, pool_size=4) as aws:
        kinesis = await aws.client("kinesis")
        # Created once, then cached; sqs and lambda are the same objects as the properties
        assert await aws.client("kinesis") is kinesis
        assert await aws.client("sqs") is aws.sqs
        assert await aws.client("lambda") is aws.lambda_
        assert kinesis.meta.service_model.service_name == "kinesis"
        # And it works
        assert (await kinesis.list_streams())["StreamNames"] == []
    with pytest.raises(ClosedError):
        _ = aws.sqs
    with pytest.raises(ClosedError):
        await aws.client("kinesis")


async def test_an_unreachable_endpoint_is_a_transport_error(aws_credentials: None) -> None:
    # GIVEN an endpoint on 127.0.0.1 where nothing listens, and no botocore retries
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    config = AwsConfig(region=REGION, endpoint_url=endpoint, max_attempts=1, connect_timeout=1.0)
    async with AwsClients(config, pool_size=2) as aws:
        queue = SqsQueue(aws.sqs, f"{endpoint}/123456789012/q")
        # WHEN calling it THEN a retryable TransportError, botocore's error as its cause
        with pytest.raises(TransportError) as caught:
            await queue.get_attributes()
    assert caught.value.retryable
    assert caught.value.operation == "GetQueueAttributes"
    assert isinstance(caught.value.__cause__, EndpointConnectionError)


# --- MotoServer ---------------------------------------------------------------------------------


async def test_moto_listens_on_loopback_and_keeps_lambda_without_docker_across_reset(
    moto_instance: MotoServer, moto_server: str, moto_endpoint: str
) -> None:
    # moto_endpoint has just reset moto's state: the Lambda config must survive it
    assert moto_server == moto_endpoint
    assert moto_server.startswith("http://127.0.0.1:")
    assert moto_instance.get_config()["lambda"]["use_docker"] is False
    assert logging.getLogger("werkzeug").level >= logging.ERROR


async def test_reset_clears_queues(
    moto_instance: MotoServer, aws_admin: AdminClients, make_queue: MakeQueue
) -> None:
    await make_queue()
    assert (await aws_admin.sqs.list_queues()).get("QueueUrls")
    moto_instance.reset()
    assert not (await aws_admin.sqs.list_queues()).get("QueueUrls")
