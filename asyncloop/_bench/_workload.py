"""The workload every contender runs: the same messages, the same queue and dispatcher wrappers.

- `Tracker` counts what one run did (sent, received, succeeded) and notes the moment the last
  of the N messages succeeded: that instant ends the timed part of a run, for every contender.
- `CountingQueue` and `TrackingDispatcher` wrap the target's queue and Lambda dispatcher and
  count API calls by operation outside the contender, so the consumer and the baselines are
  counted by the same code.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final

from asyncloop import BatchEntryFailure, Dispatcher, Message, Queue

__all__ = (
    "BODY_BYTES",
    "CountingQueue",
    "Tracker",
    "TrackingDispatcher",
    "body",
)

# Every message body is this many bytes: a small JSON document, as a typical job payload.
BODY_BYTES: Final = 128
_PAD: Final = "x" * BODY_BYTES


def body(index: int) -> str:
    """The body of message `index`: JSON, exactly `BODY_BYTES` long."""
    head = f'{{"job":{index},"pad":"'
    return head + _PAD[: BODY_BYTES - len(head) - 2] + '"}'


class Tracker:
    """What one run did, and the moment it finished (the `target`-th success)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.sent = 0
        self.received = 0
        self.done = 0
        self.finished_at: float | None = None
        self.finished = asyncio.Event()
        self.on_finish: Callable[[], None] | None = None
        self.calls: Counter[str] = Counter()
        self._now = asyncio.get_running_loop().time

    def succeeded(self) -> None:
        self.done += 1
        if self.done == self.target:
            self.finished_at = self._now()
            self.finished.set()
            if self.on_finish is not None:
                self.on_finish()

    @property
    def backlog(self) -> int:
        """Messages sent and not yet received: what is visible in the queue."""
        return self.sent - self.received


class CountingQueue:
    """A `Queue` that counts calls into `tracker.calls` and received messages into
    `tracker.received`; `after_receive(n)` (the fake's feeder) runs after each receive."""

    def __init__(
        self,
        inner: Queue,
        tracker: Tracker,
        *,
        after_receive: Callable[[int], None] | None = None,
    ) -> None:
        self.inner = inner
        self.tracker = tracker
        self._after_receive = after_receive

    @property
    def queue_url(self) -> str:
        return self.inner.queue_url

    async def receive(
        self,
        *,
        max_messages: int,
        wait_time_seconds: int,
        visibility_timeout: int | None = None,
    ) -> Sequence[Message]:
        self.tracker.calls["ReceiveMessage"] += 1
        messages = await self.inner.receive(
            max_messages=max_messages,
            wait_time_seconds=wait_time_seconds,
            visibility_timeout=visibility_timeout,
        )
        got = len(messages)
        if got:
            self.tracker.received += got
            if self._after_receive is not None:
                self._after_receive(got)
        return messages

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> Sequence[BatchEntryFailure]:
        self.tracker.calls["DeleteMessageBatch"] += 1
        return await self.inner.delete_batch(entries)

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> Sequence[BatchEntryFailure]:
        self.tracker.calls["ChangeMessageVisibilityBatch"] += 1
        return await self.inner.change_visibility_batch(entries)


class TrackingDispatcher:
    """A `Dispatcher` that counts Invoke calls and reports each success to the tracker."""

    operation = "Invoke"

    def __init__(self, inner: Dispatcher, tracker: Tracker) -> None:
        self.inner = inner
        self.tracker = tracker

    async def dispatch(self, message: Message) -> None:
        tracker = self.tracker
        tracker.calls["Invoke"] += 1
        await self.inner.dispatch(message)
        tracker.succeeded()
