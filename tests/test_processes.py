"""`asyncloop run --processes`: shares, child argv, merged statistics, exit codes, and the
supervisor with stand-in children (small Python scripts)."""

from __future__ import annotations

import io
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from asyncloop import _cli, _cli_flags, _cli_run
from asyncloop._exceptions import ConfigError
from asyncloop._histogram import LatencyHistogram
from asyncloop._processes import (
    STATE_KEY,
    ChildPlan,
    ChildResult,
    Option,
    available_cores,
    child_argv,
    exit_code,
    merged_summary,
    parse_processes,
    plan,
)
from asyncloop._stats import Stats
from asyncloop._supervisor import supervise


def _stats(succeeded: int, *, latencies: tuple[float, ...] = (), busy: float = 1.0) -> Stats:
    stats = Stats()
    stats.received = stats.dispatched = stats.deleted = succeeded
    stats.succeeded = succeeded
    stats.peak_in_flight = 3
    stats.concurrency_limit = stats.concurrency_limit_min = 8
    stats.count_call("ReceiveMessage", 2)
    for seconds in latencies:
        stats.receive_to_done.record(seconds)
    stats.started_at = 100.0
    stats.last_success_at = 100.0 + busy
    stats.stopped_at = 100.0 + busy + 0.5
    return stats


# -- parse_processes, available_cores, plan ------------------------------------------------


def test_auto_is_the_cores_this_process_may_use() -> None:
    # GIVEN the CPU affinity (or the CPU count where there is none)
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # WHEN "auto" is parsed, THEN it is that many
    assert available_cores() == expected
    assert parse_processes("auto") == parse_processes(" AUTO ") == expected


@pytest.mark.parametrize("value", ["0", "-1", "two", "", "1.5", "1025"])
def test_a_bad_process_count_is_refused_naming_the_range(value: str) -> None:
    # WHEN a bad count is parsed, THEN ConfigError names the field, the range and the value
    with pytest.raises(ConfigError, match=r"processes must be auto or an integer in 1\.\.1024"):
        parse_processes(value)


def test_max_in_flight_and_receivers_are_split_with_at_least_one_receiver_each() -> None:
    # WHEN 3 processes share max-in-flight 10 and 2 receivers
    children = plan(3, max_in_flight=10, receivers=2)
    # THEN the shares add up to the flag (larger first), and each has a receiver
    assert [c.max_in_flight for c in children] == [4, 3, 3]
    assert [c.receivers for c in children] == [1, 1, 1]
    assert [c.index for c in children] == [0, 1, 2]
    assert plan(2, max_in_flight=256, receivers=8)[1] == ChildPlan(
        index=1, max_in_flight=128, receivers=4
    )


def test_more_processes_than_max_in_flight_is_refused() -> None:
    # WHEN each share of max-in-flight would be 0 for some process, THEN ConfigError
    with pytest.raises(ConfigError, match=r"processes must be <= max-in-flight \(2") as caught:
        plan(3, max_in_flight=2, receivers=4)
    assert caught.value.field == "processes"


def test_metrics_ports_are_consecutive_and_zero_stays_free() -> None:
    # WHEN --metrics-port is 9100 or 0 with 2 processes
    # THEN process i serves on 9100 + i; with 0 each takes a free port; none without a port
    assert [c.metrics_port for c in plan(2, max_in_flight=4, receivers=2, metrics_port=9100)] == [
        9100,
        9101,
    ]
    assert [c.metrics_port for c in plan(2, max_in_flight=4, receivers=2, metrics_port=0)] == [0, 0]
    assert [c.metrics_port for c in plan(2, max_in_flight=4, receivers=2)] == [None, None]
    with pytest.raises(ConfigError, match=r"metrics_port must be in 1\.\.65533 with 3 processes"):
        plan(3, max_in_flight=4, receivers=2, metrics_port=65_534)


# -- child_argv -------------------------------------------------------------------------------


