"""The periodic summary line of a running consumer (`asyncloop run --stats-interval`).

Every `interval` seconds one INFO record on the ``asyncloop.stats`` logger, for example::

    stats: 412.0 received/s, 410.5 succeeded/s, failed 0, throttled 3, in flight 212,
    limit 256, p50 41.2 ms, p99 180.0 ms (last 30.0 s)

Rates, counts and percentiles cover the interval since the previous line (the first line:
since the reporter started); in flight and the dispatch limit are the values at the time of
the line. The same fields travel as a dict in the record's ``asyncloop_stats`` attribute, for
log handlers that emit JSON.

The reporter only reads the counters, so it costs nothing per message: one snapshot of the
latency histogram (a few kilobytes) per line.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

import anyio
from anyio.abc import TaskStatus

from ._histogram import LatencyHistogram
from ._stats import Stats

__all__ = ("Observed", "StatsReporter")

logger = logging.getLogger("asyncloop.stats")


class Observed(Protocol):
    """What the reporter and the metrics collector read: a `Consumer` satisfies it."""

    @property
    def stats(self) -> Stats: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def concurrency_limit(self) -> int: ...


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1e3, 3)


class StatsReporter:
    """Logs one summary line of `observed` every `interval` seconds while `run()` runs.

    `run()` never returns on its own: start it in a task group and cancel the group when the
    consumer stopped (the CLI does). `line()` builds one line's fields and resets the
    interval; call it directly to log a line at another moment.
    """

    def __init__(self, observed: Observed, interval: float) -> None:
        if isinstance(interval, bool) or not math.isfinite(interval) or interval <= 0:
            raise ValueError(f"interval must be a number of seconds > 0, got {interval!r}")
        self._observed = observed
        self._interval = interval
        self._started = False
        self._at = 0.0
        self._received = 0
        self._succeeded = 0
        self._failed = 0
        self._throttled = 0
        self._latency = LatencyHistogram()

    def _reset(self, now: float) -> None:
        stats = self._observed.stats
        self._started = True
        self._at = now
        self._received = stats.received
        self._succeeded = stats.succeeded
        self._failed = stats.failed
        self._throttled = stats.throttled
        self._latency = stats.receive_to_done.copy()

    def line(self) -> dict[str, Any]:
        """The fields of one line, over the interval since the last call (then reset)."""
        now = anyio.current_time()
        if not self._started:
            self._reset(now)
        observed = self._observed
        stats = observed.stats
        elapsed = now - self._at
        latency = stats.receive_to_done.since(self._latency)

        def rate(count: int) -> float:
            return round(count / elapsed, 3) if elapsed > 0 else 0.0

        fields: dict[str, Any] = {
            "interval_s": round(elapsed, 3),
            "received_per_s": rate(stats.received - self._received),
            "succeeded_per_s": rate(stats.succeeded - self._succeeded),
            "failed": stats.failed - self._failed,
            "throttled": stats.throttled - self._throttled,
            "in_flight": observed.in_flight,
            "concurrency_limit": observed.concurrency_limit,
            "p50_ms": _ms(latency.percentile(50.0)),
            "p99_ms": _ms(latency.percentile(99.0)),
        }
        self._reset(now)
        return fields

    def log(self) -> None:
        """Log one line now (and start a new interval)."""
        fields = self.line()

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        logger.info(
            "stats: %.1f received/s, %.1f succeeded/s, failed %d, throttled %d, in flight %d, "
            "limit %d, p50 %s, p99 %s (last %.1f s)",
            fields["received_per_s"],
            fields["succeeded_per_s"],
            fields["failed"],
            fields["throttled"],
            fields["in_flight"],
            fields["concurrency_limit"],
            ms(fields["p50_ms"]),
            ms(fields["p99_ms"]),
            fields["interval_s"],
            extra={"asyncloop_stats": fields},
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Log a line every `interval` seconds until cancelled (the first interval starts
        when ``task_group.start(reporter.run)`` returns)."""
        self._reset(anyio.current_time())
        task_status.started()
        while True:
            # Sleep to the next multiple of the interval, so a slow log call does not drift.
            await anyio.sleep(max(0.0, self._at + self._interval - anyio.current_time()))
            self.log()
