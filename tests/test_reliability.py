"""Reliability on in-memory fakes: throttles (AIMD), failure backoff, the visibility heartbeat
and lease loss, FIFO ordering, bad input, a deadline mid-run, and what the logs never say."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import random
import threading
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncloop import (
    BatchEntryFailure,
    CallableDispatcher,
    ConfigError,
    Consumer,
    ConsumerConfig,
    DispatchError,
    DispatchThrottled,
    HandlerFailed,
    LambdaConfig,
    LambdaDispatcher,
    Message,
)
from asyncloop._backoff import failure_visibility
from asyncloop._config import validate_queue_url
from asyncloop._payload import build_payload, queue_arn
from asyncloop.testing import FakeLambda, FakeQueue, FaultPlan


def drain_config(**overrides: Any) -> ConsumerConfig:
    values: dict[str, Any] = {
        "wait_time_seconds": 0,
        "until_empty": True,
        "ack_flush_interval": 0.005,
        "shutdown_grace": 5.0,
    }
    values.update(overrides)
    return ConsumerConfig(**values)


class VisibilityQueue(FakeQueue):
    """A FakeQueue that records every ChangeMessageVisibilityBatch call and can signal after
    a number of them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.visibility_calls: list[list[tuple[str, str, int]]] = []
        self.calls_wanted = 0
        self.enough_calls = anyio.Event()
        self.call_started = anyio.Event()

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> list[BatchEntryFailure]:
        self.visibility_calls.append(list(entries))
        self.call_started.set()
        try:
            return await super().change_visibility_batch(entries)
        finally:
            if self.calls_wanted and len(self.visibility_calls) >= self.calls_wanted:
                self.enough_calls.set()

    def timeouts(self) -> list[int]:
        return [timeout for call in self.visibility_calls for _, _, timeout in call]


# -- throttles: AIMD, in-process retries, quick release ------------------------------------


@pytest.mark.parametrize("adaptive", [True, False], ids=["aimd", "no-aimd-no-retries"])
@pytest.mark.asyncio
async def test_throttling_storm_with_max_receive_count_2(adaptive: bool) -> None:
    # GIVEN a function with reserved concurrency 4, a queue whose DLQ takes a message on its
    # third receive (maxReceiveCount = 2), and far more capacity than the function has
    dlq = FakeQueue(name="storm-dlq")
    queue = FakeQueue(
        name="storm", visibility_timeout=30, dead_letter_queue=dlq, max_receive_count=2
    )
    queue.send_many(f"job-{i}" for i in range(300))
    lam = FakeLambda(reserved_concurrency=4, latency=0.001)
    lam.add_function("worker")
    dispatcher = LambdaDispatcher(
        invoker=lam, config=LambdaConfig(function_name="worker"), queue_url=queue.queue_url
    )
    config = drain_config(
        max_in_flight=64,
        adaptive_concurrency=adaptive,
        throttle_retries=ConsumerConfig().throttle_retries if adaptive else 0,
        throttle_release_visibility=0,
    )

    # WHEN the consumer drains it
    with anyio.fail_after(60):
        stats = await Consumer(queue=queue, dispatcher=dispatcher, config=config).run()

    assert stats.throttled > 0
    if adaptive:
        # THEN the limit came down, every message ran once, none was received twice, and no
        # good message reached the DLQ
        assert stats.concurrency_limit_min <= 4
        assert len(dlq) == 0
        assert stats.deleted == 300
        assert stats.received == 300
        assert stats.retried > 0
        assert len(queue) == 0
        assert lam.peak_in_flight <= 4
    else:
        # (the control: without AIMD and in-process retries, a storm burns receive counts
        # and good messages end in the DLQ; this is what the test would catch)
        assert len(dlq) > 0
        assert stats.concurrency_limit_min == 64


