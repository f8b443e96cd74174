"""Helpers shared by the consumer's tests: a config that drains a queue quickly and a run
with it (`drain`), handlers (`succeed`, `fail`, and `Gate`, which holds messages), a consumer
without a long poll (`consumer_of`) and one running for the length of a block (`running`),
FakeQueues that record what the consumer asked (receives and deletes; visibility changes), an
event loop on a virtual clock (`run_virtual`), and sample statistics (`sample_stats`)."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel

from asyncloop import (
    BatchEntryFailure,
    CallableDispatcher,
    Consumer,
    ConsumerConfig,
    HandlerFailed,
    Message,
    Queue,
    Stats,
)
from asyncloop.testing import FakeQueue


def drain_config(**overrides: Any) -> ConsumerConfig:
    values: dict[str, Any] = {
        "wait_time_seconds": 0,
        "until_empty": True,
        "ack_flush_interval": 0.005,
        "shutdown_grace": 5.0,
    }
    values.update(overrides)
    return ConsumerConfig(**values)


async def succeed(message: Message) -> None:
    """A handler that succeeds at once."""


async def fail(message: Message) -> None:
    """A handler that fails every message."""
    raise HandlerFailed("no")


class Gate:
    """A handler that holds every message until `release` is set (at once when not `hold`),
    recording what it saw and how many ran at once; `started` is set once it has seen
    `wanted` messages (0: never)."""

    def __init__(self, wanted: int = 0, *, hold: bool = True) -> None:
        self.running = 0
        self.peak = 0
        self.seen: list[str] = []
        self.release = anyio.Event()
        self.started = anyio.Event()
        self.wanted = wanted
        if not hold:
            self.release.set()

    async def __call__(self, message: Message) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.seen.append(message.body)
        if self.wanted and len(self.seen) >= self.wanted:
            self.started.set()
        try:
            await self.release.wait()
        finally:
            self.running -= 1


async def drain(
    queue: Queue,
    handler: Callable[[Message], Any] = succeed,
    *,
    within: float = 10.0,
    **config: Any,
) -> Stats:
    """Run a Consumer of `queue` calling `handler`, with `drain_config(**config)`, until the
    queue is empty; its statistics. Fails if that takes over `within` seconds."""
    with anyio.fail_after(within):
        return await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=drain_config(**config)
        ).run()


def consumer_of(queue: Queue, handler: Callable[[Message], Any], **config: Any) -> Consumer:
    """A Consumer of `queue` calling `handler`, with ``ConsumerConfig(wait_time_seconds=0,
    **config)``: no long poll, so an empty receive answers at once."""
    return Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(handler),
        config=ConsumerConfig(wait_time_seconds=0, **config),
    )


@asynccontextmanager
async def running(consumer: Consumer) -> AsyncIterator[Consumer]:
    """`consumer.run()` in a task group while the block runs; the block's end stops it (a
    graceful stop, if the block did not stop it already) and waits for the run to end."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        yield consumer
        consumer.stop()


async def wait_for(event: anyio.Event, within: float = 5.0) -> None:
    """`event.wait()`, failing if it takes over `within` seconds."""
    with anyio.fail_after(within):
        await event.wait()


class VisibilityQueue(FakeQueue):
    """A FakeQueue that records every ChangeMessageVisibilityBatch call and can signal after
    a number of them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.visibility_calls: list[list[tuple[str, str, int]]] = []
        self.calls_wanted = 0
        self.enough_calls = anyio.Event()
        self.call_started = anyio.Event()

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> list[BatchEntryFailure]:
        self.visibility_calls.append(list(entries))
        self.call_started.set()
        try:
            return await super().change_visibility_batch(entries)
        finally:
            if self.calls_wanted and len(self.visibility_calls) >= self.calls_wanted:
                self.enough_calls.set()

    def timeouts(self) -> list[int]:
        return [timeout for call in self.visibility_calls for _, _, timeout in call]


class RecordingQueue(FakeQueue):
    """A FakeQueue that records what the consumer asked of it."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.receive_asks: list[int] = []
        self.delete_calls: list[list[tuple[str, str]]] = []

    async def receive(
        self, *, max_messages: int, wait_time_seconds: int, visibility_timeout: int | None = None
    ) -> list[Message]:
        self.receive_asks.append(max_messages)
        return await super().receive(
            max_messages=max_messages,
            wait_time_seconds=wait_time_seconds,
            visibility_timeout=visibility_timeout,
        )

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> list[BatchEntryFailure]:
        self.delete_calls.append(list(entries))
        return await super().delete_batch(entries)


class _JumpingSelector:
    """A selector that, when nothing is ready, moves the loop's clock forward by the timeout
    asyncio asked to wait (to the next timer) instead of sleeping."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        self._loop = loop
        self._selector = selectors.DefaultSelector()

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        events = self._selector.select(0)
        if not events and timeout is not None and timeout > 0:
            self._loop.now += timeout
        elif not events and timeout is None:
            # Nothing scheduled at all: only another thread can wake the loop.
            events = self._selector.select(None)
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._selector, name)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock: work takes no time, waits take exactly their time."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(selector=_JumpingSelector(self))  # type: ignore[arg-type]

    def time(self) -> float:
        return self.now


def run_virtual(main: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(main, backend="asyncio", backend_options={"loop_factory": VirtualClockLoop})


def sample_stats(succeeded: int, *, latencies: tuple[float, ...] = (), busy: float = 1.0) -> Stats:
    """Statistics of a run that succeeded `succeeded` times, busy for `busy` seconds from
    t=100 (stopped 0.5 s later), with these receive-to-done `latencies`."""
    stats = Stats()
    stats.received = stats.dispatched = stats.deleted = succeeded
    stats.succeeded = succeeded
    stats.peak_in_flight = 3
    stats.concurrency_limit = stats.concurrency_limit_min = 8
    stats.count_call("ReceiveMessage", 2)
    for seconds in latencies:
        stats.receive_to_done.record(seconds)
    stats.started_at = 100.0
    stats.last_success_at = 100.0 + busy
    stats.stopped_at = 100.0 + busy + 0.5
    return stats