def test_a_child_gets_the_parents_flags_with_its_own_shares() -> None:
    # GIVEN the parent's resolved flags
    options = [
        Option(flag="--queue-url", value="https://sqs.us-east-1.amazonaws.com/1/q"),
        Option(flag="--processes", value="auto"),
        Option(flag="--max-in-flight", value=256),
        Option(flag="--receivers", value=8),
        Option(flag="--payload", value="-odd"),
        Option(flag="--duration", value=None),
        Option(flag="--until-empty", value=True, switch=True),
        Option(flag="--json", value=False, switch=True),
        Option(flag="--metrics-port", value=None),
    ]
    # WHEN child 1 of 2 is planned
    argv = child_argv(options, ChildPlan(index=1, max_in_flight=128, receivers=4), executable="py")
    # THEN same flags, one process, its shares, JSON with its state; unset flags left out
    assert argv == [
        "py", "-m", "asyncloop", "run",
        "--queue-url=https://sqs.us-east-1.amazonaws.com/1/q",
        "--processes=1", "--max-in-flight=128", "--receivers=4", "--payload=-odd",
        "--until-empty", "--json", "--emit-state",
    ]  # fmt: skip


def test_the_run_flags_reach_a_child_through_the_parser() -> None:
    # GIVEN a parsed `run` with flags (every run flag is an Option the child receives)
    args = _cli.build_parser().parse_args(
        ["run", "--queue-url", "https://sqs.us-east-1.amazonaws.com/1/q", "--handler", "m:f",
         "--processes", "2", "--wait-time-seconds", "0", "--until-empty"]
    )  # fmt: skip
    _cli_flags._resolve_env(args)
    flags = {action.option_strings[0] for action in _cli_run._run_parser()._actions[1:]}
    # THEN the flags the wiring passes on are the run parser's
    assert {"--queue-url", "--handler", "--processes", "--until-empty", "--event-loop"} <= flags
    assert args.processes == "2"


# -- merge and state --------------------------------------------------------------------------


def test_stats_survive_their_state_as_json() -> None:
    # GIVEN statistics with latencies and calls
    stats = _stats(5, latencies=(0.010, 0.020, 0.5))
    # WHEN they go through JSON and back
    again = Stats.from_state(json.loads(json.dumps(stats.to_state())))
    # THEN nothing changed
    assert again.to_dict() == stats.to_dict()
    assert again.receive_to_done.percentile(99) == stats.receive_to_done.percentile(99)


def test_an_empty_histogram_state_has_no_infinity() -> None:
    # GIVEN an empty histogram, WHEN its state is JSON, THEN it is standard JSON and returns
    text = json.dumps(LatencyHistogram().to_state(), allow_nan=False)
    assert LatencyHistogram.from_state(json.loads(text)).count == 0


def test_a_malformed_state_is_a_value_error() -> None:
    state = _stats(1, latencies=(0.01,)).to_state()
    state["receive_to_done"]["count"] = 7
    with pytest.raises(ValueError, match="do not add up"):
        Stats.from_state(state)
    with pytest.raises(ValueError, match="not a stats state"):
        Stats.from_state({"counters": {}})


def test_merged_stats_sum_counters_merge_histograms_and_recompute_throughput() -> None:
    # GIVEN two processes' statistics: 100 successes in 2 s, and 50 in 1 s
    fast = [0.001] * 100
    slow = [0.100] * 50
    one, two = _stats(100, latencies=tuple(fast), busy=2.0), _stats(50, latencies=tuple(slow))
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


def test_merged_summary_adds_processes_and_exit_codes_or_is_none() -> None:
    results = [
        ChildResult(index=0, exit_code=0, stats=_stats(3)),
        ChildResult(index=1, exit_code=1, stats=None),
    ]
    summary = merged_summary(results)
    assert summary is not None
    assert (summary["processes"], summary["exit_codes"], summary["succeeded"]) == (2, [0, 1], 3)
    assert merged_summary([ChildResult(index=0, exit_code=1, stats=None)]) is None


# -- exit codes -------------------------------------------------------------------------------