@pytest.mark.asyncio
async def test_aimd_recovers_additively_after_the_storm() -> None:
    # GIVEN a target that throttles only the first 20 dispatches
    queue = FakeQueue()
    queue.send_many(f"m{i}" for i in range(400))
    throttles = 20

    async def handler(message: Message) -> None:
        nonlocal throttles
        await anyio.lowlevel.checkpoint()
        if throttles > 0:
            throttles -= 1
            raise DispatchThrottled("429", message_id=message.message_id)

    config = drain_config(max_in_flight=16, throttle_retry_delay=0.001)
    consumer = Consumer(queue=queue, dispatcher=CallableDispatcher(handler), config=config)
    with anyio.fail_after(30):
        stats = await consumer.run()
    # THEN the limit was cut, then grew back by one per window of successes
    assert stats.concurrency_limit_min < 16
    assert stats.concurrency_limit > stats.concurrency_limit_min
    assert stats.deleted == 400
    assert stats.received == 400


@pytest.mark.asyncio
async def test_throttled_message_is_released_for_a_quick_retry_when_retries_are_used_up() -> None:
    # GIVEN no in-process retries and a queue whose visibility timeout is long
    queue = VisibilityQueue(visibility_timeout=300)
    queue.send_many(["only"])
    attempts: list[int] = []

    async def handler(message: Message) -> None:
        attempts.append(message.receive_count)
        if len(attempts) == 1:
            raise DispatchThrottled("429", message_id=message.message_id)

    config = drain_config(throttle_retries=0, throttle_release_visibility=0)
    with anyio.fail_after(10):
        stats = await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=config
        ).run()
    # THEN it was released at once (visibility 0), not left for 300 s, and came back
    assert queue.timeouts() == [0]
    assert attempts == [1, 2]
    assert (stats.released, stats.deleted, stats.throttled) == (1, 1, 1)


@pytest.mark.asyncio
async def test_throttle_release_visibility_is_jittered_within_its_bound() -> None:
    queue = VisibilityQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(30))

    async def handler(message: Message) -> None:
        # Each message once: until_empty waits for a throttled message to come back.
        if message.receive_count == 1:
            raise DispatchThrottled("429", message_id=message.message_id)

    config = drain_config(throttle_retries=0, throttle_release_visibility=3)
    with anyio.fail_after(10):
        stats = await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=config
        ).run()
    timeouts = queue.timeouts()
    assert stats.throttled == 30
    assert len(timeouts) == 30
    assert all(0 <= t <= 3 for t in timeouts)
    assert stats.deleted == 30
    assert all(1 <= len(call) <= 10 for call in queue.visibility_calls)


# -- failure backoff ------------------------------------------------------------------------


@pytest.mark.parametrize("receive_count", [1, 2, 3, 5, 8, 20])
def test_failure_visibility_is_exponential_jittered_and_capped(receive_count: int) -> None:
    rng = random.Random(receive_count)
    base, cap = 2.0, 100.0
    full = min(cap, base * 2 ** (receive_count - 1))
    values = {failure_visibility(receive_count, base, cap, rng) for _ in range(200)}
    assert min(values) >= math.ceil(full / 2) - 1
    assert max(values) <= math.ceil(full)
    assert min(values) >= 1
    if full >= 8:
        assert len(values) > 1  # jittered, not one value


@pytest.mark.asyncio
async def test_failed_dispatch_sets_backoff_visibility_in_batches_of_at_most_ten() -> None:
    # GIVEN 25 messages that all fail, with a failure backoff of base 4 s
    queue = VisibilityQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(25))

    async def handler(message: Message) -> None:
        raise HandlerFailed("no")

    config = drain_config(failure_backoff_base=4.0, failure_backoff_cap=60.0)
    with anyio.fail_after(10):
        stats = await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=config
        ).run()
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

    async def handler(message: Message) -> None:
        raise HandlerFailed("no")

    with anyio.fail_after(10):
        stats = await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=drain_config()
        ).run()
    assert stats.failed == 1
    assert queue.visibility_calls == []
    assert queue.in_flight_count == 1


@pytest.mark.asyncio
async def test_per_entry_visibility_failures_are_retried() -> None:
    # GIVEN visibility changes whose entries fail transiently a third of the time
    faults = FaultPlan(entry_failures={"ChangeMessageVisibilityBatch": 0.3}, seed=11)
    queue = VisibilityQueue(visibility_timeout=300, faults=faults)
    queue.send_many(f"m{i}" for i in range(40))

    async def handler(message: Message) -> None:
        raise HandlerFailed("no")

    config = drain_config(failure_backoff_base=2.0, delete_attempts=5)
    with anyio.fail_after(10):
        stats = await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=config
        ).run()
    # THEN the failed entries were sent again, and (nearly) all backoffs went through
    assert faults.injected["ChangeMessageVisibilityBatch:entry"] > 0
    assert len(queue.timeouts()) > 40
    assert stats.backed_off + stats.release_failed == 40
    assert stats.backed_off >= 38


