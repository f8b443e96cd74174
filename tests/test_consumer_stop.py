"""How a run ends: one deadline for the whole stop, and `until_empty` that neither stops early
(throttled messages still hidden) nor late (an idle long poll at the end).

These run on an event loop whose clock jumps to the next timer whenever nothing is ready, so
"the stop took 30 s" is an exact, repeatable figure that costs no real time, and a bound is
checked without a wall-clock threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _consumer_helpers import run_virtual, running

from asyncloop import (
    BatchEntryFailure,
    CallableDispatcher,
    Consumer,
    ConsumerConfig,
    DispatchThrottled,
    Message,
    Stats,
)
from asyncloop.testing import FakeQueue


class HangingQueue(FakeQueue):
    """A FakeQueue whose receives (after the first `answered`) and visibility changes never
    answer until `released` is set, which the tests do only after `run()` returned."""

    def __init__(self, *, answered: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answered = answered
        self.released = anyio.Event()
        self.receive_hanging = anyio.Event()

    async def receive(
        self, *, max_messages: int, wait_time_seconds: int, visibility_timeout: int | None = None
    ) -> list[Message]:
        if self.answered > 0:
            self.answered -= 1
            return await super().receive(
                max_messages=max_messages,
                wait_time_seconds=wait_time_seconds,
                visibility_timeout=visibility_timeout,
            )
        self.receive_hanging.set()
        await self.released.wait()
        return []

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> list[BatchEntryFailure]:
        await self.released.wait()
        return await super().change_visibility_batch(entries)


def test_stop_during_a_default_long_poll_takes_shutdown_grace_not_poll_plus_grace() -> None:
    # GIVEN the default config (wait 20 s, shutdown_grace 30 s, ack_flush_timeout 10 s), one
    # receiver whose next long poll is under way, and a handler that never finishes on its own
    config = ConsumerConfig(receivers=1)
    assert (config.wait_time_seconds, config.shutdown_grace, config.ack_flush_timeout) == (
        20,
        30.0,
        10.0,
    )

    async def main() -> tuple[float, Stats, int]:
        queue = FakeQueue(visibility_timeout=300)
        queue.send("slow")
        started = anyio.Event()
        finish = anyio.Event()

        async def handler(message: Message) -> None:
            started.set()
            await finish.wait()

        consumer = Consumer(queue=queue, dispatcher=CallableDispatcher(handler), config=config)
        async with running(consumer):
            await started.wait()
            await anyio.sleep(1)  # the receiver is 1 s into its 20 s long poll
            # WHEN the consumer is asked to stop
            stop_at = anyio.current_time()
            consumer.stop()
        took = consumer.stats.stopped_at - stop_at  # type: ignore[operator]
        finish.set()
        return took, consumer.stats, queue.visible_count

    took, stats, visible = run_virtual(main)

    # THEN the stop took shutdown_grace (the poll's 19 s were part of it, not added to it),
    # within shutdown_grace + ack_flush_timeout, and the cancelled message was released
    assert took <= config.shutdown_grace + config.ack_flush_timeout
    assert took == pytest.approx(config.shutdown_grace, abs=0.01)
    assert stats.released == 1
    assert visible == 1


def test_a_receive_that_never_answers_is_abandoned_at_the_one_stop_deadline() -> None:
    # GIVEN a receive under way that will never answer, a handler that never finishes, and a
    # release that never answers either
    config = ConsumerConfig(receivers=1, wait_time_seconds=0, shutdown_grace=5.0)

    async def main() -> tuple[float, Stats]:
        queue = HangingQueue(answered=1, visibility_timeout=300)
        queue.send("slow")
        started = anyio.Event()

        async def handler(message: Message) -> None:
            started.set()
            await queue.released.wait()

        consumer = Consumer(queue=queue, dispatcher=CallableDispatcher(handler), config=config)
        async with running(consumer):
            await started.wait()
            await queue.receive_hanging.wait()
            # WHEN the consumer is asked to stop
            stop_at = anyio.current_time()
            consumer.stop()
        took = consumer.stats.stopped_at - stop_at  # type: ignore[operator]
        queue.released.set()
        return took, consumer.stats

    took, stats = run_virtual(main)

    # THEN receivers and drain shared shutdown_grace, and the flush had ack_flush_timeout:
    # the stop took exactly their sum, however long each phase could have waited
    assert took == pytest.approx(config.shutdown_grace + config.ack_flush_timeout, abs=0.01)
    assert stats.deleted == 0


def test_until_empty_waits_for_throttled_messages_released_with_a_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a target that throttles every message's first delivery, no in-process retries,
    # and throttled messages released with a visibility of 1 s (the top of its 0..1 range)
    monkeypatch.setattr("asyncloop._dispatch_limit.random.randint", lambda low, high: high)
    config = ConsumerConfig(
        until_empty=True,
        wait_time_seconds=0,
        throttle_retries=0,
        throttle_release_visibility=1,
        receivers=2,
    )

    async def main() -> tuple[Stats, FakeQueue, list[str]]:
        queue = FakeQueue(visibility_timeout=30)
        queue.send_many(f"m{i}" for i in range(5))
        handled: list[str] = []

        async def handler(message: Message) -> None:
            if message.receive_count == 1:
                raise DispatchThrottled("429", message_id=message.message_id)
            handled.append(message.body)

        # WHEN it runs until the queue is empty
        with anyio.fail_after(600):
            stats = await Consumer(
                queue=queue, dispatcher=CallableDispatcher(handler), config=config
            ).run()
        return stats, queue, handled

    stats, queue, handled = run_virtual(main)

    # THEN it did not stop while they were hidden: each came back, succeeded and was deleted
    assert stats.throttled == 5
    assert sorted(handled) == [f"m{i}" for i in range(5)]
    assert stats.deleted == 5
    assert len(queue) == 0


def test_until_empty_with_the_default_long_poll_ends_promptly_and_throughput_ignores_the_tail() -> (
    None
):
    # GIVEN until_empty with the default 20 s long poll, four receivers, and three messages
    # whose work takes 0.1 s each
    config = ConsumerConfig(until_empty=True)
    assert config.wait_time_seconds == 20

    async def main() -> Stats:
        queue = FakeQueue()
        queue.send_many(["a", "b", "c"])

        async def handler(message: Message) -> None:
            await anyio.sleep(0.1)

        # WHEN it runs until the queue is empty
        with anyio.fail_after(600):
            return await Consumer(
                queue=queue, dispatcher=CallableDispatcher(handler), config=config
            ).run()

    stats = run_virtual(main)

    # THEN the run ended about a second after the last success, not after another 20 s poll,
    # and throughput is measured to the last success (3 messages in 0.1 s)
    assert stats.deleted == 3
    assert stats.duration_s < config.wait_time_seconds / 2
    assert stats.last_success_at is not None
    assert stats.started_at is not None
    assert stats.last_success_at - stats.started_at == pytest.approx(0.1, abs=0.01)
    assert stats.throughput_msgs_s == pytest.approx(30.0, rel=0.1)
    assert stats.to_dict()["duration_s"] == round(stats.duration_s, 6)


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
