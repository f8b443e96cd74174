"""The consumer over real HTTP: aioboto3 against moto's server (Lambda without Docker)."""

from __future__ import annotations

import anyio
import pytest
from _moto import AdminClients, CountMessages, MakeFunction, MakeQueue, SendMessages

from asyncloop import (
    AioLambdaInvoker,
    AwsClients,
    AwsConfig,
    CallableDispatcher,
    Consumer,
    ConsumerConfig,
    LambdaConfig,
    LambdaDispatcher,
    Message,
    SqsQueue,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def _config(**overrides: object) -> ConsumerConfig:
    values: dict[str, object] = {
        "wait_time_seconds": 0,
        "until_empty": True,
        "receivers": 4,
        "max_in_flight": 32,
        "ack_flush_interval": 0.01,
    }
    values.update(overrides)
    return ConsumerConfig(**values)  # type: ignore[arg-type]


async def test_300_messages_drain_through_lambda_event_invokes(
    moto_endpoint: str,
    make_queue: MakeQueue,
    make_function: MakeFunction,
    send_messages: SendMessages,
    count_messages: CountMessages,
) -> None:
    # GIVEN a queue, a function, and 300 messages fed in chunks (moto slows with backlog)
    queue_info = await make_queue()
    function = await make_function()
    aws = AwsConfig(endpoint_url=moto_endpoint, region="us-east-1")
    stats_total = {"succeeded": 0, "deleted": 0, "invokes": 0}
    async with AwsClients(aws, pool_size=64) as clients:
        queue = SqsQueue(clients.sqs, queue_info.url)
        dispatcher = LambdaDispatcher(
            invoker=AioLambdaInvoker(clients.lambda_),
            config=LambdaConfig(function_name=function, invocation_type="Event"),
            queue_url=queue_info.url,
        )
        for _ in range(3):
            await send_messages(queue_info.url, 100)
            # WHEN the consumer drains each chunk
            with anyio.fail_after(60):
                stats = await Consumer(queue=queue, dispatcher=dispatcher, config=_config()).run()
            stats_total["succeeded"] += stats.succeeded
            stats_total["deleted"] += stats.deleted
            stats_total["invokes"] += stats.api_calls.get("Invoke", 0)

    # THEN all 300 were invoked and deleted, and nothing is left
    assert stats_total["succeeded"] >= 300
    assert stats_total["invokes"] >= 300
    assert await count_messages(queue_info.url) == 0


async def test_always_failing_handler_sends_messages_to_the_dlq(
    moto_endpoint: str,
    make_queue: MakeQueue,
    send_messages: SendMessages,
    count_messages: CountMessages,
) -> None:
    # GIVEN visibility 0 (a failure is visible again at once) and maxReceiveCount 2
    queue_info = await make_queue(visibility_timeout=0, max_receive_count=2)
    await send_messages(queue_info.url, 10)
    attempts: dict[str, int] = {}

    async def poison(message: Message) -> None:
        attempts[message.message_id] = attempts.get(message.message_id, 0) + 1
        raise ValueError("poison")

    aws = AwsConfig(endpoint_url=moto_endpoint, region="us-east-1")
    async with AwsClients(aws, pool_size=16) as clients:
        queue = SqsQueue(clients.sqs, queue_info.url)
        # WHEN the consumer runs until the queue is empty
        with anyio.fail_after(60):
            stats = await Consumer(
                queue=queue, dispatcher=CallableDispatcher(poison), config=_config(receivers=1)
            ).run()

    # THEN each message was tried maxReceiveCount times, none deleted, all in the DLQ
    assert stats.deleted == 0
    assert sorted(attempts.values()) == [2] * 10
    assert await count_messages(queue_info.url) == 0
    assert await count_messages(queue_info.dlq_url) == 10


async def test_delete_by_worker_deletes_nothing(
    moto_endpoint: str,
    make_queue: MakeQueue,
    make_function: MakeFunction,
    send_messages: SendMessages,
    count_messages: CountMessages,
    aws_admin: AdminClients,
) -> None:
    # GIVEN a worker function that (in moto, without Docker) runs nothing, so deletes nothing
    queue_info = await make_queue(visibility_timeout=300)
    function = await make_function()
    await send_messages(queue_info.url, 40)
    aws = AwsConfig(endpoint_url=moto_endpoint, region="us-east-1")
    async with AwsClients(aws, pool_size=32) as clients:
        queue = SqsQueue(clients.sqs, queue_info.url)
        dispatcher = LambdaDispatcher(
            invoker=AioLambdaInvoker(clients.lambda_),
            config=LambdaConfig(function_name=function),
            queue_url=queue_info.url,
        )
        # WHEN the consumer runs with delete_by=worker
        with anyio.fail_after(60):
            stats = await Consumer(
                queue=queue, dispatcher=dispatcher, config=_config(delete_by="worker")
            ).run()

    # THEN every message was invoked (moto, like SQS, may deliver one twice), the consumer
    # made no delete call, and all 40 remain
    assert stats.succeeded == stats.received >= 40
    assert "DeleteMessageBatch" not in stats.api_calls
    assert stats.deleted == 0
    assert await count_messages(queue_info.url) == 40