# -- the visibility heartbeat and lease loss ------------------------------------------------


@pytest.mark.asyncio
async def test_heartbeat_extends_a_long_dispatch_so_it_is_not_redelivered() -> None:
    # GIVEN a 1 s visibility timeout and a dispatch that outlives it several times
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("slow")
    queue.calls_wanted = 4
    release = anyio.Event()

    async def handler(message: Message) -> None:
        await release.wait()

    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(handler),
        config=ConsumerConfig(wait_time_seconds=0, receivers=2),
        visibility_timeout=1,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        # WHEN four extensions have been sent (about two timeouts' worth)
        with anyio.fail_after(20):
            await queue.enough_calls.wait()
        # THEN it was never visible again nor received twice
        assert queue.receive_count_of(message_id) == 1
        assert queue.visible_count == 0
        release.set()
        consumer.stop()
    assert consumer.stats.extended >= 3
    assert consumer.stats.deleted == 1
    assert all(call and len(call) <= 10 for call in queue.visibility_calls)
    assert set(queue.timeouts()) == {1}


@pytest.mark.asyncio
async def test_heartbeat_stops_at_the_extension_cap(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN at most 1 s of extension on a 1 s timeout
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("slow")
    redelivered = anyio.Event()
    release = anyio.Event()

    async def handler(message: Message) -> None:
        if message.receive_count > 1:
            redelivered.set()
            return
        await release.wait()

    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(handler),
        config=ConsumerConfig(wait_time_seconds=0, max_visibility_extension=1.0),
        visibility_timeout=1,
    )
    caplog.set_level(logging.WARNING, logger="asyncloop")
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        # WHEN the cap is used up, SQS hands the message out again
        with anyio.fail_after(20):
            await redelivered.wait()
        release.set()
        consumer.stop()
    assert consumer.stats.extended <= 2
    assert "extension cap" in caplog.text
    assert message_id in caplog.text


@pytest.mark.asyncio
async def test_lease_lost_cancels_the_dispatch_and_counts_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a long dispatch whose receipt handle another receive invalidates
    caplog.set_level(logging.DEBUG, logger="asyncloop")
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("BODY-TEXT-123")
    started = anyio.Event()
    cancelled = anyio.Event()
    handles: list[str] = []

    async def handler(message: Message) -> None:
        handles.append(message.receipt_handle)
        started.set()
        try:
            await anyio.sleep_forever()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(handler),
        config=ConsumerConfig(wait_time_seconds=0, receivers=1),
        visibility_timeout=1,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        with anyio.fail_after(10):
            await started.wait()
        # WHEN the handle goes stale (as if the message was received elsewhere)
        queue._messages[message_id].receipt = "someone-else"
        # THEN the next extension finds it invalid and the dispatch is cancelled
        with anyio.fail_after(20):
            await cancelled.wait()
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert consumer.stats.lease_lost == 1
        assert consumer.in_flight == 0
        consumer.stop()
    stats = consumer.stats
    # nothing deleted or released with the stale handle; the consumer kept running
    assert (stats.deleted, stats.released, stats.release_failed, stats.failed) == (0, 0, 0, 0)
    # and the log names the message, never its body or handle
    assert f"lease of message {message_id} lost" in caplog.text
    assert "BODY-TEXT" not in caplog.text
    assert handles[0] not in caplog.text


@pytest.mark.asyncio
async def test_an_extension_answered_after_the_release_cannot_hide_the_message() -> None:
    # GIVEN a long dispatch and a first extension call that answers slowly
    slow = [0.3]

    def latency() -> float:
        return slow.pop() if slow else 0.0

    queue = VisibilityQueue(visibility_timeout=1, latency={"ChangeMessageVisibilityBatch": latency})
    queue.send("long")

    async def handler(message: Message) -> None:
        await anyio.sleep_forever()

    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(handler),
        config=ConsumerConfig(wait_time_seconds=0, shutdown_grace=0.0),
        visibility_timeout=1,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        # WHEN it stops while the extension is under way (the release overtakes it)
        with anyio.fail_after(10):
            await queue.call_started.wait()
        consumer.stop()
    # THEN the message is visible: SQS (and the fake) refuse to extend a message that is no
    # longer in flight, and the consumer, no longer holding it, ignores that answer
    assert queue.timeouts() == [1, 0]
    assert queue.visible_count == 1
    assert consumer.stats.released == 1
    assert consumer.stats.lease_lost == 0


