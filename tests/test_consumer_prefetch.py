"""`prefetch`: messages held beyond `max_in_flight`, received ahead so that a finished dispatch
starts the next one without a receive round trip. Dispatches never exceed `max_in_flight`;
held messages are at most the dispatch limit plus `prefetch`; the heartbeat keeps a waiting
prefetched message's lease; a stop releases the unstarted ones at once and drains only what
runs; a throttle moves the held bound with the limit."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _consumer_helpers import (
    Gate,
    RecordingQueue,
    VisibilityQueue,
    consumer_of,
    drain_config,
    run_virtual,
    running,
    wait_for,
)

from asyncloop import CallableDispatcher, Consumer, Message, Stats
from asyncloop._dispatch_limit import DispatchLimit
from asyncloop._slots import Slots
from asyncloop.testing import FakeQueue


@pytest.mark.asyncio
async def test_prefetch_holds_more_but_never_dispatches_beyond_max_in_flight() -> None:
    # GIVEN more messages than max_in_flight + prefetch, and a handler that blocks
    queue = RecordingQueue()
    queue.send_many(f"m{i}" for i in range(100))
    gate = Gate(7)
    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(gate),
        config=drain_config(max_in_flight=7, prefetch=5, receivers=3, batch_size=5),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        # WHEN the dispatches and the prefetch fill up
        await wait_for(gate.started)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        # THEN 7 run, 12 are held, and no receive asked beyond the free capacity
        assert gate.running == 7
        assert consumer.in_flight == 12
        assert sum(queue.receive_asks) == 12
        # ... and the run drains the queue once the handler lets go
        gate.release.set()

    assert gate.peak == 7
    assert consumer.stats.peak_in_flight == 12
    assert consumer.stats.succeeded == consumer.stats.deleted == 100


def _drain_time(prefetch: int) -> tuple[float, Stats]:
    """Virtual seconds to drain 20 messages at max_in_flight=2: receives take 10 ms, each
    dispatch 50 ms."""

    async def main() -> tuple[float, Stats]:
        queue = FakeQueue(latency={"ReceiveMessage": 0.01})
        queue.send_many(f"m{i}" for i in range(20))

        async def handler(message: Message) -> None:
            await anyio.sleep(0.05)

        consumer = Consumer(
            queue=queue,
            dispatcher=CallableDispatcher(handler),
            config=drain_config(max_in_flight=2, prefetch=prefetch, receivers=1, batch_size=2),
        )
        started = anyio.current_time()
        stats = await consumer.run()
        assert stats.last_success_at is not None
        return stats.last_success_at - started, stats

    result: tuple[float, Stats] = run_virtual(main)
    return result


def test_prefetch_hides_the_receive_round_trip_between_dispatches() -> None:
    # WHEN the same queue is drained without and with a prefetch of one batch (virtual time)
    without, stats_without = _drain_time(0)
    with_prefetch, stats_with = _drain_time(2)
    # THEN without it every pair of dispatches waits for a receive (10 x (10 + 50 ms));
    # with it only the first does (10 ms + 10 x 50 ms)
    assert without == pytest.approx(0.60, abs=0.005)
    assert with_prefetch == pytest.approx(0.51, abs=0.005)
    assert stats_without.deleted == stats_with.deleted == 20


@pytest.mark.asyncio
async def test_a_prefetched_message_waiting_past_its_visibility_timeout_keeps_its_lease() -> None:
    # GIVEN a 1 s visibility timeout, one dispatch slot held for about three timeouts, and a
    # prefetched message waiting behind it
    queue = VisibilityQueue(visibility_timeout=1)
    first = queue.send("first")
    waiting = queue.send("waiting")
    queue.calls_wanted = 4
    gate = Gate(1)
    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(gate),
        config=drain_config(max_in_flight=1, prefetch=1, receivers=1),
        visibility_timeout=1,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_for(gate.started)
        # WHEN four extensions have been sent (the waiting message's among them)
        await wait_for(queue.enough_calls, 20)
        # THEN neither message was visible again nor received twice, and only one runs
        assert gate.running == 1
        assert consumer.in_flight == 2
        assert queue.receive_count_of(first) == queue.receive_count_of(waiting) == 1
        assert queue.visible_count == 0
        gate.release.set()
    assert consumer.stats.deleted == 2
    extended = {handle for call in queue.visibility_calls for _, handle, _ in call}
    assert len(extended) == 2
    assert gate.seen == ["first", "waiting"]


@pytest.mark.asyncio
async def test_a_stop_releases_prefetched_messages_unstarted() -> None:
    # GIVEN dispatches that never finish, a prefetch of 3 filled, and a short grace period
    queue = FakeQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(5))
    gate = Gate(2)
    consumer = consumer_of(queue, gate, max_in_flight=2, prefetch=3, shutdown_grace=0.05)
    async with running(consumer):
        await wait_for(gate.started)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert consumer.in_flight == 5
        # WHEN stopped
        consumer.stop()
    # THEN the 2 running were cancelled and the 3 waiting never started: all 5 visible again
    assert len(gate.seen) == 2
    assert consumer.stats.released == 5
    assert consumer.stats.deleted == 0
    assert queue.visible_count == 5


@pytest.mark.asyncio
async def test_a_stop_drains_what_runs_and_does_not_start_what_waits() -> None:
    # GIVEN 2 dispatches under way and 3 prefetched messages waiting behind them
    queue = FakeQueue(visibility_timeout=300)
    queue.send_many(f"m{i}" for i in range(5))
    gate = Gate(2)
    consumer = consumer_of(queue, gate, max_in_flight=2, prefetch=3, shutdown_grace=5.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_for(gate.started)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert consumer.in_flight == 5
        # WHEN stopped, and the two running dispatches then finish
        consumer.stop()
        gate.release.set()
    # THEN those two were deleted, and the three waiting were released without starting
    assert len(gate.seen) == 2
    assert consumer.stats.dispatched == 2
    assert consumer.stats.deleted == 2
    assert consumer.stats.released == 3
    assert queue.visible_count == 3


def test_a_throttle_moves_the_held_bound_with_the_dispatch_limit() -> None:
    # GIVEN a dispatch limit of 8 with a prefetch of 3 over it
    capacity = Slots(11)
    limit = DispatchLimit(8, capacity, 10, Stats(), prefetch=3)
    # WHEN a throttle halves the limit, THEN the capacity is the new limit plus the prefetch
    limit.throttled(limit.epoch)
    assert (limit.value, limit.slots.total, capacity.total) == (4, 4, 7)
    # WHEN successes bring it back up by one
    for _ in range(4):
        limit.succeeded()
    assert (limit.value, capacity.total) == (5, 8)


def test_prefetch_reads_from_its_variable_and_the_flag() -> None:
    from asyncloop import ConsumerConfig
    from asyncloop._cli import build_parser

    assert ConsumerConfig.from_env({"ASYNCLOOP_PREFETCH": "20"}).prefetch == 20
    assert ConsumerConfig().prefetch == 0
    args: Any = build_parser().parse_args(
        ["run", "--queue-url", "http://127.0.0.1:1/1/q", "--handler", "m:f", "--prefetch", "10"]
    )
    assert args.prefetch == 10
