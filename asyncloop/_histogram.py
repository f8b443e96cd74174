"""The latency histogram of a consumer run's statistics (`asyncloop._stats.Stats`).

The histogram has fixed, log-spaced buckets (1% apart, 1 us to about 3 h), so recording is O(1)
and memory does not grow with the number of messages: a million-message run costs the same
few kilobytes as a hundred-message one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ("LatencyHistogram",)

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