class CancelWatcher:
    """Wraps a dispatcher; `cancelled` is set when a dispatch is cancelled."""

    operation = None

    def __init__(self, inner: CallableDispatcher) -> None:
        self.inner = inner
        self.cancelled = anyio.Event()

    async def dispatch(self, message: Message) -> None:
        try:
            await self.inner.dispatch(message)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.mark.asyncio
async def test_lease_lost_in_a_sync_handler_stops_waiting_for_its_thread() -> None:
    # GIVEN a sync handler (run in a worker thread) that outlives its lease
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("stolen")
    started = anyio.Event()
    gate = threading.Event()

    def handler(message: Message) -> None:
        anyio.from_thread.run_sync(started.set)
        gate.wait(30)

    watcher = CancelWatcher(CallableDispatcher(handler))
    consumer = Consumer(
        queue=queue,
        dispatcher=watcher,
        config=ConsumerConfig(wait_time_seconds=0, receivers=1),
        visibility_timeout=1,
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)
            with anyio.fail_after(10):
                await started.wait()
            # WHEN the handle goes stale
            queue._messages[message_id].receipt = "someone-else"
            # THEN the consumer stops waiting for the thread and frees the slot
            with anyio.fail_after(20):
                await watcher.cancelled.wait()
            assert consumer.in_flight == 0
            consumer.stop()
    finally:
        gate.set()
    assert consumer.stats.lease_lost == 1
    assert consumer.stats.deleted == 0


# -- FIFO -------------------------------------------------------------------------------------


@dataclasses.dataclass
class FifoLog:
    events: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)
    running: dict[str, str] = dataclasses.field(default_factory=dict)
    overlaps: int = 0


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    group_sizes=st.lists(st.integers(1, 8), min_size=1, max_size=5),
    receivers=st.integers(1, 4),
    max_in_flight=st.integers(1, 16),
    batch_size=st.integers(1, 10),
    data=st.data(),
)
def test_fifo_order_within_a_group_holds_under_concurrency(
    group_sizes: list[int], receivers: int, max_in_flight: int, batch_size: int, data: Any
) -> None:
    # GIVEN a FIFO queue with several groups, handlers that take a drawn number of steps, and
    # some messages that are throttled (released at once) a drawn number of times
    total = sum(group_sizes)
    steps = data.draw(st.lists(st.integers(0, 3), min_size=total, max_size=total))
    throttles = data.draw(st.lists(st.integers(0, 2), min_size=total, max_size=total))
    order: dict[str, list[str]] = {}
    n = 0
    plan: dict[str, tuple[int, int]] = {}
    for g, size in enumerate(group_sizes):
        for k in range(size):
            body = f"g{g}-{k}"
            order.setdefault(f"g{g}", []).append(body)
            plan[body] = (steps[n], throttles[n])
            n += 1
    log = FifoLog()
    done = set()
    all_done: list[anyio.Event] = []

    async def handler(message: Message) -> None:
        group = message.group_id
        assert group is not None
        if group in log.running:
            log.overlaps += 1
        log.running[group] = message.body
        try:
            log.events.append(("start", message.body, message.receive_count))
            step_count, throttle_count = plan[message.body]
            for _ in range(step_count):
                await anyio.lowlevel.checkpoint()
            if message.receive_count <= throttle_count:
                log.events.append(("throttled", message.body, message.receive_count))
                raise DispatchThrottled("429", message_id=message.message_id)
            log.events.append(("ok", message.body, message.receive_count))
            done.add(message.body)
            if len(done) == total:
                all_done[0].set()
        finally:
            del log.running[group]

    config = ConsumerConfig(
        wait_time_seconds=0,
        receivers=receivers,
        max_in_flight=max_in_flight,
        batch_size=batch_size,
        ack_flush_interval=0.001,
        throttle_retries=0,
        throttle_release_visibility=0,
    )

    async def main() -> Consumer:
        queue = FakeQueue(name="orders.fifo", visibility_timeout=30)
        for bodies in order.values():
            for body in bodies:
                queue.send(body, group_id=body.split("-")[0], deduplication_id=body)
        all_done.append(anyio.Event())
        consumer = Consumer(queue=queue, dispatcher=CallableDispatcher(handler), config=config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)
            with anyio.fail_after(30):
                await all_done[0].wait()
            consumer.stop()
        # every delete flushed on stop
        assert len(queue) == 0
        return consumer

    consumer = anyio.run(main)

    # THEN no two messages of a group ran at once, each group's successes came in send order,
    # and no message started before the one ahead of it in its group had succeeded
    assert log.overlaps == 0
    successes = [body for kind, body, _ in log.events if kind == "ok"]
    assert sorted(successes) == sorted(plan)
    for bodies in order.values():
        assert [b for b in successes if b in bodies] == bodies
    succeeded: set[str] = set()
    for kind, body, _ in log.events:
        group, position = body.rsplit("-", 1)
        if kind == "start" and int(position) > 0:
            assert f"{group}-{int(position) - 1}" in succeeded, (body, log.events)
        if kind == "ok":
            succeeded.add(body)
    assert consumer.stats.deleted == total


