"""The dispatch limit (AIMD) and throttled dispatches: the limit comes down in a storm and
recovers additively, throttles are retried in-process, then released for a quick retry."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from _consumer_helpers import VisibilityQueue, drain, drain_config, run_virtual

from asyncloop import (
    CallableDispatcher,
    Consumer,
    ConsumerConfig,
    DispatchThrottled,
    LambdaConfig,
    LambdaDispatcher,
    Message,
)
from asyncloop.testing import FakeLambda, FakeQueue

# -- throttles: AIMD, in-process retries, quick release ------------------------------------


@pytest.mark.parametrize("adaptive", [True, False], ids=["aimd", "no-aimd-no-retries"])
def test_throttling_storm_with_max_receive_count_2(adaptive: bool) -> None:
    # On the virtual clock: how many throttles a message meets depends on when its retries
    # land against the others' 1 ms invokes, which a loaded machine's clock would decide.
    run_virtual(lambda: _throttling_storm(adaptive))


async def _throttling_storm(adaptive: bool) -> None:
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
    # every throttled Invoke is an API error of that operation
    assert stats.api_errors.get("Invoke") == stats.throttled
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

    stats = await drain(queue, handler, throttle_retries=0, throttle_release_visibility=0)
    # THEN it was released at once (visibility 0), not left for 300 s, and came back
    assert queue.timeouts() == [0]
    assert attempts == [1, 2]
    assert (stats.released, stats.deleted, stats.throttled) == (1, 1, 1)


@pytest.mark.asyncio
async def test_throttle_release_visibility_is_jittered_within_its_bound() -> None:
    # GIVEN 30 messages, each throttled on its first receive, no in-process retries, and a
    # release visibility of at most 3 s
    queue = VisibilityQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(30))

    async def handler(message: Message) -> None:
        # Each message once: until_empty waits for a throttled message to come back.
        if message.receive_count == 1:
            raise DispatchThrottled("429", message_id=message.message_id)

    # WHEN the consumer drains the queue
    stats = await drain(queue, handler, throttle_retries=0, throttle_release_visibility=3)
    # THEN each message was released once with a visibility within 0..3 s, and those
    # visibilities vary (jittered, not one value). min()/max() of nothing raise, so the test
    # fails when no release was observed; 30 draws of 0..3 all equal: about 1 in 10**17.
    timeouts = queue.timeouts()
    assert stats.throttled == 30
    assert len(timeouts) == 30
    assert min(timeouts) >= 0
    assert max(timeouts) <= 3
    assert len(set(timeouts)) > 1
    assert stats.deleted == 30
    assert queue.visibility_calls
    assert all(1 <= len(call) <= 10 for call in queue.visibility_calls)
