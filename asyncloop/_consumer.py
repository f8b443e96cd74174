"""The consumer: receive concurrently, dispatch with bounded concurrency, ack in batches.

Shape of one run (all tasks live in task groups owned by `Consumer.run`)::

    receivers (R) ──▶ hand-off ──▶ workers (up to C) ──success──▶ Acker ──▶ DeleteMessageBatch
         ▲                              │  │
         └── capacity: at most L held ◀─┘  └─failure/throttle─▶ Acker ──▶ ChangeMessageVisibility
                                                                           Batch
    heartbeat ── held messages near their visibility deadline ──▶ Acker (extensions)

A receiver first takes capacity, then asks SQS for exactly what it took (at most
`batch_size`), so no message waits locally while its visibility timeout runs, beyond the
opt-in `prefetch` (held beyond `max_in_flight`, so a finished dispatch starts the next at
once).

The other concerns live in their own modules, as parts (mixins) of `Consumer`:
`_dispatch_limit` (the AIMD dispatch limit L, which the capacity follows, and throttle
retries), `_heartbeat` (visibility extensions and lease loss), `_fifo` (group ordering),
`_failures` (failed dispatches: log lines and backoff), `_until_empty` (when a drained queue
ends the run), `_receive_window` (the opt-in receive batching window), `_stopping` (the
stop's one deadline, the drain, the shielded release and flush); `_backoff` holds the
arithmetic, `_slots` the one waiting primitive (capacity, dispatch limit, the acker's room).
This module stays a little over the 400-line guide (about 470): the run's phases, the
receivers, the hand-off and the worker's dispatch path share the held/running state and are
read together, top to bottom.

`until_empty` stops once every receiver got an empty answer (receives then wait at most 1 s),
nothing is held or being released, and no message released after a throttle with a delay is
still invisible.

Exceptions from the seams: a dispatch that raises is that message's failure, even
``CancelledError`` when nobody cancelled the worker (a library cancelled a future the handler
awaited); a receive that raises anything but cancellation backs off and goes on, as acks do.

Logs name message ids, never bodies or receipt handles (see `_failures` for a failure's text).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence

import anyio
import anyio.abc

from ._acker import Acker
from ._backoff import next_empty_pause, receive_backoff
from ._config import ConsumerConfig
from ._dispatch_limit import DispatchLimit, ThrottledDispatch, capacity_low_water
from ._exceptions import AwsError, DispatchThrottled
from ._failures import FailedDispatch, log_receive_error
from ._fifo import FifoGroups
from ._heartbeat import Heartbeat
from ._limits import MAX_VISIBILITY
from ._protocols import Dispatcher, Queue
from ._receive_window import ReceiveWindow
from ._slots import Slots
from ._stats import Stats
from ._stopping import Stopping
from ._types import Message
from ._until_empty import UntilEmpty
from ._validate import check_int, validate_queue_url

__all__ = ("Consumer",)

logger = logging.getLogger("asyncloop")

# until_empty: the longest wait of a receive. Still a long poll (SQS then asks every server,
# so an empty answer is not a sampling miss), but a drained queue ends the run in about a
# second rather than after a whole `wait_time_seconds` of idle polling.
_UNTIL_EMPTY_WAIT = 1


class Consumer(
    FifoGroups, ThrottledDispatch, Heartbeat, FailedDispatch, UntilEmpty, Stopping, ReceiveWindow
):
    """Consumes one queue until a stop condition, dispatching each message once per receive.

    ::

        consumer = Consumer(queue=SqsQueue(...), dispatcher=LambdaDispatcher(...),
                            config=ConsumerConfig(max_in_flight=256, until_empty=True))
        stats = await consumer.run()

    `visibility_timeout` is the queue's own visibility timeout in whole seconds (the factory,
    `open_consumer`, reads it with ``GetQueueAttributes``); ``config.visibility_timeout`` wins
    when set. It may also be set as an attribute before `run()`. With neither, `run()` asks
    the queue itself (``queue.get_attributes(["VisibilityTimeout"])``, when the queue has that
    method) before receiving, so the heartbeat is not silently off; if that call fails the
    heartbeat is off, with a warning.

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
        visibility_timeout: int | None = None,
    ) -> None:
        validate_queue_url(queue.queue_url)
        if visibility_timeout is not None:
            check_int("visibility_timeout", visibility_timeout, 0, MAX_VISIBILITY)
        self.queue = queue
        self.dispatcher = dispatcher
        # The API call a dispatch makes ("Invoke"), counted per attempt; None in-process.
        self._operation: str | None = getattr(dispatcher, "operation", None)
        self.config = config if config is not None else ConsumerConfig()
        self.visibility_timeout = visibility_timeout
        self.stats = Stats()
        limit = self.config.max_in_flight
        prefetch = self.config.prefetch
        # Receivers take capacity (at most `limit` + `prefetch` messages held); the dispatch
        # limit admits dispatches, and resizes the capacity when a throttle moves it.
        self._capacity = Slots(
            limit + prefetch, capacity_low_water(limit + prefetch, self.config.batch_size)
        )
        self._dispatch_limit = DispatchLimit(
            limit, self._capacity, self.config.batch_size, self.stats, prefetch=prefetch
        )
        self._fifo = queue.queue_url.rstrip("/").endswith(".fifo")
        self._groups: dict[str, deque[Message]] = {}
        # Every message received and not finished, with its visibility deadline (event-loop clock).
        self._held: dict[Message, float] = {}
        self._handoff: asyncio.Queue[Message] = asyncio.Queue()
        self._workers = 0
        self._idle_workers = 0
        # Messages whose dispatch is under way, and the task awaiting it.
        self._running: dict[Message, asyncio.Task[object]] = {}
        self._acker: Acker | None = None
        self._deadline: float | None = None
        self._bad_timestamps = 0
        self._work_group: anyio.abc.TaskGroup | None = None
        self._loop_time = time.monotonic
        self._init_stopping()
        self._init_heartbeat()
        self._init_until_empty()

    # -- public ---------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Messages received and not yet finished (dispatching or waiting to start)."""
        return len(self._held)

    @property
    def dispatch_limit(self) -> int:
        """The adaptive dispatch limit now (`max_in_flight` until a throttle lowers it)."""
        return self._dispatch_limit.value

    @property
    def concurrency_limit(self) -> int:
        """The former name of `dispatch_limit`, kept as an alias (the stats line and the
        metrics read it)."""
        return self._dispatch_limit.value

    async def run(self) -> Stats:
        """Run until a stop condition; return the statistics."""
        if self._ran:
            raise RuntimeError("Consumer.run() may be called only once; create a new Consumer")
        self._ran = True
        await self._discover_visibility_timeout()
        loop = asyncio.get_running_loop()
        self._loop_time = loop.time
        self._stop_event = asyncio.Event()
        self._drained = asyncio.Event()
        self._news = asyncio.Event()
        config = self.config
        stats = self.stats
        stats.started_at = loop.time()
        if self._stopping:
            self._stop_event.set()
            self._stop_deadline = stats.started_at + config.shutdown_grace
        if config.duration is not None:
            self._deadline = stats.started_at + config.duration
        if config.deadline is not None:
            self._deadline = min(self._deadline or config.deadline, config.deadline)
        acker = Acker(
            self.queue,
            stats,
            flush_interval=config.ack_flush_interval,
            max_pending=config.max_pending_acks,
            concurrency=config.ack_concurrency,
            attempts=config.delete_attempts,
            on_visibility_answered=self._visibility_answered,
        )
        self._acker = acker
        logger.info(
            "consumer starting: queue=%s receivers=%d max_in_flight=%d prefetch=%d "
            "batch_size=%d delete_by=%s fifo=%s heartbeat=%s",
            self.queue.queue_url,
            config.receivers,
            config.max_in_flight,
            config.prefetch,
            config.batch_size,
            config.delete_by,
            self._fifo,
            self._heartbeat_vt() is not None,
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
            vt = self._heartbeat_vt()
            if vt is not None:
                # In the work group: extensions go on while dispatches drain.
                work_group.start_soon(self._heartbeat, vt)
            with anyio.CancelScope() as receiving:
                async with anyio.create_task_group() as receive_group:
                    for _ in range(config.receivers):
                        receive_group.start_soon(self._receiver)
                    if self._deadline is not None:
                        receive_group.start_soon(self._stop_at_deadline, self._deadline)
                    await self._stop_event.wait()
                    # Receivers leave at their next step; a receive under way may finish
                    # (what it returns is released) until the stop deadline, and is abandoned
                    # there (what it would have returned comes back after its visibility
                    # timeout).
                    receiving.deadline = self._stop_deadline
            await self._drain()
            work_group.cancel_scope.cancel()

    # -- receiving ------------------------------------------------------------------------

    async def _receiver(self) -> None:
        config = self.config
        stats = self.stats
        capacity = self._capacity
        queue = self.queue
        held = self._held
        failures = 0
        empty_pause = 0.0
        batch_size = config.batch_size
        window = config.receive_batch_window
        # The last receive returned messages: the batching window applies.
        flowing = False
        while not self._stopping:
            taken = await capacity.take(batch_size)
            if taken == 0:
                return
            # Wait only for slots that can come: below a batch of capacity, all of it.
            if flowing and window > 0 and taken < min(batch_size, capacity.total):
                taken = await self._fill_batch(taken, window)
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
            except Exception as exc:  # AWS errors, and whatever a custom Queue raises
                capacity.give(taken)
                stats.count_error("ReceiveMessage")
                failures += 1
                delay = receive_backoff(exc, failures)
                log_receive_error(exc, delay)
                await self._pause(delay)
                continue
            except BaseException:  # cancellation: never swallowed
                capacity.give(taken)
                raise
            failures = 0
            got = len(messages)
            flowing = got > 0
            if got < taken:
                capacity.give(taken - got)
            if got == 0:
                if config.until_empty:
                    await self._park()
                elif wait == 0:
                    empty_pause = next_empty_pause(empty_pause)
                    await self._pause(empty_pause)
                continue
            empty_pause = 0.0
            stats.received += got
            # The visibility deadline, counted from the answer: SQS started the clock a
            # network hop earlier, which the heartbeat's margin covers.
            vt = config.visibility_timeout or self.visibility_timeout or 0
            deadline = self._loop_time() + vt
            for message in messages:
                held[message] = deadline
            if len(held) > stats.peak_in_flight:
                stats.peak_in_flight = len(held)
            if self._news is not None and self._parked:
                self._news.set()
            if self.stopping:
                # Received while stopping: nobody will start these, so release them now.
                for message in messages:
                    self._release_unstarted(message)
                return
            self._hand_off(messages)

    def _wait_time(self) -> int:
        config = self.config
        wait = config.wait_time_seconds
        if config.until_empty and wait > _UNTIL_EMPTY_WAIT:
            # A full long poll on a drained queue would only add an idle tail to the run.
            wait = _UNTIL_EMPTY_WAIT
        if self._deadline is not None:
            left = int(self._deadline - self._loop_time())
            wait = max(0, min(wait, left))
        return wait

    # -- dispatching ----------------------------------------------------------------------

    def _hand_off(self, messages: Sequence[Message]) -> None:
        if self._fifo:
            messages = self._admit(messages)
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
        fifo = self._fifo
        task = asyncio.current_task()
        assert task is not None
        while True:
            message: Message | None = await handoff.get()
            self._idle_workers -= 1
            while message is not None:
                ok = await self._process(message, task)
                message = self._next_in_group(message, ok) if fifo else None
            self._idle_workers += 1

    async def _process(self, message: Message, task: asyncio.Task[object]) -> bool:
        """Dispatch `message` (retrying throttles in-process) in `task`, the worker's own;
        True if it succeeded."""
        if self._lost and message in self._lost:
            self._drop_lost(message)
            return False
        if self._stopping:
            # Not started before the stop (a prefetched message waiting for a worker): released
            # now, as a FIFO group's later messages are; the drain finishes what is under way.
            self._release_unstarted(message)
            return False
        stats = self.stats
        stats.dispatched += 1
        running = self._running
        dispatch_limit = self._dispatch_limit
        gate = dispatch_limit.slots
        operation = self._operation
        attempt = 0
        while True:
            if not gate.waiters and gate.free > gate.promised:
                gate.free -= 1
            else:
                await gate.take(1)
            epoch = dispatch_limit.epoch
            if self._lost and message in self._lost:
                # Lost while waiting for the gate: SQS owns it again, do not start it.
                gate.give(1)
                self._drop_lost(message)
                return False
            running[message] = task
            if operation is not None:
                stats.count_call(operation)
            try:
                await self.dispatcher.dispatch(message)
            except DispatchThrottled as exc:
                if operation is not None:
                    stats.count_error(operation)
                del running[message]
                gate.give(1)
                if self._lost and self._lost_meanwhile(message, task):
                    return False
                if await self._throttled(message, exc, epoch, attempt):
                    attempt += 1
                    stats.retried += 1
                    continue
                return False
            except asyncio.CancelledError as exc:
                if not task.cancelling():
                    # Nobody cancelled this task: the dispatcher raised it itself (a library
                    # cancelled a future it awaited). That is this message's failure; the
                    # run goes on.
                    del running[message]
                    gate.give(1)
                    self._failed(message, exc)
                    return False
                # Ours (the heartbeat found the lease lost) unless someone else cancels too:
                # then the message stays held, and _finish releases it.
                if not self._lease_cancel_taken_back(message, task):
                    raise
                del running[message]
                gate.give(1)
                self._drop_lost(message)
                return False
            except Exception as exc:  # DispatchError, or a Dispatcher that raised something else
                if operation is not None and isinstance(exc.__cause__, AwsError):
                    stats.count_error(operation)  # the call itself failed, not the function
                del running[message]
                gate.give(1)
                if self._lost and self._lost_meanwhile(message, task):
                    return False
                self._failed(message, exc)
                return False
            break
        del running[message]
        gate.give(1)
        if self._lost and self._lost_meanwhile(message, task):
            return False
        # Success.
        stats.succeeded += 1
        if dispatch_limit.value < dispatch_limit.ceiling:
            dispatch_limit.succeeded()
        now = stats.last_success_at = self._loop_time()
        try:
            stats.receive_to_done.record(now - message.received_at)
            sent = message.sent_timestamp
            if sent is not None:
                stats.send_to_done.record(max(0.0, time.time() - sent))
        except Exception as exc:  # a garbage SentTimestamp must not cost the delete
            self._bad_timestamp(message, exc)
        if self.config.delete_by == "consumer":
            acker = self._acker
            assert acker is not None
            try:
                await acker.delete(message)
            except BaseException:
                # Cancelled while waiting for room to delete: the work is done, so hand the
                # delete to the final flush rather than releasing the message.
                acker.delete_nowait(message)
                self._done(message)
                raise
        self._done(message)
        return True

    def _release_unstarted(self, message: Message) -> None:
        """`message` will not be dispatched: visible again at once (visibility 0), its slot
        freed; one whose lease was lost is only dropped (SQS owns it already)."""
        if self._lost and message in self._lost:
            self._drop_lost(message)
            return
        acker = self._acker
        assert acker is not None
        acker.release(message)
        self._done(message)

    def _done(self, message: Message) -> None:
        """`message` is finished (deleted, released, failed or lost): free its slot."""
        held = self._held
        del held[message]
        if self._first_deadline:
            self._first_deadline.pop(message, None)
            self._capped.discard(message)
        self._capacity.give(1)
        if not held:
            assert self._drained is not None
            assert self._news is not None
            self._drained.set()
            if self._parked:
                self._news.set()