@pytest.mark.asyncio
async def test_fifo_failure_releases_the_rest_of_its_group_unstarted() -> None:
    # GIVEN one group of five in one batch, and a handler that fails the second
    queue = VisibilityQueue(name="jobs.fifo", visibility_timeout=300)
    for k in range(5):
        queue.send(f"m{k}", group_id="g", deduplication_id=f"m{k}")
    queue.send("other", group_id="h", deduplication_id="other")
    started: list[str] = []

    async def handler(message: Message) -> None:
        started.append(message.body)
        if message.body == "m1":
            raise HandlerFailed("no")

    with anyio.fail_after(10):
        stats = await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=drain_config()
        ).run()
    # THEN m2..m4 never started and were released at once; m1 waits out its visibility,
    # still ahead of them; the other group was not held up
    assert [b for b in started if b.startswith("m")] == ["m0", "m1"]
    assert "other" in started
    assert queue.timeouts() == [0, 0, 0]
    assert stats.released == 3
    assert len(queue) == 4  # m1..m4
    assert queue.visible_count == 3


@pytest.mark.parametrize("payload", ["seed", "sqs-event"])
@pytest.mark.asyncio
async def test_fifo_group_and_deduplication_ids_reach_the_payload(payload: str) -> None:
    queue = FakeQueue(name="jobs.fifo")
    queue.send("x", group_id="g-1", deduplication_id="d-1")
    (message,) = await queue.receive(max_messages=1, wait_time_seconds=0)
    record = json.loads(
        build_payload(message, queue_url=queue.queue_url, payload=payload)  # type: ignore[arg-type]
    )["Records"][0]
    if payload == "seed":
        assert record["sqs"]["MessageGroupId"] == "g-1"
        assert record["sqs"]["MessageDeduplicationId"] == "d-1"
    else:
        assert record["attributes"]["MessageGroupId"] == "g-1"
        assert record["attributes"]["MessageDeduplicationId"] == "d-1"
        assert record["eventSourceARN"].endswith(":jobs.fifo")


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


@pytest.mark.asyncio
async def test_huge_bodies_reach_an_in_process_handler_intact() -> None:
    queue = FakeQueue()
    body = "é" * (3 * 1024 * 1024)
    queue.send(body)
    seen: list[int] = []

    async def handler(message: Message) -> None:
        seen.append(len(message.body))

    with anyio.fail_after(10):
        stats = await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=drain_config()
        ).run()
    assert seen == [len(body)]
    assert stats.deleted == 1


