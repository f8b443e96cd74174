"""The visibility heartbeat and lease loss: extensions, the extension cap, a lost lease cancels
the dispatch (async or sync handler), and leaves no trace when the dispatcher swallows it."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _consumer_helpers import Gate, VisibilityQueue, consumer_of, running, wait_for

from asyncloop import (
    CallableDispatcher,
    Consumer,
    ConsumerConfig,
    HandlerFailed,
    Message,
)

# -- the visibility heartbeat and lease loss ------------------------------------------------


def _on_a_1s_lease(queue: VisibilityQueue, dispatcher: Any, **config: Any) -> Consumer:
    """A consumer of `queue` (receiving without a long poll) on a 1 s visibility timeout, so
    its heartbeat extends a few times a second; `dispatcher` is a Dispatcher or a handler."""
    if not hasattr(dispatcher, "dispatch"):
        dispatcher = CallableDispatcher(dispatcher)
    return Consumer(
        queue=queue,
        dispatcher=dispatcher,
        config=ConsumerConfig(wait_time_seconds=0, **config),
        visibility_timeout=1,
    )


async def _steal_the_lease(
    queue: VisibilityQueue, message_id: str, started: anyio.Event, cancelled: anyio.Event
) -> None:
    """Once the dispatch has `started`, make its receipt handle stale (as if the message was
    received elsewhere); return once the next extension found that and `cancelled` is set."""
    await wait_for(started, 10)
    queue.invalidate_receipt_handle(message_id)
    await wait_for(cancelled, 20)


@pytest.mark.asyncio
async def test_heartbeat_extends_a_long_dispatch_so_it_is_not_redelivered() -> None:
    # GIVEN a 1 s visibility timeout and a dispatch that outlives it several times
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("slow")
    queue.calls_wanted = 4
    gate = Gate()
    consumer = _on_a_1s_lease(queue, gate, receivers=2)
    async with running(consumer):
        # WHEN four extensions have been sent (about two timeouts' worth)
        await wait_for(queue.enough_calls, 20)
        # THEN it was never visible again nor received twice
        assert queue.receive_count_of(message_id) == 1
        assert queue.visible_count == 0
        gate.release.set()
    assert consumer.stats.extended >= 3
    assert consumer.stats.deleted == 1
    assert all(call and len(call) <= 10 for call in queue.visibility_calls)
    assert set(queue.timeouts()) == {1}


@pytest.mark.asyncio
async def test_a_consumer_without_a_visibility_timeout_reads_the_queues_and_extends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a queue whose own visibility timeout is 1 s, a Consumer built directly with no
    # visibility timeout anywhere (neither argument nor config), and a dispatch that outlives it
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("slow")
    queue.calls_wanted = 2
    gate = Gate()
    consumer = consumer_of(queue, gate)
    caplog.set_level(logging.INFO, logger="asyncloop")
    async with running(consumer):
        # WHEN two extensions have been sent
        await wait_for(queue.enough_calls, 20)
        # THEN the consumer read the queue's timeout, and the message was never received twice
        assert consumer.visibility_timeout == 1
        assert queue.receive_count_of(message_id) == 1
        gate.release.set()
    assert consumer.stats.deleted == 1
    assert set(queue.timeouts()) == {1}
    assert "heartbeat uses the queue's VisibilityTimeout of 1 s" in caplog.text


@pytest.mark.asyncio
async def test_a_queue_whose_attributes_fail_leaves_the_heartbeat_off_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a queue whose GetQueueAttributes fails
    queue = VisibilityQueue(visibility_timeout=30)
    queue.send("one")

    async def broken(names: object = ()) -> dict[str, str]:
        raise RuntimeError("no attributes here")

    queue.get_attributes = broken  # type: ignore[method-assign]
    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(lambda message: None),
        config=ConsumerConfig(wait_time_seconds=0, until_empty=True),
    )
    caplog.set_level(logging.WARNING, logger="asyncloop")
    # WHEN it runs until empty
    with anyio.fail_after(20):
        stats = await consumer.run()
    # THEN the message is still consumed, and the warning says why the heartbeat is off
    assert stats.deleted == 1
    assert consumer.visibility_timeout is None
    assert "heartbeat off: the queue's VisibilityTimeout could not be read" in caplog.text


@pytest.mark.asyncio
async def test_heartbeat_stops_at_the_extension_cap(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN at most 1 s of extension on a 1 s timeout
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("slow")
    redelivered = anyio.Event()
    release = anyio.Event()

    async def handler(message: Message) -> None:
        if message.receive_count > 1:
            redelivered.set()
            return
        await release.wait()

    consumer = _on_a_1s_lease(queue, handler, max_visibility_extension=1.0)
    caplog.set_level(logging.WARNING, logger="asyncloop")
    async with running(consumer):
        # WHEN the cap is used up, SQS hands the message out again
        await wait_for(redelivered, 20)
        release.set()
    assert consumer.stats.extended <= 2
    assert "extension cap" in caplog.text
    assert message_id in caplog.text


@pytest.mark.asyncio
async def test_lease_lost_cancels_the_dispatch_and_counts_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a long dispatch whose receipt handle another receive invalidates
    caplog.set_level(logging.DEBUG, logger="asyncloop")
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("BODY-TEXT-123")
    started = anyio.Event()
    cancelled = anyio.Event()
    handles: list[str] = []

    async def handler(message: Message) -> None:
        handles.append(message.receipt_handle)
        started.set()
        try:
            await anyio.sleep_forever()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    consumer = _on_a_1s_lease(queue, handler, receivers=1)
    async with running(consumer):
        # WHEN the handle goes stale, THEN the next extension finds it invalid and the
        # dispatch is cancelled
        await _steal_the_lease(queue, message_id, started, cancelled)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert consumer.stats.lease_lost == 1
        assert consumer.in_flight == 0
    stats = consumer.stats
    # nothing deleted or released with the stale handle; the consumer kept running
    assert (stats.deleted, stats.released, stats.release_failed, stats.failed) == (0, 0, 0, 0)
    # and the log names the message, never its body or handle
    assert f"lease of message {message_id} lost" in caplog.text
    assert "BODY-TEXT" not in caplog.text
    assert handles[0] not in caplog.text


@pytest.mark.asyncio
async def test_an_extension_answered_after_the_release_cannot_hide_the_message() -> None:
    # GIVEN a long dispatch and a first extension call that answers slowly
    slow = [0.3]

    def latency() -> float:
        return slow.pop() if slow else 0.0

    queue = VisibilityQueue(visibility_timeout=1, latency={"ChangeMessageVisibilityBatch": latency})
    queue.send("long")

    async def handler(message: Message) -> None:
        await anyio.sleep_forever()

    consumer = _on_a_1s_lease(queue, handler, shutdown_grace=0.0)
    async with running(consumer):
        # WHEN it stops while the extension is under way (the release overtakes it)
        await wait_for(queue.call_started, 10)
        consumer.stop()
    # THEN the message is visible: SQS (and the fake) refuse to extend a message that is no
    # longer in flight, and the consumer, no longer holding it, ignores that answer
    assert queue.timeouts() == [1, 0]
    assert queue.visible_count == 1
    assert consumer.stats.released == 1
    assert consumer.stats.lease_lost == 0


class CancelWatcher:
    """Wraps a dispatcher; `cancelled` is set when a dispatch is cancelled."""

    operation = None

    def __init__(self, inner: CallableDispatcher) -> None:
        self.inner = inner
        self.cancelled = anyio.Event()

    async def dispatch(self, message: Message) -> None:
        try:
            await self.inner.dispatch(message)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.mark.asyncio
async def test_lease_lost_in_a_sync_handler_stops_waiting_for_its_thread() -> None:
    # GIVEN a sync handler (run in a worker thread) that outlives its lease
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("stolen")
    started = anyio.Event()
    gate = threading.Event()

    def handler(message: Message) -> None:
        anyio.from_thread.run_sync(started.set)
        gate.wait(30)

    watcher = CancelWatcher(CallableDispatcher(handler))
    consumer = _on_a_1s_lease(queue, watcher, receivers=1)
    try:
        async with running(consumer):
            # WHEN the handle goes stale, THEN the consumer stops waiting for the thread
            await _steal_the_lease(queue, message_id, started, watcher.cancelled)
            # and frees the slot
            assert consumer.in_flight == 0
    finally:
        gate.set()
    assert consumer.stats.lease_lost == 1
    assert consumer.stats.deleted == 0


@pytest.mark.asyncio
async def test_a_dispatcher_that_swallows_the_lease_lost_cancel_leaves_no_trace() -> None:
    # GIVEN a dispatcher that turns any cancellation into a failure of its own
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("swallowed")
    started = anyio.Event()
    cancelled = anyio.Event()

    class SwallowingDispatcher:
        operation = None

        async def dispatch(self, message: Message) -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            except asyncio.CancelledError:
                cancelled.set()
                raise HandlerFailed("interrupted", message_id=message.message_id) from None

    consumer = _on_a_1s_lease(queue, SwallowingDispatcher(), receivers=1, failure_backoff_base=5.0)
    async with running(consumer):
        # WHEN the lease is lost (the handle went stale) and the cancel is swallowed
        await _steal_the_lease(queue, message_id, started, cancelled)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        # THEN the message is forgotten while the run goes on: its slot is free (it is no
        # longer held), and it was not failed or backed off with a handle that is not ours
        held_while_running = consumer.in_flight
    stats = consumer.stats
    assert held_while_running == 0
    assert consumer.in_flight == 0
    assert (stats.lease_lost, stats.failed, stats.backed_off) == (1, 0, 0)
