"""The consumer loop: receive concurrently, dispatch with bounded concurrency, ack in batches.

Shape of one run (all tasks live in task groups owned by `Consumer.run`)::

    receivers (R) ──▶ hand-off ──▶ workers (up to C) ──success──▶ Acker ──▶ DeleteMessageBatch
         ▲                              │
         └── capacity: at most C held ◀─┘

A receiver first takes capacity, then asks SQS for exactly what it took (at most
`batch_size`), so no message ever waits locally while its visibility timeout runs.

Stopping (deadline, `until_empty`, `stop()`, or cancellation of `run()`):
1. stop receiving: receivers waiting for capacity or backing off leave at once; a receive
   already under way may finish (it is bounded by `wait_time_seconds`, clamped to the
   deadline) and what it returns is released;
2. drain: dispatches under way get `shutdown_grace` seconds, then are cancelled;
3. in a shielded scope bounded by `ack_flush_timeout`: release (visibility 0) every message
   received but not finished, and flush every pending delete.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Sequence

import anyio
import anyio.abc

from ._acker import Acker
from ._config import ConsumerConfig
from ._exceptions import AwsError, CredentialsError, DispatchError, DispatchThrottled, QueueNotFound
from ._protocols import Dispatcher, Queue
from ._stats import Stats
from ._types import Message

__all__ = ("Consumer",)

logger = logging.getLogger("asyncloop")

# Receive errors back off with full jitter: base * 2**n seconds, capped.
_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 20.0
# Missing queue or refused credentials will not fix themselves quickly.
_BACKOFF_BASE_SEVERE = 2.0
_BACKOFF_CAP_SEVERE = 60.0
# Short polls (wait_time_seconds=0) that come back empty pause, doubling up to a second,
# so an idle queue is not polled in a tight loop.
_EMPTY_PAUSE_MIN = 0.01
_EMPTY_PAUSE_MAX = 1.0


class _Capacity:
    """At most `total` messages held; receivers take up to a batch, waiting for `low_water`.

    A receiver waits until at least `low_water` slots are free, then takes
    ``min(want, free)``. Completions of one received batch tend to land in the same event
    loop turn, so even `low_water` = 1 usually refills whole batches; at very high capacity
    a larger mark (a hundredth of the capacity, at most a batch) keeps receives full at
    almost no cost in concurrency.
    """

    def __init__(self, total: int, batch_size: int) -> None:
        self.total = total
        self.free = total
        self.low_water = max(1, min(batch_size, total // 100))
        self.closed = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def take(self, want: int) -> int:
        """Take between 1 and `want` slots; 0 once closed."""
        while not self.closed and self.free < self.low_water:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()
                raise
        if self.closed:
            return 0
        taken = min(want, self.free)
        self.free -= taken
        if self.free >= self.low_water:
            self._wake()
        return taken

    def give(self, n: int) -> None:
        self.free += n
        if self.free >= self.low_water:
            self._wake()

    def close(self) -> None:
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class Consumer:
    """Consumes one queue until a stop condition, dispatching each message once per receive.

    ::

        consumer = Consumer(queue=SqsQueue(...), dispatcher=LambdaDispatcher(...),
                            config=ConsumerConfig(max_in_flight=256, until_empty=True))
        stats = await consumer.run()

    `run()` may be called once. `stop()` asks for a graceful stop from any task on the same
    event loop; cancelling `run()` stops at once but still flushes deletes and releases
    held messages (shielded, bounded by `ack_flush_timeout`).
    """

    def __init__(
        self,
        *,
        queue: Queue,
        dispatcher: Dispatcher,
        config: ConsumerConfig | None = None,
    ) -> None:
        self.queue = queue
        self.dispatcher = dispatcher
        self.config = config if config is not None else ConsumerConfig()
        self.stats = Stats()
        # The API call each dispatch makes ("Invoke"), counted with the SQS calls.
        self._operation: str | None = getattr(dispatcher, "operation", None)
        self._capacity = _Capacity(self.config.max_in_flight, self.config.batch_size)
        self._stopping = False
        self._ran = False
        self._stop_event: asyncio.Event | None = None
        self._held = 0
        self._drained: asyncio.Event | None = None
        self._handoff: asyncio.Queue[Message] = asyncio.Queue()
        self._workers = 0
        self._idle_workers = 0
        self._running: set[Message] = set()
        self._acker: Acker | None = None
        self._deadline: float | None = None
        # until_empty: receivers that got an empty answer and wait for news.
        self._parked = 0
        self._news: asyncio.Event | None = None
        self._work_group: anyio.abc.TaskGroup | None = None
        self._loop_time = time.monotonic

    # -- public ---------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Messages received and not yet finished (dispatching or waiting to start)."""
        return self._held

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for (or a stop condition was met)."""
        return self._stopping

    def stop(self) -> None:
        """Ask for a graceful stop. Idempotent; returns at once."""
        if self._stopping:
            return
        self._stopping = True
        self._capacity.close()
        if self._stop_event is not None:
            self._stop_event.set()
        if self._news is not None:
            self._news.set()

    async def run(self) -> Stats:
        """Run until a stop condition; return the statistics."""
        if self._ran:
            raise RuntimeError("Consumer.run() may be called only once; create a new Consumer")
        self._ran = True
        loop = asyncio.get_running_loop()
        self._loop_time = loop.time
        self._stop_event = asyncio.Event()
        self._drained = asyncio.Event()
        self._news = asyncio.Event()
        if self._stopping:
            self._stop_event.set()
        config = self.config
        stats = self.stats
        stats.started_at = loop.time()
        if config.duration is not None:
            self._deadline = stats.started_at + config.duration
        if config.deadline is not None:
            self._deadline = min(self._deadline or config.deadline, config.deadline)
        acker = Acker(
            self.queue,
            stats,
            flush_interval=config.ack_flush_interval,
            max_pending=config.max_pending_acks,
            concurrency=config.delete_concurrency,
            attempts=config.delete_attempts,
        )
        self._acker = acker
        logger.info(
            "consumer starting: queue=%s receivers=%d max_in_flight=%d batch_size=%d delete_by=%s",
            self.queue.queue_url,
            config.receivers,
            config.max_in_flight,
            config.batch_size,
            config.delete_by,
        )
        try:
            async with anyio.create_task_group() as ack_group:
                acker.bind(ack_group)
                ack_group.start_soon(acker.tick)
                try:
                    await self._run_until_stopped()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._finish(acker)
                    ack_group.cancel_scope.cancel()
        finally:
            stats.stopped_at = loop.time()
            logger.info("consumer stopped: %s", stats)
        return stats

    # -- phases ---------------------------------------------------------------------------

    async def _run_until_stopped(self) -> None:
        config = self.config
        assert self._stop_event is not None
        assert self._drained is not None
        async with anyio.create_task_group() as work_group:
            self._work_group = work_group
            with anyio.CancelScope() as receiving:
                async with anyio.create_task_group() as receive_group:
                    for _ in range(config.receivers):
                        receive_group.start_soon(self._receive_loop)
                    if self._deadline is not None:
                        receive_group.start_soon(self._stop_at_deadline, self._deadline)
                    await self._stop_event.wait()
                    # Receivers leave at their next step; a receive under way may finish
                    # (what it returns is released), within the grace period.
                    receiving.deadline = anyio.current_time() + config.shutdown_grace
            with anyio.move_on_after(config.shutdown_grace) as grace:
                while self._held:
                    self._drained.clear()
                    await self._drained.wait()
            if grace.cancelled_caught:
                logger.warning(
                    "%d dispatch(es) still running after shutdown_grace=%ss: cancelling them "
                    "and releasing their messages",
                    len(self._running),
                    config.shutdown_grace,
                )
            work_group.cancel_scope.cancel()

    async def _stop_at_deadline(self, deadline: float) -> None:
        assert self._stop_event is not None
        with anyio.move_on_after(max(0.0, deadline - self._loop_time())) as timer:
            await self._stop_event.wait()
        if timer.cancelled_caught:
            logger.info("deadline reached: stopping")
            self.stop()

    async def _finish(self, acker: Acker) -> None:
        """Release what was received but not finished; flush every pending ack."""
        with anyio.move_on_after(self.config.ack_flush_timeout) as scope:
            unstarted = 0
            while not self._handoff.empty():
                message = self._handoff.get_nowait()
                acker.release(message)
                unstarted += 1
            for message in self._running:
                acker.release(message)
            if unstarted or self._running:
                logger.info(
                    "releasing %d unstarted and %d cancelled message(s) (visibility 0)",
                    unstarted,
                    len(self._running),
                )
            self._running.clear()
            self._held = 0
            await acker.close()
        if scope.cancelled_caught:
            logger.warning(
                "ack_flush_timeout=%ss reached with %d delete(s)/release(s) unsent: those "
                "messages will be delivered again",
                self.config.ack_flush_timeout,
                acker.pending,
            )

    # -- receiving ------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        config = self.config
        stats = self.stats
        capacity = self._capacity
        queue = self.queue
        failures = 0
        empty_pause = 0.0
        while not self._stopping:
            taken = await capacity.take(config.batch_size)
            if taken == 0:
                return
            wait = self._wait_time()
            stats.count_call("ReceiveMessage")
            try:
                messages = await queue.receive(
                    max_messages=taken,
                    wait_time_seconds=wait,
                    visibility_timeout=config.visibility_timeout,
                )
            except AwsError as exc:
                capacity.give(taken)
                failures += 1
                await self._backoff(exc, failures)
                continue
            except BaseException:
                capacity.give(taken)
                raise
            failures = 0
            got = len(messages)
            if got < taken:
                capacity.give(taken - got)
            if got == 0:
                if config.until_empty:
                    await self._park()
                elif wait == 0:
                    empty_pause = min(_EMPTY_PAUSE_MAX, max(_EMPTY_PAUSE_MIN, empty_pause * 2))
                    await self._pause(empty_pause)
                continue
            empty_pause = 0.0
            stats.received += got
            self._held += got
            if self._held > stats.peak_in_flight:
                stats.peak_in_flight = self._held
            if self._news is not None and self._parked:
                self._news.set()
            if self.stopping:
                # Received while stopping: nobody will start these, so release them now.
                assert self._acker is not None
                for message in messages:
                    self._acker.release(message)
                self._finish_held(got)
                return
            self._hand_off(messages)

    def _wait_time(self) -> int:
        wait = self.config.wait_time_seconds
        if self._deadline is not None:
            left = int(self._deadline - self._loop_time())
            wait = max(0, min(wait, left))
        return wait

    async def _backoff(self, exc: AwsError, failures: int) -> None:
        severe = isinstance(exc, QueueNotFound | CredentialsError)
        base, cap = (
            (_BACKOFF_BASE_SEVERE, _BACKOFF_CAP_SEVERE) if severe else (_BACKOFF_BASE, _BACKOFF_CAP)
        )
        delay = random.uniform(0, min(cap, base * 2 ** min(failures, 16)))
        logger.warning(
            "ReceiveMessage failed (%s: %s); retrying in %.2fs",
            type(exc).__name__,
            exc.code or exc,
            delay,
        )
        await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on stop."""
        assert self._stop_event is not None
        with anyio.move_on_after(seconds):
            await self._stop_event.wait()

    async def _park(self) -> None:
        """until_empty: the queue answered empty. Stop once every receiver has and nothing is
        held; otherwise wait for news (a receive got messages, or the last held one finished)."""
        assert self._news is not None
        self._parked += 1
        try:
            if self._parked == self.config.receivers and self._held == 0:
                logger.info("queue answered empty and nothing is in flight: stopping")
                self.stop()
                return
            self._news.clear()
            await self._news.wait()
        finally:
            self._parked -= 1

    # -- dispatching ----------------------------------------------------------------------

    def _hand_off(self, messages: Sequence[Message]) -> None:
        handoff = self._handoff
        for message in messages:
            handoff.put_nowait(message)
        # Workers are started on demand, up to max_in_flight, and then live for the run.
        needed = handoff.qsize() - self._idle_workers
        group = self._work_group
        assert group is not None
        while needed > 0 and self._workers < self.config.max_in_flight:
            self._workers += 1
            self._idle_workers += 1
            group.start_soon(self._worker)
            needed -= 1

    async def _worker(self) -> None:
        handoff = self._handoff
        while True:
            message = await handoff.get()
            self._idle_workers -= 1
            await self._process(message)
            self._idle_workers += 1

    async def _process(self, message: Message) -> None:
        stats = self.stats
        stats.dispatched += 1
        operation = self._operation
        if operation is not None:
            stats.count_call(operation)
        running = self._running
        running.add(message)
        try:
            await self.dispatcher.dispatch(message)
        except DispatchError as exc:
            running.discard(message)
            self._failed(message, exc)
            return
        except Exception as exc:  # a Dispatcher that raised something else: still a failure
            running.discard(message)
            logger.exception("dispatcher raised for message %s", message.message_id)
            self._failed(message, exc)
            return
        # Success. (Cancellation leaves the message in `running`: _finish releases it.)
        running.discard(message)
        stats.succeeded += 1
        stats.receive_to_done.record(self._loop_time() - message.received_at)
        sent = message.sent_timestamp
        if sent is not None:
            stats.send_to_done.record(max(0.0, time.time() - sent))
        if self.config.delete_by == "consumer":
            acker = self._acker
            assert acker is not None
            try:
                await acker.delete(message)
            except BaseException:
                # Cancelled while waiting for room to delete: the work is done, so hand the
                # delete to the final flush rather than releasing the message.
                acker.delete_nowait(message)
                self._finish_held(1)
                raise
        self._finish_held(1)

    def _failed(self, message: Message, exc: Exception) -> None:
        self.stats.failed += 1
        if isinstance(exc, DispatchThrottled):
            self.stats.throttled += 1
        logger.warning(
            "dispatch of message %s failed (%s); SQS will deliver it again",
            message.message_id,
            type(exc).__name__,
        )
        self._finish_held(1)

    def _finish_held(self, n: int) -> None:
        self._held -= n
        self._capacity.give(n)
        if self._held == 0:
            assert self._drained is not None
            assert self._news is not None
            self._drained.set()
            if self._parked:
                self._news.set()
