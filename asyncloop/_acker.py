"""Acknowledgements: deletes and visibility changes coalesced into batch calls of at most 10.

Entries from every receiver and worker share one buffer per operation. A full batch of 10
goes at once; a partial one goes when its oldest entry has waited `flush_interval`; all go on
`close()`. Entry Ids are the entry's position in its call ("0".."9"), never the MessageId: a
standard queue can deliver one MessageId twice, and SQS rejects a whole batch with a repeated Id.

A per-entry failure that SQS marks as its own fault (``SenderFault`` false) is retried in a
later batch, up to `attempts` tries; then the message is left to SQS and counted. Nothing is
dropped silently: a delete that never happens means a duplicate later, never a loss.

Visibility changes (`change_visibility`) share one lane: releases (`release`: visibility 0, a
failure backoff, or a short delay after a throttle) and the heartbeat's extensions (`extend`).
An entry may carry its own `on_done` callback (the consumer's, for backoffs and extensions);
without one it counts as a release. Logs name message ids and error codes only, never bodies
or receipt handles.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
import anyio.abc

from ._exceptions import AwsError
from ._limits import MAX_BATCH
from ._protocols import Queue
from ._slots import Slots
from ._stats import Stats
from ._types import BatchEntryFailure, Message

__all__ = ("Acker",)

logger = logging.getLogger("asyncloop")


Outcome = BatchEntryFailure | AwsError | Exception | None
"""None for success; otherwise the entry's failure, or the error that failed its whole call."""

OnDone = Callable[[Message, Outcome], None]


@dataclass(slots=True)
class _Entry:
    message: Message
    visibility: int = 0
    attempt: int = 1
    on_done: OnDone | None = None


class _Lane:
    """One operation's buffer and its in-flight batch calls."""

    def __init__(
        self,
        operation: str,
        send: Callable[[list[_Entry]], Awaitable[Sequence[BatchEntryFailure]]],
        on_done: Callable[[_Entry, Outcome], None],
    ) -> None:
        self.operation = operation
        self.send = send
        self.on_done = on_done
        self.buffer: deque[_Entry] = deque()
        self.first_at = 0.0
        # Entries that calls already started or scheduled will take.
        self.claimed = 0
        # Entries buffered or in a call that has not answered.
        self.pending = 0

    def take(self, limit: int = MAX_BATCH) -> list[_Entry]:
        buffer = self.buffer
        return [buffer.popleft() for _ in range(min(limit, len(buffer)))]