def _result(code: int, *, stats: bool = True, idle: bool = False) -> ChildResult:
    return ChildResult(
        index=0, exit_code=code, stats=_stats(1) if stats else None, stopped_idle=idle
    )


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([_result(0), _result(0)], 0),
        ([_result(0), _result(1)], 1),
        ([_result(1), _result(2, stats=False)], 2),
        ([_result(0), _result(-9, stats=False)], 1),
        ([_result(0), _result(0, stats=False)], 1),
        ([_result(0), _result(-15, stats=False, idle=True)], 0),
    ],
    ids=["all-clean", "one-failed", "usage-wins", "killed", "no-stats", "stopped-idle"],
)
def test_one_exit_code_for_the_run(results: list[ChildResult], expected: int) -> None:
    assert exit_code(results) == expected


# -- the CLI refuses bad settings before spawning ---------------------------------------------


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = _cli.main(argv)
    return code, capsys.readouterr().err


BASE = ["run", "--queue-url", "https://sqs.us-east-1.amazonaws.com/1/q", "--handler", "os:getcwd"]


def test_more_processes_than_max_in_flight_exits_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _main([*BASE, "--processes", "5", "--max-in-flight", "4"], capsys)
    assert code == 2
    assert "--processes must be <= max-in-flight (4" in err


def test_a_bad_processes_variable_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCLOOP_PROCESSES", "many")
    code, err = _main(BASE, capsys)
    assert code == 2
    assert "ASYNCLOOP_PROCESSES must be auto or an integer in 1..1024, got 'many'" in err


def test_an_unknown_event_loop_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _main([*BASE, "--event-loop", "trio"], capsys)
    assert code == 2
    assert "--event-loop must be one of asyncio, uvloop, got 'trio'" in err


def test_uvloop_without_the_package_exits_2_saying_how_to_get_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN uvloop cannot be imported
    monkeypatch.setitem(sys.modules, "uvloop", None)
    # WHEN a run asks for it, THEN exit 2 naming the extra, before anything runs
    code, err = _main([*BASE, "--event-loop", "uvloop"], capsys)
    assert code == 2
    assert "--event-loop uvloop needs the uvloop package: pip install 'asyncloop[uvloop]'" in err


# -- the supervisor, with stand-in children ---------------------------------------------------

# A stand-in child: says it is ready on stderr, waits for SIGTERM (forever without one), then
# prints its statistics as a real child does, and exits 0.
_WAITS_FOR_SIGTERM = """
import json, signal, sys
from asyncloop._stats import Stats

def stop(signum, frame):
    stats = Stats()
    stats.received = stats.succeeded = {n}
    print("stopping", file=sys.stderr, flush=True)
    print(json.dumps({{{key!r}: stats.to_state()}}), flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
print("ready\\nsecond line", file=sys.stderr, flush=True)
while True:
    signal.pause()
"""

# A stand-in child that fails once the other child is ready (a marker file it waits for).
_FAILS = """
import os, sys, time
print("handler output on stdout")
while not os.path.exists({marker!r}):
    time.sleep(0.01)
print("broken", file=sys.stderr, flush=True)
sys.exit(3)
"""


@pytest.mark.anyio
async def test_a_failed_child_stops_the_others_gracefully_and_the_run_fails(
    tmp_path: Path,
) -> None:
    # GIVEN a child that waits for SIGTERM and one that fails once the first is ready
    marker = tmp_path / "ready"
    waiting = _WAITS_FOR_SIGTERM.format(n=7, key=STATE_KEY)
    waiting = waiting.replace('print("ready', f"open({str(marker)!r}, 'w').close()\nprint(\"ready")
    argvs = [
        [sys.executable, "-c", textwrap.dedent(waiting)],
        [sys.executable, "-c", _FAILS.format(marker=str(marker))],
    ]
    stderr = io.StringIO()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    # WHEN supervised (a missing forward would leave the first child waiting: the test's
    # timeout fails it)
    results = await supervise(argvs, env=env, stderr=stderr)
    # THEN the first was stopped by SIGTERM and reported, the second failed: the run fails;
    # every child line reached stderr with its prefix, the failed child's stdout too
    assert [r.exit_code for r in results] == [0, 3]
    assert results[0].stats is not None
    assert results[0].stats.succeeded == 7
    assert results[1].stats is None
    assert exit_code(results) == 1
    lines = stderr.getvalue().splitlines()
    assert {"[p0] ready", "[p0] second line", "[p0] stopping", "[p1] broken"} <= set(lines)
    assert "[p1] handler output on stdout" in lines


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