_INVALID: list[tuple[str, object, str]] = [
    ("receivers", 0, "1..1024"),
    ("receivers", 1025, "1..1024"),
    ("receivers", 2.5, "1..1024"),
    ("receivers", "4", "a number"),
    ("max_in_flight", 0, "1..100000"),
    ("max_in_flight", 100_001, "1..100000"),
    ("batch_size", 0, "1..10"),
    ("batch_size", 11, "1..10"),
    ("batch_size", True, "a number"),
    ("wait_time_seconds", -1, "0..20"),
    ("wait_time_seconds", 21, "0..20"),
    ("wait_time_seconds", 1.5, "0..20"),
    ("visibility_timeout", -1, "0..43200"),
    ("visibility_timeout", 43_201, "0..43200"),
    ("delete_by", "lambda", "consumer, worker"),
    ("until_empty", "yes", "true or false"),
    ("duration", 0, ">= 0.001"),
    ("duration", -5.0, ">= 0.001"),
    ("deadline", -1.0, ">= 0.0"),
    ("shutdown_grace", -1.0, "0.0..3600.0"),
    ("shutdown_grace", 3601.0, "0.0..3600.0"),
    ("ack_flush_interval", 0.0, "0.001..10.0"),
    ("ack_flush_interval", 11.0, "0.001..10.0"),
    ("ack_flush_timeout", 0.05, "0.1..300.0"),
    ("ack_flush_timeout", 301.0, "0.1..300.0"),
    ("max_pending_acks", 9, "10..1000000"),
    ("max_pending_acks", 1_000_001, "10..1000000"),
    ("delete_concurrency", 0, "1..256"),
    ("delete_concurrency", 257, "1..256"),
    ("delete_attempts", 0, "1..10"),
    ("delete_attempts", 11, "1..10"),
    ("failure_backoff_base", -1.0, "0.0..43200.0"),
    ("failure_backoff_base", 43_201.0, "0.0..43200.0"),
    ("failure_backoff_cap", 0.5, "1.0..43200.0"),
    ("failure_backoff_cap", 43_201.0, "1.0..43200.0"),
    ("adaptive_concurrency", 1, "true or false"),
    ("throttle_retries", -1, "0..100"),
    ("throttle_retries", 101, "0..100"),
    ("throttle_retry_delay", -0.1, "0.0..10.0"),
    ("throttle_retry_delay", 11.0, "0.0..10.0"),
    ("throttle_release_visibility", -1, "0..900"),
    ("throttle_release_visibility", 901, "0..900"),
    ("max_visibility_extension", -1.0, "0.0..43200.0"),
    ("max_visibility_extension", 50_000.0, "0.0..43200.0"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), _INVALID)
def test_every_invalid_consumer_config_value_names_field_range_and_value(
    field: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        ConsumerConfig(**{field: value})  # type: ignore[arg-type]
    assert raised.value.field == field
    text = str(raised.value)
    assert text.startswith(field)
    assert allowed in text
    assert repr(value) in text


def test_every_consumer_config_field_is_covered_by_the_invalid_values() -> None:
    covered = {field for field, _, _ in _INVALID}
    assert covered == {f.name for f in dataclasses.fields(ConsumerConfig)}


def test_failure_backoff_cap_below_base_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"failure_backoff_cap must be >= failure_backoff_base"):
        ConsumerConfig(failure_backoff_base=10.0, failure_backoff_cap=5.0)


@pytest.mark.parametrize(
    "url",
    [
        "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
        "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo",
        "http://127.0.0.1:4566/000000000000/jobs",
        "http://sqs.us-east-1.localhost:9324/000000000000/jobs-dlq",
    ],
)
def test_valid_queue_urls_pass_and_give_arns(url: str) -> None:
    assert validate_queue_url(url) == url
    arn = queue_arn(url, "us-east-1")
    assert arn.startswith("arn:aws:sqs:")
    assert arn.endswith(":" + url.rsplit("/", 1)[-1])


@pytest.mark.parametrize(
    "url",
    [
        "",
        "jobs",
        "arn:aws:sqs:us-east-1:123456789012:jobs",
        "ftp://sqs.us-east-1.amazonaws.com/123456789012/jobs",
        "https://sqs.us-east-1.amazonaws.com/jobs",
        "https://sqs.us-east-1.amazonaws.com/123456789012/jo bs",
        "https://sqs.us-east-1.amazonaws.com/123456789012/" + "a" * 81,
        "https://sqs.us-east-1.amazonaws.com/123456789012/jobs?x=1",
    ],
)
def test_invalid_queue_urls_are_refused_by_the_consumer(url: str) -> None:
    class Odd(FakeQueue):
        @property
        def queue_url(self) -> str:
            return url

    with pytest.raises(ConfigError, match="queue_url must look like"):
        Consumer(queue=Odd(), dispatcher=CallableDispatcher(lambda m: None))


