"""The latency histogram: accuracy, fixed memory, extremes, merging, its state as JSON."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from asyncloop import LatencyHistogram


def test_percentiles_within_one_percent_of_exact() -> None:
    rng = random.Random(1)
    values = [rng.lognormvariate(-3, 1) for _ in range(20_000)]
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    ordered = sorted(values)
    for q in (50, 95, 99):
        exact = ordered[int(len(ordered) * q / 100) - 1]
        got = histogram.percentile(q)
        assert got is not None
        assert abs(got - exact) / exact < 0.011, (q, got, exact)
    assert histogram.count == 20_000
    assert histogram.min == min(values)
    assert histogram.max == max(values)


def test_memory_is_fixed_whatever_the_count() -> None:
    # GIVEN a histogram that already saw one value in each decade it will see
    histogram = LatencyHistogram()
    for seconds in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        histogram.record(seconds)
    # WHEN 100,000 more values are recorded, traced by tracemalloc
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(100_000):
            histogram.record(0.001 + i * 1e-7)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # THEN the memory it holds grew by less than 1 byte per value (keeping the values, even
    # as floats in a list, would cost over 800 KB; the buckets' counts cost a few KB)
    assert histogram.count == 100_007
    assert after - before < 100_000


def test_empty_and_extremes() -> None:
    histogram = LatencyHistogram()
    assert histogram.percentile(50) is None
    assert histogram.summary_ms() == {"p50": None, "p95": None, "p99": None, "max": None}
    histogram.record(0.0)
    histogram.record(1e9)  # beyond the last bucket: clamped, not an IndexError
    assert histogram.percentile(100) == 1e9
    with pytest.raises(ValueError, match="q must be"):
        histogram.percentile(0)


def test_merge_adds_counts() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    for _ in range(10):
        a.record(0.01)
    for _ in range(30):
        b.record(0.1)
    a.merge(b)
    assert a.count == 40
    p50 = a.percentile(50)
    assert p50 is not None
    assert p50 == pytest.approx(0.1, rel=0.01)


def test_an_empty_histogram_state_has_no_infinity() -> None:
    # GIVEN an empty histogram, WHEN its state is JSON, THEN it is standard JSON and returns
    text = json.dumps(LatencyHistogram().to_state(), allow_nan=False)
    assert LatencyHistogram.from_state(json.loads(text)).count == 0
