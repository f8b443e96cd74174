"""Counters and latency histograms of one consumer run.

The histogram has fixed, log-spaced buckets (1% apart, 1 us to about 3 h), so recording is O(1)
and memory does not grow with the number of messages: a million-message run costs the same
few kilobytes as a hundred-message one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ("LatencyHistogram", "Stats")

# Bucket i holds values in [GROWTH**i, GROWTH**(i+1)) microseconds.
_GROWTH = 1.01
_SCALE = 1.0 / math.log(_GROWTH)
_BUCKETS = int(math.log(1e10) * _SCALE) + 2  # up to 1e10 us (about 2.8 h)


class LatencyHistogram:
    """Records durations in seconds; answers percentiles within 1% of the true value."""

    __slots__ = ("_counts", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def record(self, seconds: float) -> None:
        micros = seconds * 1e6
        index = int(math.log(micros) * _SCALE) if micros > 1.0 else 0
        self._counts[index if index < _BUCKETS else _BUCKETS - 1] += 1
        self.count += 1
        self.total += seconds
        if seconds < self.min:
            self.min = seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: LatencyHistogram) -> None:
        """Add `other`'s recordings to this one (for aggregating repeats or consumers)."""
        for i, n in enumerate(other._counts):
            if n:
                self._counts[i] += n
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float | None:
        """The `q`-th percentile (0 < q <= 100) in seconds, or None when nothing was recorded."""
        if not 0 < q <= 100:
            raise ValueError(f"q must be in (0, 100], got {q!r}")
        if self.count == 0:
            return None
        rank = math.ceil(self.count * q / 100.0)
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                if index == _BUCKETS - 1:
                    return self.max  # the overflow bucket has no middle
                # The bucket's geometric middle, clamped to what was really seen.
                middle = _GROWTH ** (index + 0.5) / 1e6 if index else 0.5e-6
                return min(max(middle, self.min), self.max)
        return self.max

    def to_state(self) -> dict[str, Any]:
        """Everything `from_state` needs to rebuild this histogram, JSON-ready (the buckets
        sparse: only the non-empty ones), for merging the runs of several processes."""
        return {
            "buckets": {str(i): n for i, n in enumerate(self._counts) if n},
            "count": self.count,
            "total": self.total,
            "min": None if self.count == 0 else self.min,
            "max": self.max,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LatencyHistogram:
        """The histogram `to_state` described; ValueError for a malformed state."""
        histogram = cls()
        try:
            for key, n in state["buckets"].items():
                index = int(key)
                if not 0 <= index < _BUCKETS or not isinstance(n, int) or n < 0:
                    raise ValueError(f"bad bucket {key!r}: {n!r}")
                histogram._counts[index] = n
            histogram.count = int(state["count"])
            histogram.total = float(state["total"])
            histogram.min = math.inf if state["min"] is None else float(state["min"])
            histogram.max = float(state["max"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a histogram state: {exc!r}") from None
        if sum(histogram._counts) != histogram.count:
            raise ValueError("histogram state: the buckets do not add up to its count")
        return histogram

    # -- read-only views (the periodic stats line, the Prometheus collector) -----------------

    def copy(self) -> LatencyHistogram:
        """An independent snapshot of this histogram."""
        other = LatencyHistogram()
        other._counts = self._counts.copy()
        other.count, other.total, other.min, other.max = self.count, self.total, self.min, self.max
        return other

    def since(self, earlier: LatencyHistogram) -> LatencyHistogram:
        """What was recorded after the snapshot `earlier` (a `copy()` of this histogram).

        The interval's min and max are not kept, so its percentiles are clamped to the
        whole run's min and max instead: still within the 1% of the bucket width.
        """
        other = LatencyHistogram()
        pairs = zip(self._counts, earlier._counts, strict=True)
        other._counts = [now - then for now, then in pairs]
        other.count = self.count - earlier.count
        other.total = self.total - earlier.total
        other.min, other.max = self.min, self.max
        return other

    def cumulative_counts(self, bounds: Sequence[float]) -> list[int]:
        """For each bound (seconds, ascending), how many recordings were surely <= it.

        A fine bucket counts under a bound when its upper edge is <= the bound, so a value
        within 1% below a bound may be counted under the next one (never under a smaller one).
        """
        out: list[int] = []
        seen = 0
        index = 0
        for bound in bounds:
            micros = bound * 1e6
            # Bucket i's upper edge is GROWTH**(i+1) us (bucket 0 also holds values below 1 us).
            while index < _BUCKETS - 1 and _GROWTH ** (index + 1) <= micros:
                seen += self._counts[index]
                index += 1
            out.append(seen)
        return out

    def summary_ms(self) -> dict[str, float | None]:
        """``{"p50", "p95", "p99", "max"}`` in milliseconds (None when empty)."""
        out: dict[str, float | None] = {}
        for name, q in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0)):
            value = self.percentile(q)
            out[name] = None if value is None else round(value * 1e3, 3)
        out["max"] = round(self.max * 1e3, 3) if self.count else None
        return out


# The integer counters of `Stats`, summed by `Stats.merged`.
_COUNTERS = (
    "received",
    "dispatched",
    "succeeded",
    "failed",
    "throttled",
    "deleted",
    "delete_failed",
    "released",
    "release_failed",
    "peak_in_flight",
    "retried",
    "backed_off",
    "extended",
    "extend_failed",
    "lease_lost",
    "concurrency_limit",
    "concurrency_limit_min",
)


class Stats:
    """What one consumer run did. Counters are plain attributes: read them at any time.

    - `received`: messages returned by ReceiveMessage.
    - `dispatched`: dispatches started; `succeeded` + `failed` of them finished.
    - `throttled`: dispatch attempts the target refused for capacity (each attempt: a message
      retried in-process after a throttle counts once per throttle; `failed` counts it only if
      it was finally released).
    - `retried`: in-process re-dispatches after a throttle (they cost no receive).
    - `backed_off`: failed messages whose visibility was set by the failure backoff.
    - `extended`: visibility extensions by the heartbeat; `extend_failed`: extensions that
      failed (the next beat tries again); `lease_lost`: messages whose receipt handle an
      extension found invalid (their dispatch was cancelled; SQS owns them again).
    - `dispatch_limit` / `dispatch_limit_min`: the adaptive dispatch limit now, and the
      lowest it reached (both `max_in_flight` when nothing was throttled); also readable as
      `concurrency_limit` / `concurrency_limit_min`, their former names (and the JSON keys).
    - `deleted`: messages deleted by the consumer; `delete_failed`: deletes given up after
      retries (the message comes back: a duplicate later, never a loss).
    - `released`: messages made visible again at once (unstarted at stop, or cancelled);
      `release_failed`: releases that failed (the message returns after its visibility timeout).
    - `api_calls`: calls made, by operation name (ReceiveMessage, DeleteMessageBatch, Invoke, ...).
    - `api_errors`: calls that failed as a whole (an AWS or transport error, throttles
      included), by operation name; per-entry failures of a batch call are not counted here.
    - `receive_to_done` / `send_to_done`: latency from receive (or from ``SentTimestamp``) to
      the dispatch's success (a message whose ``SentTimestamp`` cannot be read is left out of
      `send_to_done`, and still deleted).
    - `started_at` / `stopped_at` / `last_success_at`: the event loop's clock at the start of
      the run, at its end, and at the last successful dispatch (None before any).
    """

    __slots__ = (
        "api_calls",
        "api_errors",
        "backed_off",
        "delete_failed",
        "deleted",
        "dispatch_limit",
        "dispatch_limit_min",
        "dispatched",
        "extend_failed",
        "extended",
        "failed",
        "last_success_at",
        "lease_lost",
        "peak_in_flight",
        "receive_to_done",
        "received",
        "release_failed",
        "released",
        "retried",
        "send_to_done",
        "started_at",
        "stopped_at",
        "succeeded",
        "throttled",
    )

    def __init__(self) -> None:
        self.received = 0
        self.dispatched = 0
        self.succeeded = 0
        self.failed = 0
        self.throttled = 0
        self.deleted = 0
        self.delete_failed = 0
        self.released = 0
        self.release_failed = 0
        self.peak_in_flight = 0
        self.retried = 0
        self.backed_off = 0
        self.extended = 0
        self.extend_failed = 0
        self.lease_lost = 0
        self.dispatch_limit = 0
        self.dispatch_limit_min = 0
        self.api_calls: dict[str, int] = {}
        self.api_errors: dict[str, int] = {}
        self.receive_to_done = LatencyHistogram()
        self.send_to_done = LatencyHistogram()
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.last_success_at: float | None = None

    @property
    def concurrency_limit(self) -> int:
        """The former name of `dispatch_limit` (an alias, read and write)."""
        return self.dispatch_limit

    @concurrency_limit.setter
    def concurrency_limit(self, value: int) -> None:
        self.dispatch_limit = value

    @property
    def concurrency_limit_min(self) -> int:
        """The former name of `dispatch_limit_min` (an alias, read and write)."""
        return self.dispatch_limit_min

    @concurrency_limit_min.setter
    def concurrency_limit_min(self, value: int) -> None:
        self.dispatch_limit_min = value

    def count_call(self, operation: str, n: int = 1) -> None:
        self.api_calls[operation] = self.api_calls.get(operation, 0) + n

    def count_error(self, operation: str, n: int = 1) -> None:
        self.api_errors[operation] = self.api_errors.get(operation, 0) + n

    @property
    def duration_s(self) -> float:
        """Seconds from the start of the run to its end, the stop included (drain, final
        flush, releases); 0.0 until `run()` has returned."""
        if self.started_at is None or self.stopped_at is None:
            return 0.0
        return self.stopped_at - self.started_at

    @property
    def throughput_msgs_s(self) -> float:
        """Succeeded messages per second, from the start of the run to its last success: an
        idle tail (the last empty receives of `until_empty`, waiting for a `duration` to end)
        and the stop are not counted. 0.0 when nothing succeeded. Stats filled in by other code
        that does not set `last_success_at` are measured over `duration_s`."""
        if self.started_at is None:
            return 0.0
        end = self.last_success_at if self.last_success_at is not None else self.stopped_at
        busy = end - self.started_at if end is not None else 0.0
        return self.succeeded / busy if busy > 0 else 0.0

    def to_state(self) -> dict[str, Any]:
        """Everything `from_state` needs to rebuild these statistics, JSON-ready: counters,
        API calls, both histograms whole, and the clock readings. `asyncloop run --processes`
        children print it so the supervisor can `merged` them."""
        return {
            "counters": {name: getattr(self, name) for name in _COUNTERS},
            "api_calls": dict(self.api_calls),
            "api_errors": dict(self.api_errors),
            "receive_to_done": self.receive_to_done.to_state(),
            "send_to_done": self.send_to_done.to_state(),
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "last_success_at": self.last_success_at,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Stats:
        """The statistics `to_state` described; ValueError for a malformed state."""
        stats = cls()
        try:
            for name in _COUNTERS:
                value = state["counters"][name]
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"counter {name} must be an integer, got {value!r}")
                setattr(stats, name, value)
            stats.api_calls = {str(k): int(v) for k, v in state["api_calls"].items()}
            stats.api_errors = {str(k): int(v) for k, v in state.get("api_errors", {}).items()}
            stats.receive_to_done = LatencyHistogram.from_state(state["receive_to_done"])
            stats.send_to_done = LatencyHistogram.from_state(state["send_to_done"])
            for name in ("started_at", "stopped_at", "last_success_at"):
                value = state[name]
                setattr(stats, name, None if value is None else float(value))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a stats state: {exc!r}") from None
        return stats

    @classmethod
    def merged(cls, parts: Iterable[Stats]) -> Stats:
        """One summary of runs that went side by side (`asyncloop run --processes`).

        Counters and API calls are summed, and so are `peak_in_flight`, `concurrency_limit`
        and `concurrency_limit_min` (each process's own, added up: the peak and the lowest
        limit are upper bounds for the whole, since the processes need not peak together).
        Histograms are merged whole, so percentiles are the run's, not an average of each
        process's. Clocks are per process, so the merged run starts at 0.0, its duration is
        the longest part's, and its busy time (to the last success) is the longest part's:
        `throughput_msgs_s` is then the summed successes over that time.
        """
        out = cls()
        durations: list[float] = []
        busy: list[float] = []
        for part in parts:
            for name in _COUNTERS:
                setattr(out, name, getattr(out, name) + getattr(part, name))
            for operation, n in part.api_calls.items():
                out.count_call(operation, n)
            for operation, n in part.api_errors.items():
                out.count_error(operation, n)
            out.receive_to_done.merge(part.receive_to_done)
            out.send_to_done.merge(part.send_to_done)
            durations.append(part.duration_s)
            if part.started_at is not None and part.last_success_at is not None:
                busy.append(part.last_success_at - part.started_at)
        out.started_at = 0.0
        out.stopped_at = max(durations, default=0.0)
        out.last_success_at = max(busy) if busy else None
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json`` line)."""
        return {
            "received": self.received,
            "dispatched": self.dispatched,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "throttled": self.throttled,
            "deleted": self.deleted,
            "delete_failed": self.delete_failed,
            "released": self.released,
            "release_failed": self.release_failed,
            "peak_in_flight": self.peak_in_flight,
            "retried": self.retried,
            "backed_off": self.backed_off,
            "extended": self.extended,
            "extend_failed": self.extend_failed,
            "lease_lost": self.lease_lost,
            # The JSON keys keep the former name: the CLI's --json contract.
            "concurrency_limit": self.dispatch_limit,
            "concurrency_limit_min": self.dispatch_limit_min,
            "duration_s": round(self.duration_s, 6),
            "throughput_msgs_s": round(self.throughput_msgs_s, 3),
            "latency_ms": self.receive_to_done.summary_ms(),
            "send_to_done_ms": self.send_to_done.summary_ms(),
            "api_calls": dict(sorted(self.api_calls.items())),
        }

    def __repr__(self) -> str:
        return (
            f"Stats(received={self.received}, succeeded={self.succeeded}, failed={self.failed}, "
            f"deleted={self.deleted}, released={self.released})"
        )
