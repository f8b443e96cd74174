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
The copy itself, its options and the result type are in `asyncloop._redrive_copy`.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Literal

from ._aws import SqsQueue
from ._error_table import map_errors
from ._exceptions import AsyncloopError, AwsError, ConfigError
from ._redrive_copy import CopyOptions, RedriveResult, copy_messages
from ._validate import validate_queue_url

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

# What an endpoint answers for an action it does not implement (AWS, fauxqs, LocalStack).
_UNSUPPORTED_CODES: Final = frozenset(
    {"InvalidAction", "UnsupportedOperation", "UnknownOperationException", "NotImplemented"}
)


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
