"""Failed dispatches: the failure backoff (through the consumer), bad input, and what the logs
say (type and text, never bodies or receipt handles)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _consumer_helpers import VisibilityQueue, drain, drain_config, fail

from asyncloop import (
    CallableDispatcher,
    Consumer,
    DispatchError,
    DispatchThrottled,
    HandlerFailed,
    LambdaConfig,
    LambdaDispatcher,
    Message,
)
from asyncloop.testing import FakeLambda, FakeQueue, FaultPlan


@pytest.mark.asyncio
async def test_failed_dispatch_sets_backoff_visibility_in_batches_of_at_most_ten() -> None:
    # GIVEN 25 messages that all fail, with a failure backoff of base 4 s
    queue = VisibilityQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(25))

    stats = await drain(queue, fail, failure_backoff_base=4.0, failure_backoff_cap=60.0)
    # THEN each got a visibility of 2..4 s (first receive), sent in calls of <= 10 distinct Ids
    assert stats.failed == 25
    assert stats.backed_off == 25
    assert set(queue.timeouts()) <= {2, 3, 4}
    assert len(queue.timeouts()) == 25
    for call in queue.visibility_calls:
        ids = [entry_id for entry_id, _, _ in call]
        assert 1 <= len(ids) <= 10
        assert len(set(ids)) == len(ids)


@pytest.mark.asyncio
async def test_no_failure_backoff_leaves_visibility_alone() -> None:
    queue = VisibilityQueue(visibility_timeout=300)
    queue.send_many(["bad"])

    stats = await drain(queue, fail)
    assert stats.failed == 1
    assert queue.visibility_calls == []
    assert queue.in_flight_count == 1


@pytest.mark.asyncio
async def test_per_entry_visibility_failures_are_retried() -> None:
    # GIVEN visibility changes whose entries fail transiently a third of the time
    faults = FaultPlan(entry_failures={"ChangeMessageVisibilityBatch": 0.3}, seed=11)
    queue = VisibilityQueue(visibility_timeout=300, faults=faults)
    queue.send_many(f"m{i}" for i in range(40))

    stats = await drain(queue, fail, failure_backoff_base=2.0, delete_attempts=5)
    # THEN the failed entries were sent again, and (nearly) all backoffs went through
    assert faults.injected["ChangeMessageVisibilityBatch:entry"] > 0
    assert len(queue.timeouts()) > 40
    assert stats.backed_off + stats.release_failed == 40
    assert stats.backed_off >= 38


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_payload_over_the_invoke_limit_fails_backs_off_and_reaches_the_dlq() -> None:
    # GIVEN a body larger than an Event invoke takes, and a DLQ after 2 receives
    dlq = FakeQueue(name="big-dlq")
    queue = VisibilityQueue(visibility_timeout=0, dead_letter_queue=dlq, max_receive_count=2)
    queue.send("x" * (2 * 1024 * 1024))
    lam = FakeLambda()
    lam.add_function("worker")
    dispatcher = LambdaDispatcher(
        invoker=lam, config=LambdaConfig(function_name="worker"), queue_url=queue.queue_url
    )
    # WHEN it is consumed (visibility 0 on the queue: a failure returns at once)
    with anyio.fail_after(10):
        stats = await Consumer(queue=queue, dispatcher=dispatcher, config=drain_config()).run()
    # THEN it was never invoked, failed twice, and went to the DLQ by receive count
    assert sum(lam.invocations.values()) == 0
    assert stats.failed == 2
    assert len(queue) == 0
    assert len(dlq) == 1


@pytest.mark.asyncio
async def test_payload_too_large_gets_the_longest_backoff_at_once() -> None:
    queue = VisibilityQueue(visibility_timeout=30)
    queue.send("x" * (2 * 1024 * 1024))
    lam = FakeLambda()
    lam.add_function("worker")
    dispatcher = LambdaDispatcher(
        invoker=lam, config=LambdaConfig(function_name="worker"), queue_url=queue.queue_url
    )
    config = drain_config(failure_backoff_base=1.0, failure_backoff_cap=600.0)
    with anyio.fail_after(10):
        stats = await Consumer(queue=queue, dispatcher=dispatcher, config=config).run()
    assert stats.failed == 1
    assert queue.timeouts() == [600]


@pytest.mark.asyncio
async def test_body_with_a_lone_surrogate_fails_cleanly_without_quoting_it(
    make_message: Any,
) -> None:
    # SQS refuses such bodies on send; a custom Queue might still hand one over
    message = make_message("secret \ud800 text")
    lam = FakeLambda()
    lam.add_function("worker")
    dispatcher = LambdaDispatcher(
        invoker=lam,
        config=LambdaConfig(function_name="worker"),
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
    )
    with pytest.raises(DispatchError, match="cannot be encoded as UTF-8") as raised:
        await dispatcher.dispatch(message)
    assert "secret" not in str(raised.value)
    assert raised.value.message_id == message.message_id
    assert sum(lam.invocations.values()) == 0


# -- security: what the logs never say ---------------------------------------------------------


@pytest.mark.asyncio
async def test_logs_never_show_bodies_or_receipt_handles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN failures, throttles, delete and visibility faults, lease loss, all logged at DEBUG
    faults = FaultPlan(
        entry_failures={"DeleteMessageBatch": 0.3, "ChangeMessageVisibilityBatch": 0.3},
        errors={"DeleteMessageBatch": 0.1, "ReceiveMessage": 0.1},
        seed=5,
    )
    dlq = FakeQueue(name="sec-dlq")
    queue = VisibilityQueue(
        visibility_timeout=1, faults=faults, dead_letter_queue=dlq, max_receive_count=2
    )
    queue.send_many(f"SECRET-BODY-{i}" for i in range(60))
    handles: set[str] = set()

    async def handler(message: Message) -> None:
        handles.add(message.receipt_handle)
        n = int(message.body.rsplit("-", 1)[1])
        if n % 5 == 0:
            raise ValueError(f"cannot handle {message.body} ({message.receipt_handle})")
        if n % 5 == 1 and message.receive_count == 1:
            raise DispatchThrottled(f"429 for {message.body}", message_id=message.message_id)
        if n % 5 == 2:
            raise HandlerFailed(f"failed {message.body} {message.receipt_handle}")

    caplog.set_level(logging.DEBUG, logger="asyncloop")
    config = drain_config(failure_backoff_base=1.0, throttle_retries=1, delete_attempts=2)
    with anyio.fail_after(30):
        stats = await Consumer(
            queue=queue,
            dispatcher=CallableDispatcher(handler),
            config=config,
            visibility_timeout=1,
        ).run()
    assert stats.failed > 0
    assert stats.throttled > 0
    assert (
        faults.injected["DeleteMessageBatch:entry"] + faults.injected["DeleteMessageBatch:error"]
        > 0
    )
    text = caplog.text
    assert "dispatch of message" in text  # failures were logged, by id
    assert "SECRET-BODY" not in text
    for handle in handles:
        assert handle not in text
    for record in caplog.records:
        assert "SECRET-BODY" not in record.getMessage()


class GarbageTimestampQueue(FakeQueue):
    """A FakeQueue (standing for a custom Queue) that hands over unreadable attributes."""

    async def receive(
        self, *, max_messages: int, wait_time_seconds: int, visibility_timeout: int | None = None
    ) -> list[Message]:
        messages = await super().receive(
            max_messages=max_messages,
            wait_time_seconds=wait_time_seconds,
            visibility_timeout=visibility_timeout,
        )
        for message in messages:
            message.attributes = {**message.attributes, "SentTimestamp": "not-a-number"}
        return messages


@pytest.mark.asyncio
async def test_a_garbage_sent_timestamp_never_costs_the_delete() -> None:
    # GIVEN messages whose SentTimestamp cannot be read
    queue = GarbageTimestampQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(5))
    handled: list[str] = []

    async def handler(message: Message) -> None:
        handled.append(message.body)

    # WHEN the consumer runs until empty
    stats = await drain(queue, handler, within=20)

    # THEN each was handled once and deleted; only its send latency went unrecorded
    assert sorted(handled) == [f"m{i}" for i in range(5)]
    assert (stats.succeeded, stats.deleted, stats.failed) == (5, 5, 0)
    assert len(queue) == 0
    assert stats.receive_to_done.count == 5
    assert stats.send_to_done.count == 0


@pytest.mark.asyncio
async def test_a_failure_logs_type_and_text_at_warning_and_the_traceback_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a handler that fails with a message of its own, one that quotes the body and the
    # receipt handle, and one whose body is too short to cut out of the text
    caplog.set_level(logging.DEBUG, logger="asyncloop")
    queue = FakeQueue(visibility_timeout=300)
    queue.send_many(["order-0001-PRIVATE", "order-0002-PRIVATE", "ab"])
    handles: list[str] = []

    def lookup(message: Message) -> None:
        if message.body == "order-0001-PRIVATE":
            raise RuntimeError("database timeout after 3 tries")
        raise ValueError(f"cannot parse {message.body} ({message.receipt_handle})")

    async def handler(message: Message) -> None:
        handles.append(message.receipt_handle)
        lookup(message)

    # WHEN the consumer runs until empty
    stats = await drain(queue, handler, within=20)

    # THEN WARNING says why each failed, DEBUG adds the traceback, and neither says a body
    # or a receipt handle
    assert stats.failed == 3
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    debug = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "from RuntimeError: database timeout after 3 tries" in warnings
    assert "from ValueError: cannot parse <body> (<receipt handle>)" in warnings
    assert "from ValueError: <text withheld: it quotes the body>" in warnings
    assert "Traceback (most recent call last)" in debug
    assert "in lookup" in debug
    assert "RuntimeError: database timeout after 3 tries" in debug
    for record in caplog.records:
        text = record.getMessage()
        assert "PRIVATE" not in text
        assert "cannot parse ab" not in text
        for handle in handles:
            assert handle not in text
