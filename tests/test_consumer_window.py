"""The receive batching window (`ConsumerConfig.receive_batch_window`): a receiver that took
fewer free slots than a batch waits for more, within the window, and a stop ends the wait."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _consumer_helpers import RecordingQueue, drain_config

from asyncloop import CallableDispatcher, Consumer, ConsumerConfig, Message

pytestmark = pytest.mark.asyncio


class OneByOne:
    """A handler that holds every message until `let_go(n)` lets n of them finish."""

    def __init__(self) -> None:
        self._finish = asyncio.Semaphore(0)
        self.running = 0

    def let_go(self, n: int) -> None:
        for _ in range(n):
            self._finish.release()

    async def __call__(self, message: Message) -> None:
        self.running += 1
        try:
            await self._finish.acquire()
        finally:
            self.running -= 1


async def _until(condition: Any) -> None:
    """Run the event loop until `condition()` holds (5 s watchdog against a hang)."""
    with anyio.fail_after(5):
        while not condition():
            await anyio.lowlevel.checkpoint()


def _window_consumer(queue: RecordingQueue, handler: OneByOne, window: float) -> Consumer:
    return Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(handler),
        config=drain_config(
            max_in_flight=10, receivers=1, batch_size=10, receive_batch_window=window
        ),
    )


async def test_batch_window_waits_for_more_free_slots_and_receives_them_in_one_call() -> None:
    # GIVEN a full capacity of 10 held by a handler that lets messages go one by one, and a
    # batching window (the largest, so the wait ends by filling the batch, not by time)
    queue = RecordingQueue()
    queue.send_many(f"m{i}" for i in range(30))
    handler = OneByOne()
    consumer = _window_consumer(queue, handler, 1.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await _until(lambda: handler.running == 10)
        # WHEN one message finishes, the receiver wakes for its slot, and then the other 9
        handler.let_go(1)
        await _until(lambda: consumer.in_flight == 9 and bool(consumer._capacity.waiters))
        asks_in_window = list(queue.receive_asks)
        handler.let_go(9)
        await _until(lambda: len(queue.receive_asks) == 2)
        # THEN it waited in the window instead of receiving 1, and took all 10 in one call
        assert asks_in_window == [10]
        assert queue.receive_asks == [10, 10]
        handler.let_go(100)
    assert consumer.stats.deleted == 30


async def test_without_a_batch_window_a_freed_slot_is_received_at_once() -> None:
    # GIVEN the same full capacity, with the window off (the default)
    queue = RecordingQueue()
    queue.send_many(f"m{i}" for i in range(30))
    handler = OneByOne()
    consumer = _window_consumer(queue, handler, 0.0)
    assert ConsumerConfig().receive_batch_window == 0.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await _until(lambda: handler.running == 10)
        # WHEN one message finishes
        handler.let_go(1)
        await _until(lambda: len(queue.receive_asks) == 2)
        # THEN its slot is received at once, alone
        assert queue.receive_asks == [10, 1]
        handler.let_go(100)
    assert consumer.stats.deleted == 30


async def test_stop_during_the_batch_window_leaves_at_once_without_receiving() -> None:
    # GIVEN a receiver waiting in the window with one freed slot
    queue = RecordingQueue()
    queue.send_many(f"m{i}" for i in range(30))
    handler = OneByOne()
    consumer = _window_consumer(queue, handler, 1.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await _until(lambda: handler.running == 10)
        handler.let_go(1)
        await _until(lambda: consumer.in_flight == 9 and bool(consumer._capacity.waiters))
        # WHEN the consumer stops
        consumer.stop()
        # THEN the receiver leaves the window at once: it gives its slot back (not after
        # the window's second) and receives nothing more
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert consumer._capacity.free == 10 - consumer.in_flight
        assert queue.receive_asks == [10]
        handler.let_go(100)
    assert consumer.stats.received == 10
    assert consumer.stats.deleted == 10


async def test_batch_window_does_not_wait_for_slots_beyond_a_capacity_below_the_batch() -> None:
    # GIVEN a capacity of 1 (below the batch of 10) and the largest window
    queue = RecordingQueue()
    queue.send_many(f"m{i}" for i in range(5))
    handler = OneByOne()
    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(handler),
        config=drain_config(max_in_flight=1, receivers=1, receive_batch_window=1.0),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await _until(lambda: handler.running == 1)
        # WHEN the message finishes, freeing the whole capacity
        handler.let_go(1)
        # THEN the next receive goes within a few event-loop turns (no slot can come to wait
        # for), not after the window
        for _ in range(50):
            if len(queue.receive_asks) == 2:
                break
            await anyio.lowlevel.checkpoint()
        assert queue.receive_asks == [1, 1]
        handler.let_go(100)
    assert consumer.stats.deleted == 5
