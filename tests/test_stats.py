"""Stats: the summary's keys, throughput and duration, the state a child process sends its
supervisor, and merging several processes' statistics."""

from __future__ import annotations

import json

import pytest
from _consumer_helpers import sample_stats

from asyncloop import Stats


def test_to_dict_has_the_cli_contract_keys() -> None:
    stats = Stats()
    stats.started_at, stats.stopped_at = 10.0, 12.0
    stats.succeeded = 50
    stats.receive_to_done.record(0.02)
    stats.count_call("ReceiveMessage")
    stats.count_call("ReceiveMessage")
    summary = stats.to_dict()
    for key in ("received", "succeeded", "failed", "deleted", "released", "duration_s"):
        assert key in summary
    assert summary["throughput_msgs_s"] == 25.0
    assert summary["latency_ms"]["p50"] == pytest.approx(20.0, rel=0.01)
    assert summary["api_calls"] == {"ReceiveMessage": 2}


def test_throughput_is_measured_to_the_last_success_and_duration_covers_the_whole_run() -> None:
    # GIVEN a run that started at 10 s, had its last success at 12 s, then idled and stopped
    # at 32 s (a 20 s empty long poll, the drain and the final flush)
    stats = Stats()
    stats.started_at, stats.last_success_at, stats.stopped_at = 10.0, 12.0, 32.0
    stats.succeeded = 50

    # WHEN it is summarised
    summary = stats.to_dict()

    # THEN throughput ignores the idle tail, and duration_s is the whole run
    assert summary["throughput_msgs_s"] == 25.0
    assert summary["duration_s"] == 22.0


def test_throughput_is_zero_when_nothing_succeeded() -> None:
    # GIVEN a run without a success
    stats = Stats()
    stats.started_at, stats.stopped_at = 10.0, 32.0

    # WHEN / THEN its throughput is 0, not a division by zero
    assert stats.throughput_msgs_s == 0.0


def test_stats_survive_their_state_as_json() -> None:
    # GIVEN statistics with latencies and calls
    stats = sample_stats(5, latencies=(0.010, 0.020, 0.5))
    # WHEN they go through JSON and back
    again = Stats.from_state(json.loads(json.dumps(stats.to_state())))
    # THEN nothing changed
    assert again.to_dict() == stats.to_dict()
    assert again.receive_to_done.percentile(99) == stats.receive_to_done.percentile(99)


def test_a_malformed_state_is_a_value_error() -> None:
    state = sample_stats(1, latencies=(0.01,)).to_state()
    state["receive_to_done"]["count"] = 7
    with pytest.raises(ValueError, match="do not add up"):
        Stats.from_state(state)
    with pytest.raises(ValueError, match="not a stats state"):
        Stats.from_state({"counters": {}})


def test_merged_stats_sum_counters_merge_histograms_and_recompute_throughput() -> None:
    # GIVEN two processes' statistics: 100 successes in 2 s, and 50 in 1 s
    fast = [0.001] * 100
    slow = [0.100] * 50
    one, two = (
        sample_stats(100, latencies=tuple(fast), busy=2.0),
        sample_stats(50, latencies=tuple(slow)),
    )
    # WHEN merged
    merged = Stats.merged([one, two])
    summary = merged.to_dict()
    # THEN counters and calls are summed, the histograms merged whole, the duration the
    # longest, and throughput the summed successes over the longest busy time
    assert summary["succeeded"] == summary["deleted"] == 150
    assert summary["peak_in_flight"] == 6
    assert summary["concurrency_limit"] == summary["concurrency_limit_min"] == 16
    assert summary["api_calls"] == {"ReceiveMessage": 4}
    assert merged.receive_to_done.count == 150
    assert summary["latency_ms"]["p50"] == pytest.approx(1.0, rel=0.01)
    assert summary["latency_ms"]["p99"] == pytest.approx(100.0, rel=0.01)
    assert summary["duration_s"] == pytest.approx(2.5)
    assert summary["throughput_msgs_s"] == pytest.approx(75.0)
