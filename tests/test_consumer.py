"""The consumer core on in-memory fakes: capacity, batching, failures, stopping."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _consumer_helpers import (
    Gate,
    RecordingQueue,
    consumer_of,
    drain,
    drain_config,
    running,
    succeed,
    wait_for,
)

from asyncloop import (
    CallableDispatcher,
    Consumer,
    ConsumerConfig,
    HandlerFailed,
    LambdaConfig,
    LambdaDispatcher,
    Message,
)
from asyncloop.testing import FakeLambda, FakeQueue, FaultPlan

pytestmark = pytest.mark.asyncio


async def test_drains_queue_and_deletes_every_message() -> None:
    # GIVEN 250 messages and a handler that succeeds
    queue = FakeQueue()
    queue.send_many(f"m{i}" for i in range(250))
    seen: list[str] = []

    async def handler(message: Message) -> None:
        seen.append(message.body)

    # WHEN the consumer runs until the queue is empty
    stats = await drain(queue, handler)

    # THEN every message was handled once and deleted
    assert sorted(seen) == sorted(f"m{i}" for i in range(250))
    assert len(queue) == 0
    assert (stats.received, stats.succeeded, stats.deleted, stats.failed) == (250, 250, 250, 0)
    assert stats.receive_to_done.count == 250
    assert stats.send_to_done.count == 250


async def test_never_more_than_max_in_flight_and_receives_ask_for_free_capacity() -> None:
    # GIVEN a queue with more messages than capacity, and a handler that blocks
    queue = RecordingQueue()
    queue.send_many(f"m{i}" for i in range(100))
    gate = Gate(7)
    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(gate),
        config=drain_config(max_in_flight=7, receivers=3, batch_size=5),
    )

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        # WHEN the capacity fills up
        await wait_for(gate.started)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        asks_while_full = list(queue.receive_asks)
        # THEN exactly 7 are held, none asked beyond the free capacity
        assert gate.running == 7
        assert consumer.in_flight == 7
        assert sum(asks_while_full) == 7
        assert all(1 <= ask <= 5 for ask in asks_while_full)
        gate.release.set()

    assert gate.peak == 7
    assert consumer.stats.peak_in_flight <= 7
    assert consumer.stats.deleted == 100
    assert max(queue.receive_asks) <= 5


class TwinQueue(RecordingQueue):
    """Each receive of two or more also returns its first message's twin: the same
    MessageId with another receipt handle (SQS's at-least-once delivery)."""

    async def receive(
        self, *, max_messages: int, wait_time_seconds: int, visibility_timeout: int | None = None
    ) -> list[Message]:
        if max_messages < 2:
            return await super().receive(
                max_messages=max_messages,
                wait_time_seconds=wait_time_seconds,
                visibility_timeout=visibility_timeout,
            )
        messages = await super().receive(
            max_messages=max_messages - 1,
            wait_time_seconds=wait_time_seconds,
            visibility_timeout=visibility_timeout,
        )
        if messages:
            first = messages[0]
            twin = Message(
                message_id=first.message_id,
                receipt_handle=first.receipt_handle + "-twin",
                body=first.body,
                attributes=first.attributes,
                received_at=first.received_at,
            )
            messages = [*messages, twin]
        return messages


async def test_deletes_are_batched_by_ten_with_unique_ids_even_for_a_redelivered_message_id(
    make_message: object,
) -> None:
    # GIVEN a queue that delivers the same MessageId twice within one batch
    queue = TwinQueue()
    queue.send_many(f"m{i}" for i in range(23))

    # WHEN the consumer drains it
    stats = await drain(queue)

    # THEN every call had <= 10 entries with distinct Ids, and the twin's stale handle
    # was the only kind of failure (the FakeQueue rejects repeated Ids like SQS does)
    assert queue.delete_calls
    for call in queue.delete_calls:
        ids = [entry_id for entry_id, _ in call]
        assert 1 <= len(ids) <= 10
        assert len(set(ids)) == len(ids)
    assert stats.deleted + stats.delete_failed == stats.succeeded
    assert stats.delete_failed >= 1
    assert len(queue) == 0


async def test_full_batches_at_saturation() -> None:
    # GIVEN many messages and a fast handler
    queue = RecordingQueue()
    queue.send_many(f"m{i}" for i in range(1000))
    # WHEN it drains
    stats = await drain(queue, max_in_flight=100, receivers=4)

    # THEN deletes went in full batches of 10 (<= 0.21 SQS calls per message overall)
    assert stats.deleted == 1000
    sizes = [len(call) for call in queue.delete_calls]
    assert sizes.count(10) >= 95
    calls = stats.api_calls["ReceiveMessage"] + stats.api_calls["DeleteMessageBatch"]
    assert calls / 1000 <= 0.21


async def test_failed_dispatch_is_not_deleted_and_comes_back_then_reaches_dlq() -> None:
    # GIVEN a queue with a DLQ after 2 receives, and a handler that always fails
    dlq = FakeQueue(name="dlq")
    queue = FakeQueue(visibility_timeout=0, dead_letter_queue=dlq, max_receive_count=2)
    queue.send_many(["poison"])
    attempts: list[int] = []

    def handler(message: Message) -> None:
        attempts.append(message.receive_count)
        raise ValueError("boom")

    # WHEN it runs until empty (visibility 0: a failure is visible again at once)
    stats = await drain(queue, handler)

    # THEN it was tried twice, never deleted, and moved to the DLQ (sorted: with visibility 0
    # two receivers can hold it at once, and their handler threads may run in either order)
    assert sorted(attempts) == [1, 2]
    assert stats.failed == 2
    assert stats.deleted == 0
    assert len(queue) == 0
    assert len(dlq) == 1


async def test_failure_leaves_the_message_in_flight_for_sqs_to_redeliver() -> None:
    # GIVEN a handler that fails one message
    queue = FakeQueue(visibility_timeout=30)
    queue.send_many(["good", "bad"])

    async def handler(message: Message) -> None:
        if message.body == "bad":
            raise HandlerFailed("nope")

    stats = await drain(queue, handler)

    # THEN the bad one is still in the queue (invisible until its timeout), the good one gone
    assert stats.succeeded == 1
    assert stats.failed == 1
    assert len(queue) == 1
    assert queue.in_flight_count == 1


async def test_stop_flushes_pending_deletes_below_the_batch_size() -> None:
    # GIVEN a long flush interval, so 3 successes sit in a partial batch
    queue = FakeQueue()
    queue.send_many(["a", "b", "c"])
    handler = Gate(3, hold=False)
    consumer = consumer_of(queue, handler, ack_flush_interval=10.0)
    async with running(consumer):
        await wait_for(handler.started)
        await anyio.lowlevel.checkpoint()
        assert len(queue) == 3  # not deleted yet: waiting for the batch
        # WHEN stopped
        consumer.stop()

    # THEN the partial batch was flushed
    assert consumer.stats.deleted == 3
    assert len(queue) == 0


async def test_stop_releases_unstarted_messages_and_cancels_stragglers() -> None:
    # GIVEN a handler that never finishes and a short grace period
    queue = FakeQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(10))
    gate = Gate(10)
    consumer = consumer_of(queue, gate, max_in_flight=10, shutdown_grace=0.05)
    async with running(consumer):
        await wait_for(gate.started)
        assert queue.visible_count == 0
        # WHEN stopped while all 10 are in the handler
        consumer.stop()

    # THEN they were cancelled after the grace period and released: visible again at once
    assert consumer.stats.released == 10
    assert consumer.stats.deleted == 0
    assert queue.visible_count == 10


