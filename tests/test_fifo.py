"""FIFO queues: order within a group under concurrency, a failure releases the rest of its
group unstarted, group and deduplication ids reach the payload."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _consumer_helpers import VisibilityQueue, drain, running, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncloop import (
    CallableDispatcher,
    Consumer,
    ConsumerConfig,
    DispatchThrottled,
    HandlerFailed,
    Message,
)
from asyncloop._payload import build_payload
from asyncloop.testing import FakeQueue

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
        async with running(consumer):
            await wait_for(all_done[0], 30)
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

    stats = await drain(queue, handler)
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
