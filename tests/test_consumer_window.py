"""The receive batching window (`ConsumerConfig.receive_batch_window`): a receiver that took
fewer free slots than a batch waits for more, within the window, and a stop ends the wait.

These run on the virtual clock (`run_virtual`): work takes no time and a wait takes exactly
its time, so "half-way through the window" and "the stop did not wait the window out" are
exact statements, not races against a real second, and need no look at the consumer's
private capacity.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from _consumer_helpers import RecordingQueue, drain_config, run_virtual

from asyncloop import CallableDispatcher, Consumer, ConsumerConfig, Message, Stats


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


async def _until(condition: Callable[[], bool]) -> None:
    """Let (virtual) time pass in 1 ms steps until `condition()` holds; fail after 5 s."""
    for _ in range(5000):
        if condition():
            return
        await anyio.sleep(0.001)
    raise AssertionError("the condition did not hold within 5 s of virtual time")


@asynccontextmanager
async def _held_full(
    window: float, *, max_in_flight: int = 10, messages: int = 30
) -> AsyncIterator[tuple[RecordingQueue, OneByOne, Consumer]]:
    """A running consumer (one receiver, batches of 10, this `window`) whose whole capacity
    is held by a `OneByOne` handler; when the block ends, every message is let go and the
    run drains the queue."""
    queue = RecordingQueue()
    queue.send_many(f"m{i}" for i in range(messages))
    handler = OneByOne()
    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(handler),
        config=drain_config(
            max_in_flight=max_in_flight, receivers=1, batch_size=10, receive_batch_window=window
        ),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await _until(lambda: handler.running == max_in_flight)
        yield queue, handler, consumer
        handler.let_go(messages)


def test_batch_window_waits_for_more_free_slots_and_receives_them_in_one_call() -> None:
    # GIVEN a full capacity of 10 held by a handler that lets messages go one by one, and the
    # largest batching window (1 s), so the wait ends by filling the batch, not by time
    async def main() -> tuple[list[int], list[int], int]:
        async with _held_full(1.0) as (queue, handler, consumer):
            # WHEN one message finishes, and the other 9 half a window later
            handler.let_go(1)
            await anyio.sleep(0.5)
            asks_in_window = list(queue.receive_asks)
            handler.let_go(9)
            await _until(lambda: len(queue.receive_asks) == 2)
            asks = list(queue.receive_asks)
        return asks_in_window, asks, consumer.stats.deleted

    asks_in_window, asks, deleted = run_virtual(main)
    # THEN it waited in the window instead of receiving 1, and took all 10 in one call
    assert asks_in_window == [10]
    assert asks == [10, 10]
    assert deleted == 30


def test_without_a_batch_window_a_freed_slot_is_received_at_once() -> None:
    # GIVEN the same full capacity, with the window off (the default)
    assert ConsumerConfig().receive_batch_window == 0.0

    async def main() -> tuple[list[int], int]:
        async with _held_full(0.0) as (queue, handler, consumer):
            # WHEN one message finishes
            handler.let_go(1)
            await _until(lambda: len(queue.receive_asks) == 2)
            asks = list(queue.receive_asks)
        return asks, consumer.stats.deleted

    asks, deleted = run_virtual(main)
    # THEN its slot is received at once, alone
    assert asks == [10, 1]
    assert deleted == 30


def test_stop_during_the_batch_window_leaves_at_once_without_receiving() -> None:
    # GIVEN a receiver half-way through the window, holding the one slot freed so far
    async def main() -> tuple[float, list[int], Stats]:
        async with _held_full(1.0) as (queue, handler, consumer):
            handler.let_go(1)
            await anyio.sleep(0.5)
            # WHEN the consumer stops (and the held messages then finish)
            stopped_at = anyio.current_time()
            consumer.stop()
        return anyio.current_time() - stopped_at, list(queue.receive_asks), consumer.stats

    took, asks, stats = run_virtual(main)
    # THEN the receiver left the window at once: the run ended well before the window's other
    # half (0.5 s) was out, and it received nothing more
    assert took < 0.1
    assert asks == [10]
    assert (stats.received, stats.deleted) == (10, 10)


def test_batch_window_does_not_wait_for_slots_beyond_a_capacity_below_the_batch() -> None:
    # GIVEN a capacity of 1 (below the batch of 10) and the largest window
    async def main() -> tuple[float, list[int], int]:
        async with _held_full(1.0, max_in_flight=1, messages=5) as (queue, handler, consumer):
            # WHEN the message finishes, freeing the whole capacity
            let_go_at = anyio.current_time()
            handler.let_go(1)
            await _until(lambda: len(queue.receive_asks) == 2)
            waited = anyio.current_time() - let_go_at
            asks = list(queue.receive_asks)
        return waited, asks, consumer.stats.deleted

    waited, asks, deleted = run_virtual(main)
    # THEN the next receive went without waiting for the window (no slot can come to wait
    # for): within an ack flush or so, far from the window's 1 s
    assert asks == [1, 1]
    assert waited < 0.1
    assert deleted == 5