# -- a deadline mid-run -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_deadline_mid_run_loses_nothing() -> None:
    # GIVEN a FIFO queue (so some held messages wait, unstarted, behind their group's head),
    # dispatches that never finish, quick ones whose deletes sit in a partial batch, and a
    # deadline
    queue = FakeQueue(name="lambda.fifo", visibility_timeout=300)
    for g in range(6):
        for k in range(3):
            queue.send(f"g{g}-{k}", group_id=f"g{g}", deduplication_id=f"g{g}-{k}")
    finished: list[str] = []
    stuck = anyio.Event()

    async def handler(message: Message) -> None:
        group, k = message.body.split("-")
        if int(group[1:]) % 2 and k == "1":
            # odd groups: the second message never finishes; the third never starts
            stuck.set()
            await anyio.sleep_forever()
        finished.append(message.body)

    config = ConsumerConfig(
        wait_time_seconds=0,
        ack_flush_interval=10.0,
        shutdown_grace=0.05,
        deadline=anyio.current_time() + 0.5,
    )
    # WHEN the deadline passes while dispatches are in flight
    with anyio.fail_after(10):
        stats = await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=config
        ).run()
    # THEN finished ones were deleted (the partial batch flushed), and every other message is
    # visible again at once: lost = 0
    assert stuck.is_set()
    assert stats.deleted == len(finished) == 12
    assert len(queue) == 6
    assert queue.visible_count == 6
    assert stats.released == 6


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


# -- the acker under retries while closing ------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_acker_close_with_entries_still_buffered_does_not_spin() -> None:
    # GIVEN 50 deletes buffered, calls one at a time and slow, and the interval flusher running
    from asyncloop._acker import Acker
    from asyncloop._stats import Stats

    queue = FakeQueue(latency={"DeleteMessageBatch": 0.02})
    queue.send_many(f"m{i}" for i in range(50))
    messages: list[Message] = []
    while len(messages) < 50:
        messages += await queue.receive(max_messages=10, wait_time_seconds=0)
    stats = Stats()
    acker = Acker(queue, stats, flush_interval=0.001, max_pending=100, concurrency=1, attempts=3)
    for message in messages:
        acker.delete_nowait(message)
    # WHEN the acker closes while calls wait their turn with entries still buffered (a spin
    # in the flusher never yields, so only the test timeout would end it)
    async with anyio.create_task_group() as tg:
        acker.bind(tg)
        tg.start_soon(acker.tick)
        await anyio.lowlevel.checkpoint()
        with anyio.CancelScope(shield=True), anyio.fail_after(10):
            await acker.close()
        tg.cancel_scope.cancel()
    # THEN every delete went out
    assert stats.deleted == 50
    assert len(queue) == 0


@pytest.mark.asyncio
async def test_dispatch_api_calls_are_counted_per_attempt() -> None:
    # GIVEN a Lambda dispatcher whose first invoke is throttled
    queue = FakeQueue()
    queue.send_many(f"m{i}" for i in range(5))
    lam = FakeLambda(faults=FaultPlan(throttles={"Invoke": 1.0}))
    lam.add_function("worker")
    dispatcher = LambdaDispatcher(
        invoker=lam, config=LambdaConfig(function_name="worker"), queue_url=queue.queue_url
    )
    consumer = Consumer(queue=queue, dispatcher=dispatcher, config=drain_config())
    original = dispatcher.dispatch

    async def dispatch(message: Message) -> None:
        # throttled once per message, then accepted
        assert lam.faults is not None
        lam.faults.throttles = {"Invoke": 1.0 if message.message_id not in seen else 0.0}
        seen.add(message.message_id)
        await original(message)

    seen: set[str] = set()
    dispatcher.dispatch = dispatch  # type: ignore[method-assign]
    with anyio.fail_after(10):
        stats = await consumer.run()
    # THEN Invoke was counted for every attempt, the retries included
    assert stats.api_calls["Invoke"] == 10
    assert stats.retried == 5
    assert stats.deleted == 5


# -- a bad day in the consumer core: odd exceptions, odd attributes -----------------------------


