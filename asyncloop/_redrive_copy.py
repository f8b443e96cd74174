"""The ``copy`` method of a redrive: receive from the DLQ, send, delete only what was sent.

`copy_messages` receives from the DLQ, ``SendMessageBatch``es to the destination, then
``DeleteMessageBatch``es from the DLQ only the entries whose send succeeded (see
`asyncloop._redrive`, which chooses the method). `CopyOptions` says how it runs and
`RedriveResult` what a redrive did, by either method.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import anyio

from ._aws import SqsQueue
from ._error_table import map_errors
from ._exceptions import AwsError
from ._limits import MAX_BATCH, MAX_SEND_BATCH_BYTES, MAX_VISIBILITY, MAX_WAIT_TIME
from ._types import Message
from ._validate import check_range

__all__ = ("CopyOptions", "RedriveResult", "copy_messages")

logger = logging.getLogger("asyncloop.redrive")

# SQS's move tasks move at most 500 messages a second.
_MAX_RATE: Final = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyOptions:
    """How the ``copy`` method works.

    `max_per_second` (default None: as fast as the calls go; else 1..500, as SQS's move task)
    caps the messages sent per second. `visibility_timeout` (seconds, 1..43200, default 60) is
    how long a received message stays hidden in the DLQ: a message whose send failed returns
    after it, a message whose send succeeded and whose delete failed returns after it as a
    duplicate. `wait_time_seconds` (0..20, default 1) is the receive's long poll: the copy
    ends at the first receive that brings nothing new.
    """

    max_per_second: float | None = None
    visibility_timeout: int = 60
    wait_time_seconds: int = 1

    def __post_init__(self) -> None:
        if self.max_per_second is not None:
            check_range("max_per_second", self.max_per_second, 1, _MAX_RATE)
        check_range("visibility_timeout", self.visibility_timeout, 1, MAX_VISIBILITY)
        check_range("wait_time_seconds", self.wait_time_seconds, 0, MAX_WAIT_TIME)


@dataclass(frozen=True, slots=True, kw_only=True)
class RedriveResult:
    """What a redrive did.

    `method` is the one used (``native`` or ``copy``). For ``native``, `task_handle` names the
    started task (it runs on in SQS: follow it with `move_tasks`) and the counts are 0. For
    ``copy``: `moved` messages were sent and deleted from the DLQ; `failed` were not sent
    (still in the DLQ); `delete_failed` were sent but not deleted (they return to the DLQ: a
    duplicate if moved again). `error` is the failure that stopped the copy early, if any.
    """

    method: Literal["native", "copy"]
    source_url: str
    destination_url: str | None
    moved: int = 0
    failed: int = 0
    delete_failed: int = 0
    task_handle: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing failed (a native task only started: follow it with `move_tasks`)."""
        return self.failed == 0 and self.delete_failed == 0 and self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "source_url": self.source_url,
            "destination_url": self.destination_url,
            "moved": self.moved,
            "failed": self.failed,
            "delete_failed": self.delete_failed,
            "task_handle": self.task_handle,
            "error": self.error,
        }


def _dedup_id(message: Message) -> str:
    """A FIFO deduplication id for one copy of `message`.

    Not the original id: the DLQ's messages came from the destination, and a send that
    reuses an id seen there in the last 5 minutes is accepted and silently dropped, which the
    delete that follows would turn into a loss. The receipt handle is new on every receive,
    so botocore's retries of one send deduplicate and a later redrive never collides.
    """
    digest = hashlib.sha256(f"{message.message_id}\0{message.receipt_handle}".encode())
    return digest.hexdigest()


def _attributes(message: Message) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in message.message_attributes.items():
        kept: dict[str, Any] = {"DataType": value["DataType"]}
        for key in ("StringValue", "BinaryValue"):
            if key in value:
                kept[key] = value[key]
        out[name] = kept
    return out


def _size(entry: Mapping[str, Any]) -> int:
    """The entry's size as SQS counts it: the body plus each attribute's name, type and value."""
    size = len(entry["MessageBody"].encode())
    for name, value in entry.get("MessageAttributes", {}).items():
        data = value.get("StringValue", value.get("BinaryValue", b""))
        size += len(name.encode()) + len(value["DataType"].encode())
        size += len(data.encode() if isinstance(data, str) else data)
    return size


def _entry(index: int, message: Message, fifo: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": message.body}
    attributes = _attributes(message)
    if attributes:
        entry["MessageAttributes"] = attributes
    trace = message.attributes.get("AWSTraceHeader")
    if trace:
        entry["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": trace}
        }
    if fifo:
        entry["MessageGroupId"] = message.attributes.get("MessageGroupId", "redrive")
        entry["MessageDeduplicationId"] = _dedup_id(message)
    return entry


