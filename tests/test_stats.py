"""The stats summary: the CLI's keys, throughput and duration."""

from __future__ import annotations

import pytest

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
