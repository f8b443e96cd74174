"""Move messages from a dead-letter queue back to their source, or to another queue.

Two methods:

- ``native``: SQS's own message move task (``StartMessageMoveTask``), which runs inside SQS,
  optionally rate-limited (``MaxNumberOfMessagesPerSecond``); `move_tasks` lists its tasks
  (``ListMessageMoveTasks``) and `cancel_move_task` cancels the running one.
- ``copy``: receive from the DLQ, ``SendMessageBatch`` to the destination, then
  ``DeleteMessageBatch`` from the DLQ of only the entries whose send succeeded (a batch can fail
  per entry). A message is never deleted before its copy was accepted, so a failure leaves it
  in the DLQ (visible again after `CopyOptions.visibility_timeout`); a delete that fails after a
  successful send leaves a duplicate, never a loss. Body and message attributes are kept
  (and ``AWSTraceHeader``); for FIFO queues the group id is kept and the deduplication id is a
  new one per receive (see `_dedup_id`).

``auto`` (the default) tries ``native`` and falls back on ``copy`` when the endpoint does not
know the action: moto's server and fauxqs (checked with moto 5 and fauxqs 1.9.2) don't.
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
from ._exceptions import AsyncloopError, AwsError, ConfigError
from ._limits import MAX_BATCH, MAX_SEND_BATCH_BYTES, MAX_VISIBILITY, MAX_WAIT_TIME
from ._types import Message
from ._validate import check_range, validate_queue_url

__all__ = (
    "CopyOptions",
    "RedriveResult",
    "cancel_move_task",
    "copy_messages",
    "move_tasks",
    "redrive",
    "resolve_queue",
)

logger = logging.getLogger("asyncloop.redrive")

Method = Literal["auto", "native", "copy"]
METHODS: Final[tuple[Method, ...]] = ("auto", "native", "copy")

# SQS's move tasks move at most 500 messages a second.
_MAX_RATE: Final = 500

# What an endpoint answers for an action it does not implement (AWS, fauxqs, LocalStack).
_UNSUPPORTED_CODES: Final = frozenset(
    {"InvalidAction", "UnsupportedOperation", "UnknownOperationException", "NotImplemented"}
)


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


def _unsupported(exc: AwsError) -> bool:
    """The endpoint does not implement the action (rather than refusing this call).

    A code that is only the HTTP status (``"500"``) means the answer was not an AWS error at
    all: moto's server answers an unimplemented action with a bare 500 page.
    """
    code = exc.code or ""
    return code in _UNSUPPORTED_CODES or code.isdigit()


async def _queue_arn(sqs: Any, url: str) -> str:
    with map_errors("GetQueueAttributes", queue_url=url):
        response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    arn: str = response["Attributes"]["QueueArn"]
    return arn


async def resolve_queue(
    sqs: Any,
    *,
    url: str | None = None,
    arn: str | None = None,
    field: str = "queue",
    arn_field: str | None = None,
) -> tuple[str, str]:
    """``(url, arn)`` of a queue given by either; raises `QueueNotFound` when it is missing.
    Errors name `field`, a malformed ARN `arn_field` (default ``<field>_arn``)."""
    if (url is None) == (arn is None):
        raise ConfigError(f"give the {field} by URL or by ARN, exactly one", field=field)
    if url is not None:
        url = validate_queue_url(url, field=field)
        return url, await _queue_arn(sqs, url)
    assert arn is not None
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        name = arn_field or f"{field}_arn"
        raise ConfigError(
            f"{name} must be arn:<partition>:sqs:<region>:<account>:<name>, got {arn!r}",
            field=name,
        )
    name, account = parts[5], parts[4]
    with map_errors("GetQueueUrl", queue_url=arn):
        response = await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    return str(response["QueueUrl"]), arn


async def _source_of(sqs: Any, dlq_url: str) -> str:
    """The one queue whose redrive policy names `dlq_url` (the copy's default destination)."""
    try:
        with map_errors("ListDeadLetterSourceQueues", queue_url=dlq_url):
            response = await sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)
    except AwsError as exc:
        if not _unsupported(exc):
            raise
        raise ConfigError(
            f"the endpoint cannot list the source queues of {dlq_url} ({exc.code}): "
            "give --destination-url",
            field="destination_url",
        ) from exc
    urls: list[str] = list(response.get("queueUrls", ()))
    if len(urls) != 1:
        found = ", ".join(urls) if urls else "none"
        raise ConfigError(
            f"the copy needs one source queue of {dlq_url} to move to, found {found}: "
            "give --destination-url",
            field="destination_url",
        )
    return urls[0]