async def test_unstarted_messages_are_released_on_stop() -> None:
    # GIVEN messages received while stopping (a slow receive that returns after stop())
    queue = FakeQueue(visibility_timeout=300, latency={"ReceiveMessage": 0.05})
    queue.send_many(f"m{i}" for i in range(5))
    handled: list[str] = []

    async def handler(message: Message) -> None:
        handled.append(message.body)

    consumer = consumer_of(queue, handler, receivers=1)
    async with running(consumer):
        await anyio.sleep(0.01)  # the receive is under way (0.05 s of latency)
        consumer.stop()

    # THEN the receive finished, nothing was started, and all 5 were released
    assert handled == []
    assert consumer.stats.received == 5
    assert consumer.stats.released == 5
    assert queue.visible_count == 5


async def test_cancellation_mid_flight_loses_nothing() -> None:
    # GIVEN a slow handler and some completed work
    queue = FakeQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(40))
    finished: list[str] = []

    async def handler(message: Message) -> None:
        if int(message.body[1:]) % 2:
            await anyio.sleep(60)
        finished.append(message.body)

    consumer = consumer_of(queue, handler, max_in_flight=40, ack_flush_interval=10.0)
    # WHEN run() is cancelled from outside while half the messages are mid-dispatch
    with anyio.move_on_after(0.2):
        await consumer.run()

    # THEN every message is either deleted (finished) or visible again (released)
    stats = consumer.stats
    assert stats.deleted == len(finished) == 20
    assert stats.released == 20
    assert len(queue) == 20
    assert queue.visible_count == 20


