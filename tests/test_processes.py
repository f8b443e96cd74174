"""`asyncloop run --processes` (asyncloop._processes): shares, child argv, the merged summary,
exit codes, and the CLI refusing bad settings before spawning (the supervisor is tested in
test_supervisor.py, Stats' state and merging in test_stats.py)."""

from __future__ import annotations

import os
import sys

import pytest
from _consumer_helpers import sample_stats

from asyncloop import _cli, _cli_flags, _cli_run
from asyncloop._exceptions import ConfigError
from asyncloop._processes import (
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


def test_merged_summary_adds_processes_and_exit_codes_or_is_none() -> None:
    results = [
        ChildResult(index=0, exit_code=0, stats=sample_stats(3)),
        ChildResult(index=1, exit_code=1, stats=None),
    ]
    summary = merged_summary(results)
    assert summary is not None
    assert (summary["processes"], summary["exit_codes"], summary["succeeded"]) == (2, [0, 1], 3)
    assert merged_summary([ChildResult(index=0, exit_code=1, stats=None)]) is None


# -- exit codes -------------------------------------------------------------------------------


def _result(code: int, *, stats: bool = True, idle: bool = False) -> ChildResult:
    return ChildResult(
        index=0, exit_code=code, stats=sample_stats(1) if stats else None, stopped_idle=idle
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
