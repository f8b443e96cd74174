"""An in-memory SQS queue with real semantics, behind `asyncloop.Queue`.

`FakeQueue` keeps what the consumer's correctness depends on: visibility timeouts,
``ApproximateReceiveCount``, redrive to a dead-letter queue after ``maxReceiveCount``, long
polling, per-entry batch results, FIFO group locking, and SQS's own rules for batch calls
(at most 10 entries, distinct Ids, none empty: a whole-call error otherwise, where moto is
lenient). A stale receipt handle fails its entry, which is stricter than SQS (SQS may accept
it and not delete): the strict answer surfaces bugs.

Latency is injected per operation before the operation acts, so a cancelled call has no
effect, like a request that never reached the server. Faults come from `faults`, a
`FaultPlan` (see asyncloop.testing.FaultPlan).

The module is one piece past 400 lines: visibility, receive counts, redrive, FIFO group locks
and the batch rules all act on one store of messages (`_Stored`, the visible deque and the
invisible heap), so splitting them would spread one state machine over several modules.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import json
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._exceptions import QueueError
from .._limits import MAX_VISIBILITY
from .._types import BatchEntryFailure, Message
from ._fault_plan import FaultPlan, Latency

__all__ = ("FakeQueue",)


@dataclass(slots=True, eq=False)
class _Stored:
    message_id: str
    body: str
    md5: str
    sent_ms: int
    seq: int
    group_id: str | None = None
    dedup_id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    receive_count: int = 0
    first_receive_ms: int | None = None
    receipt: str | None = None
    visible_at: float = 0.0
    deleted: bool = False


class FakeQueue:
    """An in-memory SQS queue implementing `asyncloop.Queue`.

    ::

        dlq = FakeQueue(name="orders-dlq")
        queue = FakeQueue(name="orders", visibility_timeout=30, dead_letter_queue=dlq,
                          max_receive_count=3)
        queue.send_many(f"order-{i}" for i in range(100))

    Time is the running event loop's clock; `now` can be replaced for virtual time.
    """

    def __init__(
        self,
        *,
        name: str = "asyncloop-fake",
        visibility_timeout: int = 30,
        dead_letter_queue: FakeQueue | None = None,
        max_receive_count: int | None = None,
        latency: Mapping[str, Latency] | None = None,
        faults: FaultPlan | None = None,
        region: str = "us-east-1",
        account: str = "123456789012",
    ) -> None:
        if (dead_letter_queue is None) != (max_receive_count is None):
            raise ValueError("dead_letter_queue and max_receive_count go together")
        self.name = name
        self.fifo = name.endswith(".fifo")
        self.visibility_timeout = visibility_timeout
        self.dead_letter_queue = dead_letter_queue
        self.max_receive_count = max_receive_count
        self.latency: dict[str, Latency] = dict(latency or {})
        self.faults = faults
        self._url = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
        self._messages: dict[str, _Stored] = {}
        self._visible: deque[_Stored] = deque()
        self._invisible: list[tuple[float, int, _Stored]] = []
        self._stale = 0
        self._ids = itertools.count(1)
        self._prefix = f"{random.getrandbits(32):08x}"
        self._arrival: asyncio.Event | None = None
        self._fifo_dedup: dict[str, float] = {}
        self.api_calls: Counter[str] = Counter()
        self.deleted_count = 0
        self.received_count = 0
        self.moved_to_dlq = 0
        self.now: Callable[[], float] = _loop_time

    # -- setup and inspection (synchronous, for tests and benchmarks) --------------------

    @property
    def queue_url(self) -> str:
        return self._url

    def send(
        self,
        body: str,
        *,
        message_attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        delay: float = 0.0,
    ) -> str:
        """Enqueue one message; returns its MessageId."""
        if self.fifo and group_id is None:
            raise ValueError("a FIFO queue needs group_id")
        if self.fifo:
            dedup = deduplication_id or hashlib.sha256(body.encode()).hexdigest()
            now = self.now()
            if self._fifo_dedup.get(dedup, -1e18) > now:
                return ""  # SQS's 5-minute deduplication window: accepted, not enqueued
            self._fifo_dedup[dedup] = now + 300
            deduplication_id = dedup
        seq = next(self._ids)
        stored = _Stored(
            message_id=f"{self._prefix}-{seq:012d}",
            body=body,
            md5=hashlib.md5(body.encode("utf-8")).hexdigest(),  # SQS's MD5OfBody, not security
            sent_ms=int(time.time() * 1000),
            seq=seq,
            group_id=group_id,
            dedup_id=deduplication_id,
            attributes=dict(message_attributes or {}),
        )
        self._messages[stored.message_id] = stored
        if delay > 0:
            stored.visible_at = self.now() + delay
            heapq.heappush(self._invisible, (stored.visible_at, seq, stored))
        else:
            self._visible.append(stored)
        self._notify()
        return stored.message_id

    def send_many(self, bodies: Iterable[str], **kwargs: Any) -> list[str]:
        return [self.send(body, **kwargs) for body in bodies]

    def __len__(self) -> int:
        """Messages not deleted (visible, in flight or delayed)."""
        return len(self._messages)

    @property
    def visible_count(self) -> int:
        self._promote(self.now())
        return len(self._visible)

    @property
    def in_flight_count(self) -> int:
        return len(self._messages) - self.visible_count

    def message_ids(self) -> set[str]:
        return set(self._messages)

    def receive_count_of(self, message_id: str) -> int:
        return self._messages[message_id].receive_count

    def invalidate_receipt_handle(self, message_id: str) -> None:
        """Make the receipt handle `message_id` was last received with invalid, as when
        another receive took the message since: a delete or visibility change with the old
        handle then fails its entry with ``ReceiptHandleIsInvalid`` (the consumer's lease is
        lost). Raises KeyError for a message that is not in the queue."""
        self._messages[message_id].receipt = f"{message_id}#invalidated"

    @property
    def invisible_entries(self) -> int:
        """Entries in the fake's invisibility heap, stale ones (deleted, or made visible
        again) included until they are swept: what a long run's memory grows with."""
        return len(self._invisible)

    # -- the Queue protocol ---------------------------------------------------------------

    async def receive(
        self,
        *,
        max_messages: int,
        wait_time_seconds: int,
        visibility_timeout: int | None = None,
    ) -> list[Message]:
        await self._enter("ReceiveMessage")
        if not 1 <= max_messages <= 10:
            raise _error("ReceiveMessage", "InvalidParameterValue", self._url)
        if not 0 <= wait_time_seconds <= 20:
            raise _error("ReceiveMessage", "InvalidParameterValue", self._url)
        vt = self.visibility_timeout if visibility_timeout is None else visibility_timeout
        deadline = self.now() + wait_time_seconds
        while True:
            now = self.now()
            taken = self._take(max_messages, now, vt)
            if taken or now >= deadline:
                return taken
            await self._wait_for_arrival(deadline - now)

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> list[BatchEntryFailure]:
        await self._enter("DeleteMessageBatch")
        self._check_batch("DeleteMessageBatch", [entry[0] for entry in entries])
        failures = []
        for entry_id, receipt in entries:
            stored = self._entry_target("DeleteMessageBatch", entry_id, receipt)
            if isinstance(stored, BatchEntryFailure):
                failures.append(stored)
                continue
            self._remove(stored)
            self.deleted_count += 1
        return failures

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> list[BatchEntryFailure]:
        op = "ChangeMessageVisibilityBatch"
        await self._enter(op)
        self._check_batch(op, [entry[0] for entry in entries])
        failures = []
        now = self.now()
        for entry_id, receipt, timeout in entries:
            stored = self._entry_target(op, entry_id, receipt)
            if isinstance(stored, BatchEntryFailure):
                failures.append(stored)
                continue
            if stored.visible_at <= now:
                failures.append(
                    BatchEntryFailure(entry_id, "MessageNotInflight", "not in flight", True)
                )
                continue
            if not 0 <= timeout <= MAX_VISIBILITY:
                failures.append(BatchEntryFailure(entry_id, "InvalidParameterValue", "", True))
                continue
            stored.visible_at = now + timeout
            if timeout == 0:
                self._make_visible(stored)
            else:
                heapq.heappush(self._invisible, (stored.visible_at, stored.seq, stored))
        return failures

    async def get_attributes(self, names: Sequence[str] = ("All",)) -> dict[str, str]:
        await self._enter("GetQueueAttributes")
        now = self.now()
        self._promote(now)
        visible = len(self._visible)
        delayed = sum(1 for s in self._messages.values() if s.receive_count == 0) - visible
        attributes = {
            "ApproximateNumberOfMessages": str(visible),
            "ApproximateNumberOfMessagesNotVisible": str(
                len(self._messages) - visible - max(0, delayed)
            ),
            "ApproximateNumberOfMessagesDelayed": str(max(0, delayed)),
            "VisibilityTimeout": str(self.visibility_timeout),
            "QueueArn": f"arn:aws:sqs:{self._url.split('.')[1]}:{self._url.split('/')[-2]}:"
            f"{self.name}",
        }
        if self.dead_letter_queue is not None:
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": f"arn:aws:sqs:::{self.dead_letter_queue.name}",
                    "maxReceiveCount": self.max_receive_count,
                }
            )
        return attributes

    # -- internals ------------------------------------------------------------------------

    async def _enter(self, operation: str) -> None:
        self.api_calls[operation] += 1
        delay = self.latency.get(operation, 0.0)
        seconds = delay() if callable(delay) else delay
        faults = self.faults
        if faults is not None:
            chance, extra = faults.spikes
            if faults.draw(chance):
                faults.injected["spike"] += 1
                seconds += extra
        # Always yield, as a real request would: a fake that never suspends hides busy loops.
        # asyncio's own sleep (the fake is asyncio's, as its Event is): anyio's looks up the
        # running library on every call, a microsecond a call on the benchmark's hot path.
        await asyncio.sleep(seconds if seconds > 0 else 0)
        if faults is not None:
            if faults.draw(faults.throttles.get(operation, 0.0)):
                faults.injected[f"{operation}:throttle"] += 1
                raise _error(operation, "ThrottlingException", self._url, throttled=True)
            if faults.draw(faults.errors.get(operation, 0.0)):
                faults.injected[f"{operation}:error"] += 1
                raise _error(operation, "InternalError", self._url, retryable=True)

    def _entry_fault(self, operation: str) -> bool:
        faults = self.faults
        if faults is not None and faults.draw(faults.entry_failures.get(operation, 0.0)):
            faults.injected[f"{operation}:entry"] += 1
            return True
        return False

    def _entry_target(
        self, operation: str, entry_id: str, receipt: str
    ) -> _Stored | BatchEntryFailure:
        """The message a batch entry's receipt handle names, or the entry's failure: an
        injected fault (drawn first), or a stale or unknown handle."""
        if self._entry_fault(operation):
            return BatchEntryFailure(entry_id, "InternalError", "injected", False)
        stored = self._by_receipt(receipt)
        if stored is None:
            return BatchEntryFailure(entry_id, "ReceiptHandleIsInvalid", "stale or unknown", True)
        return stored

    def _check_batch(self, operation: str, ids: list[str]) -> None:
        if not ids:
            raise _error(operation, "AWS.SimpleQueueService.EmptyBatchRequest", self._url)
        if len(ids) > 10:
            raise _error(
                operation, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", self._url
            )
        if len(set(ids)) != len(ids):
            raise _error(operation, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", self._url)

    def _take(self, limit: int, now: float, vt: int) -> list[Message]:
        self._promote(now)
        visible = self._visible
        out: list[Message] = []
        locked: set[str] = set()
        if self.fifo:
            locked = {
                s.group_id
                for s in self._messages.values()
                if s.visible_at > now and s.receipt is not None and s.group_id is not None
            }
            candidates = sorted(visible, key=lambda s: s.seq)
            visible.clear()
            skipped: list[_Stored] = []
            taken_groups: set[str] = set()
            for stored in candidates:
                group = stored.group_id or ""
                if len(out) < limit and group not in locked:
                    if self._deliver(stored, now, vt, out):
                        taken_groups.add(group)
                    continue
                skipped.append(stored)
            visible.extend(skipped)
            return out
        while visible and len(out) < limit:
            stored = visible.popleft()
            if stored.deleted or stored.visible_at > now:
                continue
            self._deliver(stored, now, vt, out)
        return out

    def _deliver(self, stored: _Stored, now: float, vt: int, out: list[Message]) -> bool:
        limit = self.max_receive_count
        if limit is not None and stored.receive_count >= limit:
            self._redrive(stored)
            return False
        stored.receive_count += 1
        now_ms = int(time.time() * 1000)
        if stored.first_receive_ms is None:
            stored.first_receive_ms = now_ms
        stored.receipt = f"{stored.message_id}#{stored.receive_count}#{random.getrandbits(24):x}"
        stored.visible_at = now + vt
        faults = self.faults
        if faults is not None and faults.draw(faults.duplicates):
            # At-least-once: the message stays visible too, so another receive gets it again.
            faults.injected["duplicate"] += 1
            stored.visible_at = now
            self._visible.append(stored)
        else:
            heapq.heappush(self._invisible, (stored.visible_at, stored.seq, stored))
        self.received_count += 1
        attributes = {
            "SentTimestamp": str(stored.sent_ms),
            "ApproximateReceiveCount": str(stored.receive_count),
            "ApproximateFirstReceiveTimestamp": str(stored.first_receive_ms),
        }
        if stored.group_id is not None:
            attributes["MessageGroupId"] = stored.group_id
            attributes["SequenceNumber"] = str(stored.seq)
            if stored.dedup_id is not None:
                attributes["MessageDeduplicationId"] = stored.dedup_id
        out.append(
            Message(
                message_id=stored.message_id,
                receipt_handle=stored.receipt,
                body=stored.body,
                md5_of_body=stored.md5,
                attributes=attributes,
                message_attributes=stored.attributes,
                received_at=now,
            )
        )
        return True

    def _redrive(self, stored: _Stored) -> None:
        dlq = self.dead_letter_queue
        assert dlq is not None
        self._remove(stored)
        self.moved_to_dlq += 1
        dlq.send(
            stored.body,
            message_attributes=stored.attributes,
            group_id=stored.group_id if dlq.fifo else None,
            deduplication_id=stored.dedup_id if dlq.fifo else None,
        )

    def _promote(self, now: float) -> None:
        heap = self._invisible
        while heap and heap[0][0] <= now:
            visible_at, _, stored = heapq.heappop(heap)
            # Skip stale heap entries: deleted, or re-scheduled by a later visibility change.
            if not stored.deleted and stored.visible_at == visible_at:
                self._visible.append(stored)

    def _make_visible(self, stored: _Stored) -> None:
        self._visible.append(stored)
        self._notify()

    def _by_receipt(self, receipt: str) -> _Stored | None:
        message_id = receipt.split("#", 1)[0]
        stored = self._messages.get(message_id)
        if stored is None or stored.receipt != receipt:
            return None
        return stored

    def _remove(self, stored: _Stored) -> None:
        stored.deleted = True
        self._messages.pop(stored.message_id, None)
        # A deleted message's heap entry stays until its time comes; sweep them once they
        # are most of the heap, so a long run's memory stays flat (amortised O(1)).
        self._stale += 1
        heap = self._invisible
        if self._stale > 1024 and self._stale * 2 > len(heap):
            self._invisible = [
                entry for entry in heap if not entry[2].deleted and entry[2].visible_at == entry[0]
            ]
            heapq.heapify(self._invisible)
            self._stale = 0

    def _notify(self) -> None:
        if self._arrival is not None:
            self._arrival.set()

    async def _wait_for_arrival(self, limit: float) -> None:
        if self._arrival is None:
            self._arrival = asyncio.Event()
        self._arrival.clear()
        if self._invisible:
            limit = min(limit, max(0.0, self._invisible[0][0] - self.now()))
        with anyio.move_on_after(limit):
            await self._arrival.wait()


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _error(
    operation: str,
    code: str,
    queue_url: str,
    *,
    retryable: bool = False,
    throttled: bool = False,
) -> QueueError:
    return QueueError(
        f"{operation}: {code}",
        operation=operation,
        code=code,
        queue_url=queue_url,
        retryable=retryable or throttled,
        throttled=throttled,
    )
