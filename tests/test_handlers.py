"""The SQS-side Lambda handlers (`asyncloop._handlers`): the worker and the SQS batch handler.

The handlers are synchronous (Lambda calls them so) and run their work on the process's one
event loop, so these tests are plain functions, not coroutines. They call the handlers through
the public facade, `asyncloop.lambda_handler`, as a user does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _events import LambdaContext, seed_payload, sqs_event, sqs_record

import asyncloop.lambda_handler as lh
from asyncloop import ConfigError, HandlerFailed, Message
from asyncloop._handlers import _log_message

pytestmark = pytest.mark.usefixtures("lambda_process")


# -- worker ---------------------------------------------------------------------------------


class Deletes:
    def __init__(self, *, succeed: bool = True) -> None:
        self.calls: list[tuple[str, str]] = []
        self.succeed = succeed

    async def __call__(self, queue_url: str, receipt_handle: str) -> bool:
        self.calls.append((queue_url, receipt_handle))
        return self.succeed


def test_worker_deletes_the_message_when_the_function_returns(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN a worker around a function that records its messages
    seen: list[Message] = []
    deletes = Deletes()
    handler = lh.worker(seen.append, delete=deletes)
    event = seed_payload("hello", message_id="m-1", receipt_handle="rh-1")
    # WHEN Lambda invokes it with the seed's payload
    result = handler(event, context())
    # THEN the function got the message and the message was deleted with its receipt handle
    assert [(m.message_id, m.body) for m in seen] == [("m-1", "hello")]
    assert deletes.calls == [(event["Records"][0]["sqs"]["QueueUrl"], "rh-1")]
    assert result == {"deleted": ["m-1"], "delete_failed": []}


def test_worker_leaves_the_message_and_raises_when_the_function_fails(
    context: Callable[..., LambdaContext],
) -> None:
    def fail(message: Message) -> None:
        raise RuntimeError("boom")

    deletes = Deletes()
    handler = lh.worker(fail, delete=deletes)

    with pytest.raises(HandlerFailed, match="1 of 1 messages failed") as caught:
        handler(seed_payload("x", message_id="m-2"), context())

    assert caught.value.message_id == "m-2"
    assert deletes.calls == []


def test_worker_awaits_a_coroutine_returned_by_a_sync_wrapper(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN a worker around a lambda whose async function fails
    async def fail(message: Message) -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("boom")

    deletes = Deletes()
    handler = lh.worker(lambda m: fail(m), delete=deletes)
    # WHEN it runs, THEN the failure counts and the message is not deleted
    with pytest.raises(HandlerFailed, match="1 of 1 messages failed"):
        handler(seed_payload("x", message_id="m-5"), context())
    assert deletes.calls == []


def test_worker_refuses_a_body_that_does_not_match_its_md5(
    context: Callable[..., LambdaContext],
) -> None:
    seen: list[Message] = []
    deletes = Deletes()
    handler = lh.worker(seen.append, delete=deletes)

    with pytest.raises(HandlerFailed):
        handler(seed_payload("x", md5="0" * 32), context())

    assert seen == []
    assert deletes.calls == []


def test_worker_reports_a_failed_delete_without_running_the_function_again(
    context: Callable[..., LambdaContext],
) -> None:
    handler = lh.worker(lambda m: None, delete=Deletes(succeed=False))

    result = handler(seed_payload("x", message_id="m-3"), context())

    assert result == {"deleted": [], "delete_failed": ["m-3"]}


def test_worker_rejects_a_payload_that_is_not_the_seeds(
    context: Callable[..., LambdaContext],
) -> None:
    handler = lh.worker(lambda m: None, delete=Deletes())

    with pytest.raises(ValueError, match="Records"):
        handler({"hello": "world"}, context())


def test_warm_invocations_share_one_event_loop(context: Callable[..., LambdaContext]) -> None:
    # GIVEN an async function that notes the running loop
    loops: list[asyncio.AbstractEventLoop] = []

    async def note(message: Message) -> None:
        loops.append(asyncio.get_running_loop())

    handler = lh.worker(note, delete=Deletes())
    # WHEN the handler is invoked twice
    handler(seed_payload("a"), context())
    handler(seed_payload("b"), context())
    # THEN both ran on the same, still open, loop (asyncio.run would have closed the first)
    assert len(loops) == 2
    assert loops[0] is loops[1]
    assert not loops[0].is_closed()


def test_example_worker_logs_ids_not_bodies(
    context: Callable[..., LambdaContext], capsys: pytest.CaptureFixture[str]
) -> None:
    handler = lh.worker(_log_message, delete=Deletes())

    handler(seed_payload("TOP-SECRET", message_id="m-4"), context())

    out = capsys.readouterr().out
    assert "m-4" in out
    assert "TOP-SECRET" not in out


# -- sqs_batch_handler ----------------------------------------------------------------------


def test_batch_concurrency_is_bounded(context: Callable[..., LambdaContext]) -> None:
    # GIVEN 20 records and a function that yields while it runs
    running = 0
    peak = 0

    async def work(message: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        running -= 1

    handler = lh.sqs_batch_handler(work, max_concurrency=3)
    # WHEN the batch runs
    result = handler(sqs_event([sqs_record(f"b{i}") for i in range(20)]), context())
    # THEN at most (and here exactly) 3 ran at once, and none failed
    assert peak == 3
    assert result == {"batchItemFailures": []}


def test_batch_reports_exactly_the_failed_records(context: Callable[..., LambdaContext]) -> None:
    records = [sqs_record(body, message_id=body) for body in ("ok-1", "bad-1", "ok-2", "bad-2")]

    def work(message: Message) -> None:
        if message.body.startswith("bad"):
            raise ValueError(message.body)

    result = lh.sqs_batch_handler(work, max_concurrency=2)(sqs_event(records), context())

    assert result == {
        "batchItemFailures": [{"itemIdentifier": "bad-1"}, {"itemIdentifier": "bad-2"}]
    }


def test_batch_awaits_a_coroutine_returned_by_a_sync_function(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN a lambda around an async function that fails on one record and notes the others
    ran: list[str] = []

    async def work(message: Message) -> None:
        await anyio.lowlevel.checkpoint()
        if message.body == "bad":
            raise ValueError("bad")
        ran.append(message.body)

    records = [sqs_record(b, message_id=b) for b in ("ok", "bad")]
    # WHEN the batch runs
    result = lh.sqs_batch_handler(lambda m: work(m))(sqs_event(records), context())
    # THEN the coroutines ran, and the failed one is reported for redelivery
    assert ran == ["ok"]
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}]}


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ([], "must be a JSON object"),
        ({"Records": "x"}, "must have a 'Records' list"),
        ({"Records": [{}]}, r"Records\[0\].messageId must be a non-empty string"),
        ({"Records": ["x"]}, r"Records\[0\] must be an object"),
    ],
)
def test_batch_rejects_a_malformed_event_with_a_clear_error(
    event: Any, error: str, context: Callable[..., LambdaContext]
) -> None:
    handler = lh.sqs_batch_handler(lambda message: None)
    with pytest.raises(ValueError, match=error):
        handler(event, context())


def test_batch_reports_malformed_records_as_failures_and_runs_the_rest(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN one good record and one whose body is missing
    good = sqs_record("fine", message_id="good")
    broken = {**sqs_record("x", message_id="broken"), "body": None}
    seen: list[str] = []
    # WHEN the batch runs
    result = lh.sqs_batch_handler(lambda m: seen.append(m.message_id))(
        sqs_event([good, broken]), context()
    )
    # THEN the good one ran and the broken one goes back to SQS
    assert seen == ["good"]
    assert result == {"batchItemFailures": [{"itemIdentifier": "broken"}]}


def test_fifo_fails_the_rest_of_a_group_after_its_first_failure(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN a FIFO batch of two groups, the first failing on its second record
    records = [
        sqs_record("a1", message_id="a1", group_id="A", queue="work.fifo"),
        sqs_record("b1", message_id="b1", group_id="B", queue="work.fifo"),
        sqs_record("a2", message_id="a2", group_id="A", queue="work.fifo"),
        sqs_record("b2", message_id="b2", group_id="B", queue="work.fifo"),
        sqs_record("a3", message_id="a3", group_id="A", queue="work.fifo"),
    ]
    calls: list[str] = []

    async def work(message: Message) -> None:
        calls.append(message.body)
        await anyio.lowlevel.checkpoint()
        if message.body == "a2":
            raise RuntimeError("a2 failed")

    # WHEN it runs
    result = lh.sqs_batch_handler(work, max_concurrency=4)(sqs_event(records), context())
    # THEN a2 and the unstarted a3 are reported; group B is untouched; each group kept its order
    assert result == {"batchItemFailures": [{"itemIdentifier": "a2"}, {"itemIdentifier": "a3"}]}
    assert "a3" not in calls
    assert [c for c in calls if c.startswith("a")] == ["a1", "a2"]
    assert [c for c in calls if c.startswith("b")] == ["b1", "b2"]


def test_message_groups_on_a_standard_queue_keep_no_order_and_fail_alone(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN a standard queue's batch whose records carry a group id (fair queues)
    records = [sqs_record(b, message_id=b, group_id="A") for b in ("x1", "bad", "x2")]

    def work(message: Message) -> None:
        if message.body == "bad":
            raise ValueError("bad")

    result = lh.sqs_batch_handler(work)(sqs_event(records), context())

    # THEN only the failed record is reported
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}]}


def test_records_not_started_before_the_deadline_are_failures(
    context: Callable[..., LambdaContext],
) -> None:
    calls: list[str] = []
    handler = lh.sqs_batch_handler(lambda m: calls.append(m.body), start_margin=2.0)

    result = handler(sqs_event([sqs_record("x", message_id="x")]), context(remaining_s=2.0))

    assert result == {"batchItemFailures": [{"itemIdentifier": "x"}]}
    assert calls == []


def test_a_record_still_running_at_the_deadline_is_cancelled_and_reported(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN one lane: a quick record, one that never finishes, one behind it
    records = [sqs_record(b, message_id=b) for b in ("quick", "stuck", "behind")]
    cancelled: list[str] = []

    async def work(message: Message) -> None:
        if message.body == "stuck":
            try:
                await anyio.Event().wait()
            finally:
                cancelled.append(message.body)

    handler = lh.sqs_batch_handler(work, max_concurrency=1, start_margin=0.2, cancel_margin=0.1)
    # WHEN the invocation's time runs out
    result = handler(sqs_event(records), context(remaining_s=0.3))
    # THEN the stuck one was cancelled; it and the unstarted one are failures, the quick one not
    assert cancelled == ["stuck"]
    assert result == {
        "batchItemFailures": [{"itemIdentifier": "stuck"}, {"itemIdentifier": "behind"}]
    }


def test_batch_handler_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"max_concurrency must be in 1\.\.10000, got 0"):
        lh.sqs_batch_handler(lambda m: None, max_concurrency=0)
