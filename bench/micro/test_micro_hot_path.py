"""Microbenchmarks of the consumer's hot path, per message or per call.

Run: ``.venv/bin/pytest bench/micro --benchmark-enable`` (not collected by the default test
run, whose testpaths is ``tests``; not part of CI's pass/fail). Each benchmark names its unit:
a round of 1,000 (or 10,000) messages reports the time for all of them: divide for one.

- ack coalescer: `Acker.delete` of 1,000 messages into batches of 10 against a queue that
  answers at once (buffering, batch calls, settling);
- dispatch bookkeeping: a whole `Consumer` moving 10,000 messages from an instant queue
  through a no-op dispatcher (capacity, hand-off, workers, stats, acks): the consumer's own cost;
- capacity: one take/give cycle of the receivers' capacity (`Slots`);
- payload building: `build_payload` in both formats for one 128-byte message;
- histogram: `LatencyHistogram.record` and `Stats.count_call`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from asyncloop import BatchEntryFailure, Consumer, ConsumerConfig, LatencyHistogram, Message, Stats
from asyncloop._acker import Acker
from asyncloop._payload import build_payload
from asyncloop._slots import Slots

pytestmark = pytest.mark.microbench

MESSAGES = 1_000
T = TypeVar("T")
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/bench"
BODY = '{"job":1,"pad":"' + "x" * 109 + '"}'


def make_messages(n: int) -> list[Message]:
    return [
        Message(
            message_id=f"00000000-0000-0000-0000-{i:012d}",
            receipt_handle=f"AQEB{i:0>120}",
            body=BODY,
            md5_of_body="0" * 32,
            attributes={"SentTimestamp": "1700000000000", "ApproximateReceiveCount": "1"},
        )
        for i in range(n)
    ]


class InstantQueue:
    """A queue that answers at once: hands out `n` prepared messages, accepts every delete."""

    def __init__(self, messages: list[Message]) -> None:
        self._messages = messages
        self._next = 0

    @property
    def queue_url(self) -> str:
        return QUEUE_URL

    async def receive(
        self, *, max_messages: int, wait_time_seconds: int, visibility_timeout: int | None = None
    ) -> Sequence[Message]:
        start = self._next
        self._next = min(len(self._messages), start + max_messages)
        return self._messages[start : self._next]

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> Sequence[BatchEntryFailure]:
        return ()

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> Sequence[BatchEntryFailure]:
        return ()


def rounds(benchmark: BenchmarkFixture, workload: Callable[[], T]) -> T:
    """30 timed rounds of `workload` (one event-loop run each), after 2 warm-up rounds."""
    result: T = benchmark.pedantic(workload, rounds=30, warmup_rounds=2)  # type: ignore[no-untyped-call]
    return result


class NoopDispatcher:
    operation = None

    async def dispatch(self, message: Message) -> None:
        return None


def test_ack_coalescer_1000_deletes(benchmark: BenchmarkFixture, runner: asyncio.Runner) -> None:
    messages = make_messages(MESSAGES)

    async def workload() -> int:
        stats = Stats()
        acker = Acker(
            InstantQueue([]),
            stats,
            flush_interval=0.05,
            max_pending=1000,
            concurrency=8,
            attempts=3,
        )
        async with anyio.create_task_group() as tg:
            acker.bind(tg)
            for message in messages:
                await acker.delete(message)
            await acker.close()
            # bind() started long-lived senders in tg: stop them, as the Consumer does
            tg.cancel_scope.cancel()
        return stats.deleted

    deleted = rounds(benchmark, lambda: runner.run(workload()))
    assert deleted == MESSAGES


@pytest.mark.parametrize("max_in_flight", [16, 256])
def test_consumer_bookkeeping_10000_messages(
    benchmark: BenchmarkFixture, runner: asyncio.Runner, max_in_flight: int
) -> None:
    # 10,000 per round, so starting the consumer (task groups, up to C workers) is amortised
    messages = make_messages(10 * MESSAGES)

    async def workload() -> int:
        consumer = Consumer(
            queue=InstantQueue(messages),
            dispatcher=NoopDispatcher(),
            config=ConsumerConfig(
                receivers=4, max_in_flight=max_in_flight, wait_time_seconds=0, until_empty=True
            ),
        )
        stats = await consumer.run()
        return stats.deleted

    deleted = rounds(benchmark, lambda: runner.run(workload()))
    assert deleted == 10 * MESSAGES


def test_capacity_take_give(benchmark: BenchmarkFixture, runner: asyncio.Runner) -> None:
    async def workload() -> None:
        capacity = Slots(256, low_water=10)
        for _ in range(MESSAGES):
            taken = await capacity.take(10)
            capacity.give(taken)

    rounds(benchmark, lambda: runner.run(workload()))


@pytest.mark.parametrize("payload", ["seed", "sqs-event"])
def test_build_payload(benchmark: BenchmarkFixture, payload: str) -> None:
    message = make_messages(1)[0]
    data = benchmark(build_payload, message, queue_url=QUEUE_URL, payload=payload)
    assert data.startswith(b'{"Records":[')


def test_histogram_record(benchmark: BenchmarkFixture) -> None:
    histogram = LatencyHistogram()
    benchmark(histogram.record, 0.0123)
    assert histogram.count > 0


def test_stats_count_call(benchmark: BenchmarkFixture) -> None:
    stats = Stats()
    benchmark(stats.count_call, "ReceiveMessage")
    assert stats.api_calls["ReceiveMessage"] > 0
