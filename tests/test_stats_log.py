"""The periodic stats line: one INFO record per interval, with the interval's rates and counts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from asyncloop import CallableDispatcher, Consumer, ConsumerConfig, Message, Stats
from asyncloop._cli_observe import _Observe, _observing
from asyncloop._stats_log import StatsReporter
from asyncloop.testing import FakeQueue

pytestmark = pytest.mark.asyncio


@dataclass
class Observed:
    stats: Stats = field(default_factory=Stats)
    in_flight: int = 0
    concurrency_limit: int = 0


class Lines(logging.Handler):
    """Collects the ``asyncloop.stats`` records; `wait(n)` returns once n have arrived."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        # Logged from the event loop's thread (the reporter's task), so the Event is safe.
        self.records.append(record)
        self._arrived.set()

    async def wait(self, n: int) -> list[dict[str, Any]]:
        while len(self.records) < n:
            self._arrived.clear()
            await self._arrived.wait()
        return [r.asyncloop_stats for r in self.records[:n]]  # type: ignore[attr-defined]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    stats_logger = logging.getLogger("asyncloop.stats")
    stats_logger.addHandler(handler)
    old_level = stats_logger.level
    stats_logger.setLevel(logging.INFO)
    yield handler
    stats_logger.removeHandler(handler)
    stats_logger.setLevel(old_level)


async def test_each_line_reports_the_rates_and_counts_of_its_own_interval(lines: Lines) -> None:
    # GIVEN a consumer's counters and a reporter every 50 ms
    observed = Observed(in_flight=7, concurrency_limit=64)
    stats = observed.stats
    async with anyio.create_task_group() as group:
        await group.start(StatsReporter(observed, 0.05).run)
        # WHEN the first interval sees 100 received, 90 succeeded (10 ms each), 2 failed,
        # 3 throttled
        stats.received += 100
        stats.succeeded += 90
        stats.failed += 2
        stats.throttled += 3
        for _ in range(90):
            stats.receive_to_done.record(0.010)
        (first,) = await lines.wait(1)
        # and the second only 10 more received, 10 succeeded at 200 ms
        stats.received += 10
        stats.succeeded += 10
        for _ in range(10):
            stats.receive_to_done.record(0.200)
        second = (await lines.wait(2))[1]
        group.cancel_scope.cancel()

    # THEN the first line has the first interval's rates and counts, and the gauges
    assert first["received_per_s"] * first["interval_s"] == pytest.approx(100, rel=0.05)
    assert first["succeeded_per_s"] * first["interval_s"] == pytest.approx(90, rel=0.05)
    assert (first["failed"], first["throttled"]) == (2, 3)
    assert (first["in_flight"], first["concurrency_limit"]) == (7, 64)
    assert first["p50_ms"] == pytest.approx(10.0, rel=0.01)
    assert first["p99_ms"] == pytest.approx(10.0, rel=0.01)
    # and the second only its own: no failures carried over, the 200 ms latencies alone
    assert second["received_per_s"] * second["interval_s"] == pytest.approx(10, rel=0.05)
    assert (second["failed"], second["throttled"]) == (0, 0)
    assert second["p50_ms"] == pytest.approx(200.0, rel=0.01)
    # and the message says the same in words, at INFO
    record = lines.records[0]
    assert record.levelno == logging.INFO
    text = record.getMessage()
    assert "failed 2, throttled 3, in flight 7, limit 64, p50 10.0 ms" in text


async def test_an_interval_without_traffic_has_no_percentiles(lines: Lines) -> None:
    # GIVEN a reporter over a consumer that does nothing
    async with anyio.create_task_group() as group:
        await group.start(StatsReporter(Observed(), 0.02).run)
        # WHEN a line is logged
        (line,) = await lines.wait(1)
        group.cancel_scope.cancel()
    # THEN its rates are 0 and its percentiles absent
    assert line["received_per_s"] == 0.0
    assert line["p50_ms"] is None
    assert "p50 -, p99 -" in lines.records[0].getMessage()


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf")])
async def test_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ValueError, match="interval must be a number of seconds > 0"):
        StatsReporter(Observed(), interval)


async def test_run_logs_lines_of_a_real_consumer_and_stops_with_it(lines: Lines) -> None:
    # GIVEN 5 messages whose handler holds them until a stats line showed them in flight
    queue = FakeQueue()
    queue.send_many([f"m{i}" for i in range(5)])
    shown = asyncio.Event()

    async def handler(message: Message) -> None:
        await shown.wait()

    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(handler),
        config=ConsumerConfig(max_in_flight=8, until_empty=True, wait_time_seconds=0),
    )

    async def watch() -> None:
        n = 1
        while True:
            line = (await lines.wait(n))[-1]
            if line["in_flight"] == 5:
                shown.set()
                return
            n += 1

    # WHEN the CLI's observer runs a 20 ms stats line around the run (leaving it cancels the
    # reporter: were it left running, this block would never end and the test would time out)
    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        async with _observing(consumer, _Observe(stats_interval=0.02)):
            stats = await consumer.run()

    # THEN a line showed the 5 messages in flight under the limit of 8, all 5 succeeded,
    assert stats.succeeded == 5
    assert shown.is_set()
    limits = {r.asyncloop_stats["concurrency_limit"] for r in lines.records}  # type: ignore[attr-defined]
    assert limits == {8}
