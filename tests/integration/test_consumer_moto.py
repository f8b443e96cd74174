"""The consumer over real HTTP, on both transports and both emulators: the wiring factory's
consumer against moto's server (Lambda without Docker) and against fauxqs + `LambdaServer`."""

from __future__ import annotations

import anyio
import pytest
from _moto import Emulator

from asyncloop import ConsumerConfig, LambdaConfig, Message, SqsQueue
from asyncloop._config import Transport
from asyncloop._lean.sqs import LeanQueue
from asyncloop._wiring import Wiring, open_wiring

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


def _assert_on(wiring: Wiring, transport: Transport) -> None:
    # The parametrization reached the data plane (not only the log line)
    assert isinstance(wiring.queue, LeanQueue if transport == "lean" else SqsQueue)


async def test_300_messages_drain_through_lambda_event_invokes(
    aws_emulator: Emulator, transport: Transport
) -> None:
    # GIVEN a queue, a function, and 300 messages fed in chunks (moto slows with backlog)
    queue_info = await aws_emulator.make_queue()
    function = await aws_emulator.make_function()
    totals = {"succeeded": 0, "deleted": 0, "invokes": 0}
    async with open_wiring(
        queue_info.url,
        lambda_config=LambdaConfig(function_name=function, invocation_type="Event"),
        config=_config(),
        aws=aws_emulator.aws(transport),
    ) as wiring:
        _assert_on(wiring, transport)
        for chunk in range(3):
            await aws_emulator.send_messages(queue_info.url, 100, body=f"m-{chunk}-{{i}}")
            # WHEN the consumer drains each chunk
            with anyio.fail_after(60):
                stats = await wiring.consumer().run()
            totals["succeeded"] += stats.succeeded
            totals["deleted"] += stats.deleted
            totals["invokes"] += stats.api_calls.get("Invoke", 0)

    # THEN all 300 were invoked and deleted (at least once: moto may deliver one twice),
    # and nothing is left
    assert totals["succeeded"] >= 300
    assert totals["deleted"] >= 300
    assert totals["invokes"] >= 300
    assert await aws_emulator.count_messages(queue_info.url) == 0
    # (fauxqs's Lambda endpoint saw every body; moto's runs nothing to look at)
    bodies = aws_emulator.invoked_bodies()
    if bodies is not None:
        assert set(bodies) == {f"m-{c}-{i}" for c in range(3) for i in range(100)}


async def test_always_failing_handler_sends_messages_to_the_dlq(
    aws_emulator: Emulator, transport: Transport
) -> None:
    # GIVEN visibility 0 (a failure is visible again at once) and maxReceiveCount 2
    queue_info = await aws_emulator.make_queue(visibility_timeout=0, max_receive_count=2)
    await aws_emulator.send_messages(queue_info.url, 10)
    attempts: dict[str, int] = {}

    async def poison(message: Message) -> None:
        attempts[message.message_id] = attempts.get(message.message_id, 0) + 1
        raise ValueError("poison")

    async with open_wiring(
        queue_info.url,
        handler=poison,
        config=_config(receivers=1),
        aws=aws_emulator.aws(transport),
    ) as wiring:
        _assert_on(wiring, transport)
        # WHEN the consumer runs until the queue is empty
        with anyio.fail_after(60):
            stats = await wiring.consumer().run()

    # THEN each message was tried maxReceiveCount times, none deleted, all in the DLQ
    assert stats.deleted == 0
    assert sorted(attempts.values()) == [2] * 10
    assert await aws_emulator.count_messages(queue_info.url) == 0
    assert await aws_emulator.count_messages(queue_info.dlq_url) == 10


async def test_delete_by_worker_deletes_nothing(
    aws_emulator: Emulator, transport: Transport
) -> None:
    # GIVEN a worker function that (moto without Docker, LambdaServer) runs nothing, so
    # deletes nothing
    queue_info = await aws_emulator.make_queue(visibility_timeout=300)
    function = await aws_emulator.make_function()
    await aws_emulator.send_messages(queue_info.url, 40)
    async with open_wiring(
        queue_info.url,
        function_name=function,
        config=_config(delete_by="worker"),
        aws=aws_emulator.aws(transport),
    ) as wiring:
        _assert_on(wiring, transport)
        # WHEN the consumer runs with delete_by=worker
        with anyio.fail_after(60):
            stats = await wiring.consumer().run()

    # THEN every message was invoked (moto, like SQS, may deliver one twice), the consumer
    # made no delete call, and all 40 remain
    assert stats.succeeded == stats.received >= 40
    assert "DeleteMessageBatch" not in stats.api_calls
    assert stats.deleted == 0
    assert await aws_emulator.count_messages(queue_info.url) == 40