def _chunks(entries: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split into SendMessageBatch calls of at most 10 entries and 256 KiB."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = _size(entry)
        if current and (len(current) == MAX_BATCH or size + entry_size > MAX_SEND_BATCH_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks


class _Copy:
    """One copy run's state: counts, the pacing clock, the messages that failed."""

    def __init__(self, dlq: SqsQueue, sqs: Any, destination_url: str, options: CopyOptions):
        self.dlq = dlq
        self.sqs = sqs
        self.destination_url = destination_url
        self.options = options
        self.fifo = destination_url.endswith(".fifo")
        self.moved = 0
        self.failed = 0
        self.delete_failed = 0
        self.sent = 0
        self.given_up: set[str] = set()
        self.started = anyio.current_time()

    async def pace(self) -> None:
        """Wait until what was sent so far is paid for at `max_per_second` since the start
        (the first batch goes at once; on average never more than the rate)."""
        rate = self.options.max_per_second
        if rate is None:
            return
        delay = self.started + self.sent / rate - anyio.current_time()
        if delay > 0:
            await anyio.sleep(delay)

    async def send(self, chunk: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """SendMessageBatch: ``(ids sent, ids failed)``. An AwsError means none was sent."""
        with map_errors("SendMessageBatch", queue_url=self.destination_url):
            response = await self.sqs.send_message_batch(
                QueueUrl=self.destination_url, Entries=chunk
            )
        sent = [str(e["Id"]) for e in response.get("Successful", ())]
        failed = [str(e["Id"]) for e in response.get("Failed", ())]
        for entry in response.get("Failed", ()):
            logger.warning(
                "SendMessageBatch entry failed: %s %s", entry.get("Code"), entry.get("Message")
            )
        # An entry in neither list was not confirmed: treat it as failed (keep it in the DLQ).
        answered = set(sent) | set(failed)
        failed += [str(e["Id"]) for e in chunk if str(e["Id"]) not in answered]
        return sent, failed

    async def delete(self, messages: Sequence[Message]) -> None:
        """Delete `messages` (all sent) from the DLQ; count the ones that stay (duplicates)."""
        entries = [(str(i), m.receipt_handle) for i, m in enumerate(messages)]
        failures = await self.dlq.delete_batch(entries)
        for failure in failures:
            logger.warning("DeleteMessageBatch entry failed: %s %s", failure.code, failure.message)
        self.delete_failed += len(failures)
        self.moved += len(messages) - len(failures)

    async def release(self, messages: Sequence[Message]) -> None:
        """Best effort: make messages that were not sent visible in the DLQ again at once."""
        if not messages:
            return
        try:
            await self.dlq.change_visibility_batch(
                [(str(i), m.receipt_handle, 0) for i, m in enumerate(messages)]
            )
        except AwsError as exc:
            logger.warning("could not release %d message(s): %s", len(messages), exc)

    async def batch(self, messages: list[Message]) -> str | None:
        """Move one received batch; the error that should stop the copy, if any."""
        by_id = {str(i): m for i, m in enumerate(messages)}
        entries = [_entry(i, m, self.fifo) for i, m in enumerate(messages)]
        chunks = _chunks(entries)
        for n, chunk in enumerate(chunks):
            await self.pace()
            try:
                sent, failed = await self.send(chunk)
            except AwsError as exc:
                # Nothing of this chunk or the next ones was sent: they stay in the DLQ.
                rest = [by_id[e["Id"]] for c in chunks[n:] for e in c]
                self.failed += len(rest)
                await self.release(rest)
                return str(exc)
            self.sent += len(sent)
            self.failed += len(failed)
            for entry_id in failed:
                self.given_up.add(by_id[entry_id].message_id)
            if sent:
                try:
                    await self.delete([by_id[i] for i in sent])
                except AwsError as exc:
                    self.delete_failed += len(sent)
                    rest = [by_id[e["Id"]] for c in chunks[n + 1 :] for e in c]
                    self.failed += len(rest)
                    await self.release(rest)
                    return str(exc)
        return None

    async def run(self) -> str | None:
        while True:
            want = MAX_BATCH
            if self.options.max_per_second is not None:
                want = max(1, min(MAX_BATCH, math.floor(self.options.max_per_second)))
            received = await self.dlq.receive(
                max_messages=want,
                wait_time_seconds=self.options.wait_time_seconds,
                visibility_timeout=self.options.visibility_timeout,
            )
            # A message whose send failed once is not retried in this run (it would loop).
            fresh = [m for m in received if m.message_id not in self.given_up]
            if not fresh:
                return None
            error = await self.batch(fresh)
            if error is not None:
                return error


async def copy_messages(
    dlq: SqsQueue, sqs: Any, *, destination_url: str, options: CopyOptions | None = None
) -> RedriveResult:
    """The ``copy`` method: move the messages of `dlq` to `destination_url` until a receive
    brings nothing new. Returns the counts; a failed send or delete call stops the copy
    (`RedriveResult.error`) with every unsent message still in the DLQ."""
    copy = _Copy(dlq, sqs, destination_url, options or CopyOptions())
    error = await copy.run()
    result = RedriveResult(
        method="copy",
        source_url=dlq.queue_url,
        destination_url=destination_url,
        moved=copy.moved,
        failed=copy.failed,
        delete_failed=copy.delete_failed,
        error=error,
    )
    logger.info(
        "redrive copy: moved %d, failed %d, delete failed %d", result.moved, result.failed,
        result.delete_failed,
    )  # fmt: skip
    return result