async def test_until_empty_ends_with_several_receivers() -> None:
    queue = FakeQueue()

    stats = await drain(queue, receivers=8, within=5)
    assert stats.received == 0
    assert stats.api_calls["ReceiveMessage"] >= 8


async def test_until_empty_waits_for_work_in_flight_and_sees_late_arrivals() -> None:
    # GIVEN a handler that enqueues a follow-up message for the first few
    queue = FakeQueue()
    queue.send_many(["start"])
    handled: list[str] = []

    async def handler(message: Message) -> None:
        await anyio.sleep(0.01)
        handled.append(message.body)
        if len(handled) < 5:
            queue.send(f"next-{len(handled)}")

    stats = await drain(queue, handler, receivers=3, within=5)
    # THEN the follow-ups, which arrived while the queue had answered empty, were handled
    assert handled == ["start", "next-1", "next-2", "next-3", "next-4"]
    assert stats.deleted == 5


async def test_duration_stops_the_run() -> None:
    queue = FakeQueue()
    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(succeed),
        config=ConsumerConfig(wait_time_seconds=20, duration=0.2),
    )
    with anyio.fail_after(5):
        stats = await consumer.run()
    # the long poll was clamped to the time left, so the run ended near its duration
    assert 0.15 <= stats.duration_s < 3


async def test_delete_by_worker_never_deletes() -> None:
    queue = RecordingQueue()
    queue.send_many(f"m{i}" for i in range(30))

    stats = await drain(queue, delete_by="worker", within=5)
    assert stats.succeeded == 30
    assert stats.deleted == 0
    assert queue.delete_calls == []
    assert len(queue) == 30


async def test_per_entry_delete_failures_are_retried_then_counted() -> None:
    # GIVEN a queue whose delete entries fail transiently half of the time
    from asyncloop.testing import FaultPlan

    faults = FaultPlan(entry_failures={"DeleteMessageBatch": 0.5}, seed=7)
    queue = FakeQueue(faults=faults)
    queue.send_many(f"m{i}" for i in range(100))

    stats = await drain(queue, delete_attempts=3, visibility_timeout=300)
    # THEN each delete was tried up to 3 times; what still failed is counted and remains
    assert faults.injected["DeleteMessageBatch:entry"] > 0
    assert stats.deleted + stats.delete_failed == 100
    assert stats.deleted > 80
    assert len(queue) == stats.delete_failed


async def test_receive_errors_back_off_and_the_receiver_survives() -> None:
    from asyncloop.testing import FaultPlan

    faults = FaultPlan(errors={"ReceiveMessage": 0.5}, seed=3)
    queue = FakeQueue(faults=faults)
    queue.send_many(f"m{i}" for i in range(30))
    handler = Gate(30, hold=False)
    consumer = consumer_of(queue, handler, receivers=1)
    async with running(consumer):
        await wait_for(handler.started, 20)
    assert faults.injected["ReceiveMessage:error"] > 0
    assert consumer.stats.deleted == 30


async def test_run_twice_is_an_error() -> None:
    consumer = Consumer(
        queue=FakeQueue(), dispatcher=CallableDispatcher(lambda m: None), config=drain_config()
    )
    await consumer.run()
    with pytest.raises(RuntimeError, match="only once"):
        await consumer.run()


async def test_stop_before_run_returns_promptly() -> None:
    queue = FakeQueue()
    queue.send_many(["x"])
    consumer = Consumer(queue=queue, dispatcher=CallableDispatcher(lambda m: None))
    consumer.stop()
    with anyio.fail_after(5):
        stats = await consumer.run()
    assert stats.received == 0
    assert len(queue) == 1


async def test_fake_queue_memory_stays_flat_over_a_long_run() -> None:
    # GIVEN a long visibility timeout, so deleted messages' heap entries would linger
    queue = FakeQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(20_000))

    stats = await drain(queue, within=30)
    # THEN the stale entries were swept as they piled up
    assert stats.deleted == 20_000
    assert queue.invisible_entries < 5_000