@pytest.mark.asyncio
async def test_a_handler_raising_cancelled_error_itself_fails_that_message_only() -> None:
    # GIVEN a handler that raises CancelledError itself on one message (as
    # when a library cancels a future the handler awaited), and succeeds otherwise
    queue = FakeQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(200))
    handled: list[str] = []

    async def handler(message: Message) -> None:
        if message.body == "m3":
            raise asyncio.CancelledError
        handled.append(message.body)

    # WHEN the consumer runs until the queue is empty
    with anyio.fail_after(20):
        stats = await Consumer(
            queue=queue,
            dispatcher=CallableDispatcher(handler),
            config=drain_config(max_in_flight=10),
        ).run()

    # THEN that was m3's failure, not the run's end: every other message was handled and
    # deleted, and m3 stays in the queue for SQS to deliver again
    assert stats.failed == 1
    assert sorted(handled) == sorted(f"m{i}" for i in range(200) if i != 3)
    assert stats.deleted == 199
    assert len(queue) == 1
    assert queue.in_flight_count == 1


class FlakyReceiveQueue(FakeQueue):
    """A FakeQueue (standing for a custom Queue) whose first receives raise non-AWS errors."""

    def __init__(self, errors: list[BaseException], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors = errors

    async def receive(
        self, *, max_messages: int, wait_time_seconds: int, visibility_timeout: int | None = None
    ) -> list[Message]:
        if self.errors:
            raise self.errors.pop(0)
        return await super().receive(
            max_messages=max_messages,
            wait_time_seconds=wait_time_seconds,
            visibility_timeout=visibility_timeout,
        )


@pytest.mark.asyncio
async def test_non_aws_receive_errors_back_off_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a queue whose first receives raise a dropped connection and a bug's KeyError
    caplog.set_level(logging.WARNING, logger="asyncloop")
    queue = FlakyReceiveQueue(
        [ConnectionResetError(104, "Connection reset by peer"), KeyError("Messages")]
    )
    queue.send_many(f"m{i}" for i in range(15))

    async def handler(message: Message) -> None:
        return None

    # WHEN the consumer runs until the queue is empty
    with anyio.fail_after(20):
        stats = await Consumer(
            queue=queue,
            dispatcher=CallableDispatcher(handler),
            config=drain_config(receivers=1),
        ).run()

    # THEN it backed off, logged each error with its type and text, and drained the queue
    assert queue.errors == []
    assert stats.deleted == 15
    assert len(queue) == 0
    assert "ConnectionResetError: [Errno 104] Connection reset by peer" in caplog.text
    assert "KeyError: 'Messages'" in caplog.text


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
    with anyio.fail_after(20):
        stats = await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=drain_config()
        ).run()

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
    with anyio.fail_after(20):
        stats = await Consumer(
            queue=queue, dispatcher=CallableDispatcher(handler), config=drain_config()
        ).run()

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


@pytest.mark.asyncio
async def test_a_dispatcher_that_swallows_the_lease_lost_cancel_leaves_no_trace() -> None:
    # GIVEN a dispatcher that turns any cancellation into a failure of its own
    queue = VisibilityQueue(visibility_timeout=1)
    message_id = queue.send("swallowed")
    started = anyio.Event()
    cancelled = anyio.Event()

    class SwallowingDispatcher:
        operation = None

        async def dispatch(self, message: Message) -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            except asyncio.CancelledError:
                cancelled.set()
                raise HandlerFailed("interrupted", message_id=message.message_id) from None

    consumer = Consumer(
        queue=queue,
        dispatcher=SwallowingDispatcher(),
        config=ConsumerConfig(wait_time_seconds=0, receivers=1, failure_backoff_base=5.0),
        visibility_timeout=1,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        with anyio.fail_after(10):
            await started.wait()
        # WHEN the lease is lost (the handle went stale) and the cancel is swallowed
        queue._messages[message_id].receipt = "someone-else"
        with anyio.fail_after(20):
            await cancelled.wait()
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        # THEN the message is forgotten: not in the lost set, not held, not failed or
        # backed off with a handle that is no longer ours
        lost = set(consumer._lost)
        consumer.stop()
    stats = consumer.stats
    assert lost == set()
    assert consumer.in_flight == 0
    assert (stats.lease_lost, stats.failed, stats.backed_off) == (1, 0, 0)
