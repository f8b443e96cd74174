"""The SQS-side Lambda handlers: the seed's worker and the SQS event source mapping's handler.

- `worker(func)`: the seed's worker: runs ``func(message)`` on a seed payload and deletes the
  message with its receipt handle when ``func`` returns.
- `sqs_batch_handler(func, max_concurrency=...)`: for Lambda's own SQS event source mapping,
  with bounded concurrency and ``batchItemFailures``.
- `example_worker`: ``worker`` around a function that logs each message's id and size.

Both run on the process's one event loop (`_lambda_process`). `asyncloop.lambda_handler`
re-exports them; importing this module loads no AWS SDK.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._lambda_process import aws_clients, remaining_seconds, shared_runner

if TYPE_CHECKING:
    from ._types import Message

__all__ = (
    "Deleter",
    "LambdaHandler",
    "MessageFunc",
    "example_worker",
    "sqs_batch_handler",
    "worker",
)

LambdaHandler = Callable[[Mapping[str, Any], Any], dict[str, Any]]
MessageFunc = Callable[["Message"], Any]
Deleter = Callable[[str, str], Awaitable[bool]]
"""``await delete(queue_url, receipt_handle)``: whether the message was deleted."""


async def _sqs_delete(queue_url: str, receipt_handle: str) -> bool:
    from ._aws import SqsQueue

    queue = SqsQueue((await aws_clients()).sqs, queue_url)
    return not await queue.delete_batch([("0", receipt_handle)])


def worker(func: MessageFunc, *, delete: Deleter | None = None) -> LambdaHandler:
    """Wrap ``func(message)`` as the seed's worker function.

    The handler takes the seed payload (``{"Records": [{"sqs": {QueueUrl, MessageId,
    ReceiptHandle, MD5OfBody, Body}}]}``), calls `func` with an `asyncloop.Message` per record,
    on the event loop (a sync `func` is not moved to a thread: records run one at a time), awaits
    what it returns if that is awaitable, and deletes the message when that is done. When
    `func` raises, or the body does not match its MD5, the message is left in SQS, which
    redelivers it until the redrive policy moves it to the DLQ, and the handler raises
    `HandlerFailed` once every record was tried. A delete that fails is reported in
    ``delete_failed`` (the message comes back: a duplicate, never a loss) without raising, so
    Lambda does not run `func` again. `delete` replaces the SQS delete (tests).
    """

    async def handle(event: Mapping[str, Any]) -> dict[str, Any]:
        import hashlib

        from ._emf import log
        from ._exceptions import HandlerFailed
        from ._payload import parse_seed_payload
        from ._types import Message
        from ._user_call import UserCall

        call = UserCall(func, in_thread=False)
        deleter = delete if delete is not None else _sqs_delete
        done: list[str] = []
        failed: list[str] = []
        delete_failed: list[str] = []
        for record in parse_seed_payload(event):
            message = Message(
                message_id=record["MessageId"],
                receipt_handle=record["ReceiptHandle"],
                body=record["Body"],
                md5_of_body=record.get("MD5OfBody", ""),
                attributes={
                    k: record[k]
                    for k in ("MessageGroupId", "MessageDeduplicationId")
                    if isinstance(record.get(k), str)
                },
            )
            if message.md5_of_body and (
                hashlib.md5(message.body.encode(), usedforsecurity=False).hexdigest()
                != message.md5_of_body
            ):
                log("worker_md5_mismatch", level="ERROR", message_id=message.message_id)
                failed.append(message.message_id)
                continue
            try:
                await call(message)
            except Exception as exc:
                log(
                    "worker_failed",
                    level="ERROR",
                    message_id=message.message_id,
                    error=type(exc).__name__,
                )
                failed.append(message.message_id)
                continue
            if await deleter(record["QueueUrl"], message.receipt_handle):
                done.append(message.message_id)
            else:
                log("worker_delete_failed", level="WARNING", message_id=message.message_id)
                delete_failed.append(message.message_id)
        if failed:
            raise HandlerFailed(
                f"{len(failed)} of {len(failed) + len(done) + len(delete_failed)} messages "
                f"failed and were left in the queue: {', '.join(failed)}",
                message_id=failed[0],
            )
        return {"deleted": done, "delete_failed": delete_failed}

    def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        return shared_runner().run(handle(event))

    return handler


def _message_of(record: Mapping[str, Any]) -> Message:
    from ._types import Message

    return Message(
        message_id=record["messageId"],
        receipt_handle=record.get("receiptHandle", ""),
        body=record.get("body", ""),
        md5_of_body=record.get("md5OfBody", ""),
        attributes=record.get("attributes") or {},
        message_attributes=record.get("messageAttributes") or {},
    )


def sqs_batch_handler(
    func: MessageFunc,
    *,
    max_concurrency: int = 10,
    start_margin: float = 2.0,
    cancel_margin: float = 0.5,
) -> LambdaHandler:
    """Wrap ``func(message)`` for Lambda's SQS event source mapping (``ReportBatchItemFailures``).

    At most `max_concurrency` records run at once (async `func` as tasks, sync `func` in
    threads). A sync `func` that returns an awaitable has it awaited on the event loop, and
    its record succeeds only once that is done. No record starts with less than `start_margin`
    seconds left in the invocation, and records still running with `cancel_margin` left are
    cancelled; both are reported as failures, so SQS redelivers them (a thread still running
    is abandoned: its side effects may still happen). On a FIFO queue each message group runs
    in order, one record at a time, and after a record fails the rest of its group is reported
    failed unstarted (running them would break the group's order). Returns
    ``{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}`` in record order.
    """
    from ._validate import check_range

    check_range("max_concurrency", max_concurrency, 1, 10_000)
    check_range("start_margin", start_margin, 0.0, 900.0)
    check_range("cancel_margin", cancel_margin, 0.0, start_margin)
    from ._user_call import UserCall

    call = UserCall(func)

    async def handle(event: Mapping[str, Any], remaining: float) -> dict[str, Any]:
        from collections import deque

        import anyio

        from ._emf import log
        from ._payload import parse_sqs_event

        records, malformed = parse_sqs_event(event)
        for message_id in malformed:
            log("record_malformed", level="ERROR", message_id=message_id)
        failed: set[int] = set()
        # By the queue, not by MessageGroupId: a standard queue's fair-queue groups carry one
        # too, and need no order
        fifo = any(str(r.get("eventSourceARN", "")).endswith(".fifo") for r in records)
        lanes: dict[str, list[int]] = {}
        for index, record in enumerate(records):
            key = (record.get("attributes") or {}).get("MessageGroupId", "") if fifo else ""
            lanes.setdefault(key if fifo else str(index), []).append(index)
        work = deque(lanes.values())
        start_by = anyio.current_time() + remaining - start_margin

        async def run_lane(lane: list[int]) -> None:
            for position, index in enumerate(lane):
                if anyio.current_time() >= start_by:
                    failed.update(lane[position:])
                    return
                try:
                    await call(_message_of(records[index]))
                except anyio.get_cancelled_exc_class():
                    # Out of time: this record and the rest of its lane go back to SQS
                    failed.update(lane[position:])
                    raise
                except Exception as exc:
                    log(
                        "record_failed",
                        level="ERROR",
                        message_id=records[index].get("messageId"),
                        error=type(exc).__name__,
                    )
                    failed.add(index)
                    if fifo:
                        failed.update(lane[position + 1 :])
                        return

        async def lane_worker() -> None:
            while work:
                await run_lane(work.popleft())

        with anyio.move_on_after(max(0.0, remaining - cancel_margin)) as scope:
            async with anyio.create_task_group() as group:
                for _ in range(min(max_concurrency, len(work))):
                    group.start_soon(lane_worker)
        if scope.cancelled_caught:
            # Lanes never picked up
            failed.update(i for lane in work for i in lane)
        return {
            "batchItemFailures": [{"itemIdentifier": message_id} for message_id in malformed]
            + [{"itemIdentifier": records[i]["messageId"]} for i in sorted(failed)]
        }

    def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        return shared_runner().run(handle(event, remaining_seconds(context, 900.0)))

    return handler


def _log_message(message: Message) -> None:
    from ._emf import log

    log("example_worker", message_id=message.message_id, body_bytes=len(message.body.encode()))


example_worker: LambdaHandler = worker(_log_message)
"""The template's default worker: logs each message's id and size (never the body), deletes it."""