@pytest.mark.asyncio
async def test_huge_bodies_reach_an_in_process_handler_intact() -> None:
    queue = FakeQueue()
    body = "é" * (3 * 1024 * 1024)
    queue.send(body)
    seen: list[int] = []

    async def handler(message: Message) -> None:
        seen.append(len(message.body))

    stats = await drain(queue, handler)
    assert seen == [len(body)]
    assert stats.deleted == 1


@pytest.mark.asyncio
async def test_dispatch_api_calls_are_counted_per_attempt() -> None:
    # GIVEN a Lambda dispatcher whose first invoke is throttled
    queue = FakeQueue()
    queue.send_many(f"m{i}" for i in range(5))
    lam = FakeLambda(faults=FaultPlan(throttles={"Invoke": 1.0}))
    lam.add_function("worker")
    dispatcher = LambdaDispatcher(
        invoker=lam, config=LambdaConfig(function_name="worker"), queue_url=queue.queue_url
    )
    consumer = Consumer(queue=queue, dispatcher=dispatcher, config=drain_config())
    original = dispatcher.dispatch

    async def dispatch(message: Message) -> None:
        # throttled once per message, then accepted
        assert lam.faults is not None
        lam.faults.throttles = {"Invoke": 1.0 if message.message_id not in seen else 0.0}
        seen.add(message.message_id)
        await original(message)

    seen: set[str] = set()
    dispatcher.dispatch = dispatch  # type: ignore[method-assign]
    with anyio.fail_after(10):
        stats = await consumer.run()
    # THEN Invoke was counted for every attempt, the retries included
    assert stats.api_calls["Invoke"] == 10
    assert stats.retried == 5
    assert stats.deleted == 5


# -- a bad day in the consumer core: odd exceptions, odd attributes -----------------------------


@pytest.mark.asyncio
async def test_a_handler_raising_cancelled_error_itself_fails_that_message_only() -> None:
    # GIVEN a handler that raises CancelledError itself on one message (as
    # when a library cancels a future the handler awaited), and succeeds otherwise
    queue = FakeQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(200))
    handled: list[str] = []

    async def handler(message: Message) -> None:
        if message.body == "m3":
            raise asyncio.CancelledError
        handled.append(message.body)

    # WHEN the consumer runs until the queue is empty
    stats = await drain(queue, handler, max_in_flight=10, within=20)

    # THEN that was m3's failure, not the run's end: every other message was handled and
    # deleted, and m3 stays in the queue for SQS to deliver again
    assert stats.failed == 1
    assert sorted(handled) == sorted(f"m{i}" for i in range(200) if i != 3)
    assert stats.deleted == 199
    assert len(queue) == 1
    assert queue.in_flight_count == 1


class FlakyReceiveQueue(FakeQueue):
    """A FakeQueue (standing for a custom Queue) whose first receives raise non-AWS errors."""

    def __init__(self, errors: list[BaseException], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors = errors

    async def receive(
        self, *, max_messages: int, wait_time_seconds: int, visibility_timeout: int | None = None
    ) -> list[Message]:
        if self.errors:
            raise self.errors.pop(0)
        return await super().receive(
            max_messages=max_messages,
            wait_time_seconds=wait_time_seconds,
            visibility_timeout=visibility_timeout,
        )


@pytest.mark.asyncio
async def test_non_aws_receive_errors_back_off_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a queue whose first receives raise a dropped connection and a bug's KeyError
    caplog.set_level(logging.WARNING, logger="asyncloop")
    queue = FlakyReceiveQueue(
        [ConnectionResetError(104, "Connection reset by peer"), KeyError("Messages")]
    )
    queue.send_many(f"m{i}" for i in range(15))

    # WHEN the consumer runs until the queue is empty
    stats = await drain(queue, receivers=1, within=20)

    # THEN it backed off, logged each error with its type and text, and drained the queue
    assert queue.errors == []
    assert stats.deleted == 15
    assert len(queue) == 0
    assert "ConnectionResetError: [Errno 104] Connection reset by peer" in caplog.text
    assert "KeyError: 'Messages'" in caplog.text
    assert stats.api_errors == {"ReceiveMessage": 2}