def _check_pair(source_url: str, destination_url: str) -> None:
    if source_url == destination_url:
        raise ConfigError(
            f"the destination must differ from the dead-letter queue, got {destination_url}",
            field="destination_url",
        )
    if source_url.endswith(".fifo") != destination_url.endswith(".fifo"):
        raise ConfigError(
            "the dead-letter queue and the destination must both be FIFO or both standard, "
            f"got {source_url} and {destination_url}",
            field="destination_url",
        )


async def redrive(
    sqs: Any,
    *,
    source_url: str,
    destination_url: str | None = None,
    method: Method = "auto",
    options: CopyOptions | None = None,
    control_sqs: Any = None,
) -> RedriveResult:
    """Move the messages of the dead-letter queue `source_url` (see the module docstring).

    Without `destination_url`, ``native`` moves each message back to the queue it came from
    and ``copy`` to the one queue whose redrive policy names the DLQ. `sqs` is an aiobotocore
    SQS client (`AwsClients.sqs`); `control_sqs` (default `sqs`) makes the move-task call: give
    one with few retries, or an endpoint without move tasks (moto answers a bare 500, which
    botocore retries with backoff) costs seconds before the copy starts. Raises `ConfigError`
    for a bad pair of queues, `AwsError` when the queues cannot be read or the move task
    is refused.
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    options = options or CopyOptions()
    source_url, source_arn = await resolve_queue(sqs, url=source_url, field="source")
    if destination_url is not None:
        destination_url = validate_queue_url(destination_url, field="destination_url")
        _check_pair(source_url, destination_url)
    if method != "copy":
        try:
            handle = await _start_move_task(
                control_sqs or sqs, source_arn, destination_url, options
            )
        except AwsError as exc:
            if method == "native" or not _unsupported(exc):
                raise
            logger.warning(
                "StartMessageMoveTask is not supported by the endpoint (%s): copying instead",
                exc.code,
            )
        else:
            logger.info("message move task started: %s", handle)
            return RedriveResult(
                method="native",
                source_url=source_url,
                destination_url=destination_url,
                task_handle=handle,
            )
    if destination_url is None:
        destination_url = await _source_of(sqs, source_url)
        _check_pair(source_url, destination_url)
    return await copy_messages(
        SqsQueue(sqs, source_url), sqs, destination_url=destination_url, options=options
    )


async def _start_move_task(
    sqs: Any, source_arn: str, destination_url: str | None, options: CopyOptions
) -> str:
    kwargs: dict[str, Any] = {"SourceArn": source_arn}
    if destination_url is not None:
        kwargs["DestinationArn"] = await _queue_arn(sqs, destination_url)
    if options.max_per_second is not None:
        kwargs["MaxNumberOfMessagesPerSecond"] = int(options.max_per_second)
    with map_errors("StartMessageMoveTask", queue_url=source_arn):
        response = await sqs.start_message_move_task(**kwargs)
    return str(response["TaskHandle"])


async def move_tasks(sqs: Any, source_arn: str) -> list[dict[str, Any]] | None:
    """The DLQ's recent move tasks (``ListMessageMoveTasks``, newest first), or None when
    the endpoint does not support move tasks."""
    try:
        with map_errors("ListMessageMoveTasks", queue_url=source_arn):
            response = await sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10)
    except AwsError as exc:
        if _unsupported(exc):
            return None
        raise
    return [dict(task) for task in response.get("Results", ())]


async def cancel_move_task(sqs: Any, source_arn: str) -> tuple[str, int] | None:
    """Cancel the DLQ's running move task: ``(task_handle, messages moved so far)``, or None
    when no task is running. Raises `AsyncloopError` when the endpoint has no move tasks."""
    tasks = await move_tasks(sqs, source_arn)
    if tasks is None:
        raise AsyncloopError(
            "the endpoint does not support message move tasks: a copy redrive runs in the "
            "foreground (stop it with Ctrl-C)"
        )
    running = [t for t in tasks if t.get("Status") == "RUNNING" and t.get("TaskHandle")]
    if not running:
        return None
    handle = str(running[0]["TaskHandle"])
    with map_errors("CancelMessageMoveTask", queue_url=source_arn):
        response = await sqs.cancel_message_move_task(TaskHandle=handle)
    return handle, int(response.get("ApproximateNumberOfMessagesMoved", 0))


# -- the copy -------------------------------------------------------------------------------


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