class Acker:
    """Batches deletes and releases for one consumer run.

    Bind it to a task group (`bind`: starts `concurrency` sender tasks there) before use; run
    `tick()` in that group for interval flushes; call `close()` (under a shielded scope) at
    the end to flush everything.
    """

    def __init__(
        self,
        queue: Queue,
        stats: Stats,
        *,
        flush_interval: float,
        max_pending: int,
        concurrency: int,
        attempts: int,
        on_visibility_answered: Callable[[], None] | None = None,
    ) -> None:
        self._queue = queue
        self._on_visibility_answered = on_visibility_answered
        self._stats = stats
        self._flush_interval = flush_interval
        self._attempts = attempts
        self._concurrency = concurrency
        # Lanes with a batch due; `concurrency` long-lived senders take from it (a task per
        # call cost about 30 us, a tenth of the event loop's whole budget per batch of messages).
        self._due: asyncio.Queue[_Lane] = asyncio.Queue()
        self._tg: anyio.abc.TaskGroup | None = None
        self._pending = 0
        # Room below `max_pending`: every entry holds a slot until it is settled; only
        # `delete` waits for one.
        self._room = Slots(max_pending)
        self._changed = asyncio.Event()
        self._buffered = asyncio.Event()
        self._deletes = _Lane("DeleteMessageBatch", self._send_deletes, self._delete_done)
        self._visibility = _Lane(
            "ChangeMessageVisibilityBatch", self._send_visibility, self._visibility_done
        )
        self._lanes = (self._deletes, self._visibility)
        self._now = asyncio.get_running_loop().time

    @property
    def pending(self) -> int:
        """Entries buffered or in a call that has not answered yet."""
        return self._pending

    def bind(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the sender tasks in `task_group`; batches are sent from then on."""
        self._tg = task_group
        for _ in range(self._concurrency):
            task_group.start_soon(self._sender)

    async def delete(self, message: Message) -> None:
        """Queue `message` for deletion; waits while `max_pending` entries are pending."""
        room = self._room
        if not room.waiters and room.free > room.promised:
            room.free -= 1
        else:
            await room.take(1)
        self._add(self._deletes, _Entry(message))

    def delete_nowait(self, message: Message) -> None:
        """Queue `message` for deletion without waiting for room (for shutdown paths)."""
        self._room.take_nowait(1)
        self._add(self._deletes, _Entry(message))

    def change_visibility(
        self, message: Message, visibility: int, on_done: OnDone | None = None
    ) -> None:
        """Queue a visibility change of `message` to `visibility` seconds from now. Never
        waits: changes come from messages the consumer already holds, so they are bounded
        by max_in_flight.

        `on_done(message, outcome)` is called once the change succeeded (outcome None) or was
        given up; without it the change counts as a release in the stats."""
        self._room.take_nowait(1)
        self._add(self._visibility, _Entry(message, visibility, 1, on_done))

    def release(self, message: Message, visibility: int = 0, on_done: OnDone | None = None) -> None:
        """Give `message` back to SQS: visible again at once (0), or after a backoff (a
        failure's, or a throttle's short delay). A `change_visibility`; the heartbeat's
        extensions use `extend`."""
        self.change_visibility(message, visibility, on_done)

    def extend(self, message: Message, visibility: int, on_done: OnDone) -> None:
        """Extend the lease of `message`, still being worked on, to `visibility` seconds from
        now, and send it without waiting for `flush_interval` (with the other extensions
        queued before `flush_visibility_changes`)."""
        self.change_visibility(message, visibility, on_done)

    def flush_visibility_changes(self) -> None:
        """Send buffered visibility changes now (the heartbeat's extensions cannot wait for
        `flush_interval`)."""
        self._flush(self._visibility, partial=True)

    @property
    def visibility_changes_pending(self) -> int:
        """Visibility changes (releases, backoffs, extensions) buffered or in a call that has
        not answered yet."""
        return self._visibility.pending

    async def tick(self) -> None:
        """Flush partial batches once their oldest entry has waited `flush_interval`. Runs
        until cancelled."""
        while True:
            await self._buffered.wait()
            self._buffered.clear()
            if self._tg is None:
                # Closing: close() sends what is buffered. (Going on would spin without ever
                # yielding: _flush does nothing, the buffer stays, the event is set again.)
                return
            for lane in self._lanes:
                if lane.buffer:
                    delay = lane.first_at + self._flush_interval - self._now()
                    if delay > 0:
                        await anyio.sleep(delay)
                    self._flush(lane, partial=True)
            if any(lane.buffer for lane in self._lanes):
                self._buffered.set()

    async def close(self) -> None:
        """Send everything buffered now and wait until every call has answered.

        Calls run in a task group of close()'s own, so a cancelled consumer task group cannot
        take them down; run it under a shielded, time-bounded scope.
        """
        self._tg = None
        while self._pending:
            batches = sum(-(-len(lane.buffer) // MAX_BATCH) for lane in self._lanes)
            if batches:
                async with anyio.create_task_group() as tg:
                    for _ in range(min(self._concurrency, batches)):
                        tg.start_soon(self._drain)
            else:
                # Calls of the bound senders are still out: wait for their answers.
                self._changed.clear()
                await self._changed.wait()

    async def _drain(self) -> None:
        for lane in self._lanes:
            while lane.buffer:
                await self._call(lane)

    async def _sender(self) -> None:
        due = self._due
        while True:
            await self._call(await due.get())

    def _add(self, lane: _Lane, entry: _Entry) -> None:
        if not lane.buffer:
            lane.first_at = self._now()
            self._buffered.set()
        lane.buffer.append(entry)
        self._pending += 1
        lane.pending += 1
        if len(lane.buffer) >= MAX_BATCH:
            self._flush(lane, partial=False)

    def _flush(self, lane: _Lane, *, partial: bool) -> None:
        tg = self._tg
        if tg is None:
            # Unbound or closing: close() sends what is buffered.
            return
        due = len(lane.buffer) - lane.claimed
        while due >= MAX_BATCH or (partial and due > 0):
            # A sender takes the entries when it gets to the call: until then they stay
            # buffered, so close() still sends them if the senders are cancelled first.
            lane.claimed += min(due, MAX_BATCH)
            due -= MAX_BATCH
            self._due.put_nowait(lane)
        if lane.buffer:
            lane.first_at = self._now()

    async def _call(self, lane: _Lane) -> None:
        """One batch call of up to 10 of `lane`'s buffered entries."""
        try:
            batch = lane.take()
            lane.claimed = max(0, lane.claimed - len(batch))
            if not batch:
                return
            self._stats.count_call(lane.operation)
            try:
                failures = await lane.send(batch)
            except AwsError as exc:
                self._stats.count_error(lane.operation)
                for entry in batch:
                    self._settle(lane, entry, exc, retry=exc.retryable)
            except Exception as exc:  # a broken Queue implementation: log, count, go on
                self._stats.count_error(lane.operation)
                # The type only: an exception's text may quote receipt handles.
                logger.warning("%s raised %s", lane.operation, type(exc).__name__)
                logger.debug("%s traceback", lane.operation, exc_info=True)
                for entry in batch:
                    self._settle(lane, entry, exc, retry=False)
            except BaseException:
                # Cancelled mid-call: SQS may or may not have acted; close() sends again.
                lane.buffer.extendleft(reversed(batch))
                raise
            else:
                failed = {failure.id: failure for failure in failures}
                for index, entry in enumerate(batch):
                    failure = failed.get(str(index))
                    if failure is None:
                        self._settle(lane, entry, None, retry=False)
                    else:
                        self._settle(lane, entry, failure, retry=not failure.sender_fault)
        finally:
            self._changed.set()
            if lane is self._visibility and self._on_visibility_answered is not None:
                self._on_visibility_answered()

    def _settle(self, lane: _Lane, entry: _Entry, outcome: Outcome, *, retry: bool) -> None:
        if outcome is not None and retry and entry.attempt < self._attempts:
            entry.attempt += 1
            self._add(lane, entry)
            self._pending -= 1  # _add counted it again
            lane.pending -= 1
            return
        self._pending -= 1
        lane.pending -= 1
        lane.on_done(entry, outcome)
        self._room.give(1)

    async def _send_deletes(self, batch: list[_Entry]) -> Sequence[BatchEntryFailure]:
        return await self._queue.delete_batch(
            [(str(i), entry.message.receipt_handle) for i, entry in enumerate(batch)]
        )

    async def _send_visibility(self, batch: list[_Entry]) -> Sequence[BatchEntryFailure]:
        return await self._queue.change_visibility_batch(
            [(str(i), e.message.receipt_handle, e.visibility) for i, e in enumerate(batch)]
        )

    def _delete_done(self, entry: _Entry, outcome: Outcome) -> None:
        if outcome is None:
            self._stats.deleted += 1
            return
        self._stats.delete_failed += 1
        logger.warning(
            "delete of message %s failed after %d attempt(s) (%s); it will be delivered again",
            entry.message.message_id,
            entry.attempt,
            outcome_code(outcome),
        )

    def _visibility_done(self, entry: _Entry, outcome: Outcome) -> None:
        if entry.on_done is not None:
            entry.on_done(entry.message, outcome)
            return
        self.count_release(entry.message, outcome)

    def count_release(self, message: Message, outcome: Outcome) -> None:
        """Count (and log, if it failed) a release's outcome as a change without an `on_done`
        is counted; for an `on_done` that wants the same accounting."""
        if outcome is None:
            self._stats.released += 1
            return
        self._stats.release_failed += 1
        logger.warning(
            "visibility change of message %s failed (%s); it returns after its visibility timeout",
            message.message_id,
            outcome_code(outcome),
        )


def outcome_code(outcome: BatchEntryFailure | AwsError | Exception) -> str:
    """An outcome for a log line: its error code or type, never its text (which may quote a
    receipt handle)."""
    if isinstance(outcome, BatchEntryFailure):
        return outcome.code
    if isinstance(outcome, AwsError):
        return outcome.code or type(outcome).__name__
    return type(outcome).__name__
