"""The benchmark's answer: latency profiles, the recommendation rule, the readable table, and
`--compare`'s refusal of results that measured different things.

Nothing here asserts a speed: documents are built by a tiny fake sweep or by hand.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from _bench_helpers import parse

from asyncloop._bench._compare import CompareError, compare
from asyncloop._bench._config import BenchConfig, BenchError, LatencyModel, Setting
from asyncloop._bench._latency_profiles import OPERATIONS, PROFILES, get_profile
from asyncloop._bench._node_baseline import NODE_BASELINE, baseline_label
from asyncloop._bench._recommend import Point, binding, ceilings, recommend
from asyncloop._bench._report import (
    SCHEMA_VERSION as REPORT_SCHEMA_VERSION,
)
from asyncloop._bench._report import validate
from asyncloop._bench._runner import _messages, _predicted_msgs_s, run_bench
from asyncloop._bench._summary import SCHEMA_VERSION
from asyncloop._bench._tables import format_table, recommendation_lines
from asyncloop._bench._targets import FakeTarget
from asyncloop._bench._workload import Tracker
from asyncloop._cli_bench import config_from_args


@pytest.fixture(scope="module")
def one_repeat_doc() -> dict[str, Any]:
    """A tiny fake sweep, one repeat, small fixed latencies, no HTTP check."""
    config = BenchConfig(
        target="fake",
        messages=60,
        receivers=(1, 2),
        max_in_flight=(1, 8),
        profile="zero",
        invoke_latency=LatencyModel(1.0),
        warmup_messages=10,
    )
    return asyncio.run(run_bench(config, progress_stream=io.StringIO(), argv=["asyncloop"]))


# -- profiles --------------------------------------------------------------------------------


def test_built_in_profiles_and_an_unknown_name() -> None:
    # GIVEN the built-ins, THEN aws-like adds latency to every operation and zero to none
    aws = get_profile("aws-like")
    for operation in ("ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"):
        assert aws.sqs(operation).p50_ms > 0
        assert PROFILES["zero"].sqs(operation).is_zero
    assert aws.invoke("Event").p50_ms > 0
    # WHEN a name is not a profile, THEN the error lists the known ones
    with pytest.raises(BenchError, match="profile must be one of aws-like, zero, got 'lan'"):
        BenchConfig(profile="lan")


def test_the_proxy_holds_the_single_message_calls_as_long_as_the_batch_ones() -> None:
    # GIVEN aws-like's figures for the latency proxy in front of moto and fauxqs
    profile = get_profile("aws-like")
    held = profile.proxy_latencies("Event")
    # THEN node-sqs-consumer's one-message DeleteMessage and ChangeMessageVisibility are held
    # as long as the batch calls asyncloop makes, and the batch calls keep their figures
    assert held["DeleteMessage"] == held["DeleteMessageBatch"] == str(profile.delete)
    assert held["ChangeMessageVisibility"] == str(profile.change_visibility)
    for operation in OPERATIONS:
        assert held[operation] == str(profile.sqs(operation))


def test_request_response_adds_the_worker_and_overrides_rename_the_profile() -> None:
    # GIVEN aws-like with a 250 ms worker
    config = BenchConfig(profile="aws-like", worker_ms=250, invocation_type="RequestResponse")
    profile = config.latency_profile()
    # THEN a synchronous Invoke waits for the round trip and the worker; Event does not
    base = get_profile("aws-like").invoke_request_response
    assert config.invoke_model().p50_ms == base.p50_ms + 250
    assert profile.invoke("Event") == get_profile("aws-like").invoke_event
    assert profile.name == "aws-like+custom"
    # AND an SQS override replaces the three SQS operations, not Invoke
    custom = BenchConfig(latency=LatencyModel(7.0)).latency_profile()
    assert {str(custom.sqs(op)) for op in ("ReceiveMessage", "DeleteMessageBatch")} == {"7"}
    assert custom.invoke_event == get_profile("aws-like").invoke_event


@pytest.mark.asyncio
async def test_the_fake_target_applies_the_profile_per_operation() -> None:
    # GIVEN aws-like with the SQS calls fixed at 5 ms and Invoke at 3 ms
    config = BenchConfig(
        target="fake", messages=10, latency=LatencyModel(5.0), invoke_latency=LatencyModel(3.0)
    ).resolved()
    # WHEN a run's environment is built
    async with FakeTarget(config).run_env(10, Tracker(10)) as env:
        # THEN the fake queue sleeps the profile's figure for each operation, in seconds
        latency = env.queue.inner.latency  # type: ignore[attr-defined]
        assert latency == {
            "ReceiveMessage": pytest.approx(0.005),
            "DeleteMessageBatch": pytest.approx(0.005),
            "ChangeMessageVisibilityBatch": pytest.approx(0.005),
        }
        # AND the fake Lambda the Invoke figure
        lambda_ = env.dispatcher.inner.invoker  # type: ignore[attr-defined]
        assert lambda_.latency == pytest.approx(0.003)
    # AND the zero profile adds nothing anywhere
    zero = BenchConfig(target="fake", messages=10, profile="zero").resolved()
    async with FakeTarget(zero).run_env(10, Tracker(10)) as env:
        assert set(env.queue.inner.latency.values()) == {0.0}  # type: ignore[attr-defined]


def test_runs_are_sized_by_the_rate_their_ceilings_predict() -> None:
    # GIVEN the default sweep's config (aws-like, sized by time, 2 s a run)
    config = BenchConfig().resolved()
    slow, fast = Setting(1, 1, 10), Setting(4, 256, 10)
    # WHEN the runs are sized
    n_slow = _messages(config, _predicted_msgs_s(config, "asyncloop", slow, None))
    n_fast = _messages(config, _predicted_msgs_s(config, "asyncloop", fast, None))
    # THEN C=1 gets the minimum (its 2 s hold about 50 messages) and the fast one many more,
    # capped by the target's messages
    assert n_slow == 50
    assert 2_000 < n_fast <= config.n
    # AND an explicit --messages is never resized
    fixed = BenchConfig(messages=300).resolved()
    assert _messages(fixed, 10.0) == 300


# -- the recommendation rule -----------------------------------------------------------------


def pt(c: int, msgs_s: float, *, r: int = 1, complete: bool = True) -> Point:
    return Point(setting=Setting(r, c, 10), msgs_s=msgs_s, p99_ms=10.0 + c, complete=complete)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        pytest.param([pt(16, 500.0)], (1, 16), id="single point"),
        pytest.param([pt(64, 100.0), pt(1, 100.0), pt(8, 100.0)], (1, 1), id="all equal"),
        pytest.param([pt(32, 800.0), pt(16, 800.0), pt(64, 790.0)], (1, 16), id="tie at the top"),
        pytest.param(
            [pt(1, 40.0), pt(16, 600.0), pt(64, 960.0), pt(256, 1000.0)], (1, 64), id="noisy best"
        ),
        pytest.param([pt(64, 940.0), pt(256, 1000.0)], (1, 256), id="just outside 5%"),
        pytest.param(
            [pt(16, 900.0, r=4), pt(16, 900.0, r=1), pt(8, 500.0, r=8)],
            (1, 16),
            id="equal C: fewer receivers",
        ),
        pytest.param(
            [pt(8, 2000.0, complete=False), pt(64, 1000.0)], (1, 64), id="incomplete ignored"
        ),
        pytest.param(
            [pt(8, 200.0, complete=False), pt(64, 300.0, complete=False)],
            (1, 64),
            id="all incomplete",
        ),
    ],
)
def test_recommendation_is_the_smallest_setting_within_5_percent(
    points: list[Point], expected: tuple[int, int]
) -> None:
    # WHEN the rule runs over the points
    chosen = recommend(points)
    # THEN it picks the expected (receivers, max_in_flight)
    assert chosen is not None
    assert (chosen.point.setting.receivers, chosen.point.setting.max_in_flight) == expected
    assert chosen.point.msgs_s >= 0.95 * chosen.best.msgs_s


def test_no_points_no_recommendation_and_a_bad_tolerance() -> None:
    assert recommend([]) is None
    with pytest.raises(BenchError, match=r"tolerance must be in 0\.\.1, got 1\.5"):
        recommend([pt(1, 1.0)], tolerance=1.5)


def test_the_binding_ceiling_is_the_lowest() -> None:
    # GIVEN R=1 C=64 with 40 ms a slot and 20 ms a receive
    bounds = ceilings(Setting(1, 64, 10), hold_s=0.04, receive_s=0.02, cpu_msgs_s=9000.0)
    # THEN Little's law says 1,600, the receiver 500, the CPU 9,000: the receiver binds
    assert bounds["Little's law C/L"] == pytest.approx(1600)
    assert binding(bounds) == ("receivers R*B/L", pytest.approx(500))
    assert binding(ceilings(Setting(1, 1, 10), hold_s=0, receive_s=0)) is None


# -- the table -------------------------------------------------------------------------------


def test_the_default_table_fits_120_columns_and_explains_only_its_columns(
    one_repeat_doc: dict[str, Any],
) -> None:
    validate(one_repeat_doc)
    # WHEN the table is formatted
    table = format_table(one_repeat_doc)
    lines = table.splitlines()
    # THEN no line is wider than 120 columns
    assert max(len(line) for line in lines) <= 120, max(lines, key=len)
    # AND one repeat reads "1 repeat" and shows no min-max column, nor explains one
    assert "1 repeat," in lines[0]
    assert "[min-max]" not in table
    assert "eff" not in table.split()
    # AND it ends with the recommendation, naming its p99 and its bound
    last = next(i for i, line in enumerate(lines) if line.startswith("recommendation: R="))
    assert all(line.startswith("  ") for line in lines[last + 1 :])
    recommendation = " ".join(lines[last:])
    assert " p99 " in recommendation
    assert "bounded by" in recommendation
    # AND of best never exceeds 100%
    assert all(r["summary"]["of_best"] <= 1 for r in one_repeat_doc["results"])


def test_the_recommendation_warns_when_the_sdk_cpu_bounds_it_on_aws(
    one_repeat_doc: dict[str, Any],
) -> None:
    # GIVEN a recommendation above the SDK's one-core ceiling measured on moto
    doc = copy.deepcopy(one_repeat_doc)
    doc["recommendation"]["sdk_cpu_ceiling_msgs_s"] = doc["recommendation"]["msgs_s"] / 2
    # THEN a second line says more processes, not more in flight, help beyond it
    lines = recommendation_lines(doc)
    assert lines[0].startswith("recommendation: ")
    assert "add processes, not max-in-flight" in " ".join(line.strip() for line in lines)


# -- --compare -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["parameters"].__setitem__("target", "moto"), "target fake vs moto"),
        (
            lambda d: d["parameters"]["profile"].__setitem__("name", "aws-like"),
            "profile zero+custom vs aws-like",
        ),
        (
            lambda d: d["parameters"]["profile"].__setitem__("ReceiveMessage", "3"),
            "profile zero+custom with different latencies",
        ),
        (lambda d: d["parameters"].__setitem__("delete_by", "worker"), "delete_by"),
        (lambda d: d["parameters"].__setitem__("messages", 999), "messages 60 vs 999"),
        (lambda d: d["parameters"].__setitem__("invocation_type", "RequestResponse"), "invoc"),
    ],
)
def test_compare_refuses_different_targets_profiles_or_workloads(
    one_repeat_doc: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Any,
    named: str,
) -> None:
    # GIVEN two results that measured different things
    other = copy.deepcopy(one_repeat_doc)
    change(other)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(one_repeat_doc))
    b.write_text(json.dumps(other))
    # WHEN they are compared without --force, THEN the CLI refuses, naming the difference
    args = parse(["--compare", str(a), str(b)])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert named in err
    assert "--force" in err
    # AND with --force it compares, saying what differs
    args = parse(["--compare", str(a), str(b), "--force"])
    assert args.handler(args) == 0
    assert named in capsys.readouterr().out


def test_compare_lines_rows_up_by_setting(one_repeat_doc: dict[str, Any]) -> None:
    # GIVEN B with its results in another order and one setting missing
    after = copy.deepcopy(one_repeat_doc)
    after["results"].reverse()
    gone = after["results"].pop(0)
    # WHEN compared
    table = compare(one_repeat_doc, after).splitlines()
    rows = [line.split()[0:3] for line in table[2:]]
    labels = [" ".join(row) for row in rows]
    # THEN rows follow receivers, then max in flight, with baselines last, each A beside B
    assert labels[:4] == ["R=1 C=1 B=10", "R=1 C=8 B=10", "R=2 C=1 B=10", "R=2 C=8 B=10"]
    assert {label.split()[0] for label in labels[4:]} == {"seed-sequential", "naive-gather"}
    # AND the setting B lacks is marked gone
    assert any(line.startswith(gone["label"]) and "gone" in line.split() for line in table)
    changed = copy.deepcopy(after)
    changed["parameters"]["target"] = "moto"
    with pytest.raises(CompareError):
        compare(one_repeat_doc, changed)


def with_a_node_row(doc: dict[str, Any], setting: Setting) -> dict[str, Any]:
    """`doc` plus a node-sqs-consumer row (a baseline with a setting: instances x batch 10),
    made from its naive-gather row, as a fauxqs run would add it."""
    out = copy.deepcopy(doc)
    node = copy.deepcopy(next(r for r in out["results"] if r["contender"] == "naive-gather"))
    node["contender"] = NODE_BASELINE
    node["label"] = baseline_label(setting)
    node["setting"] = {
        "receivers": setting.receivers,
        "max_in_flight": setting.max_in_flight,
        "batch_size": setting.batch_size,
    }
    found = binding(ceilings(setting, hold_s=0.035, receive_s=0.015, emulator_msgs_s=1234.5))
    assert found is not None
    node["summary"]["bound"] = {"name": found[0], "msgs_s": found[1]}
    out["results"].append(node)
    out["parameters"]["baselines"].append(NODE_BASELINE)
    return out


def test_a_node_sqs_consumer_row_reads_as_a_baseline_in_the_table_and_compare(
    one_repeat_doc: dict[str, Any],
) -> None:
    # GIVEN results with a node-sqs-consumer row
    doc = with_a_node_row(one_repeat_doc, Setting(26, 260, 10))
    validate(doc)
    # WHEN the table is formatted
    lines = format_table(doc).splitlines()
    # THEN it still fits 120 columns, the row names the contender (instances x batch), not an
    # asyncloop setting, and the legend says what NxB is and whose CPU it reports
    assert max(len(line) for line in lines) <= 120, max(lines, key=len)
    assert any(line.startswith("node-sqs-consumer 26x10 ") for line in lines)
    assert not any(line.startswith("R=26") for line in lines)
    assert any(line.startswith("node-sqs-consumer NxB:") and "Node" in line for line in lines)
    # AND --compare lists it with the baselines, after every asyncloop setting, also when its
    # setting sorts among theirs (1 instance: R=1 C=10)
    small = with_a_node_row(one_repeat_doc, Setting(1, 10, 10))
    rows = compare(small, copy.deepcopy(small)).splitlines()[2:]
    firsts = [line.split()[0] for line in rows if line.strip()]
    assert set(firsts[-3:]) == {"seed-sequential", "naive-gather", NODE_BASELINE}


def test_schema_versions_agree() -> None:
    assert SCHEMA_VERSION == REPORT_SCHEMA_VERSION == 2


def test_no_flags_is_the_default_sweep_with_the_moto_check() -> None:
    # GIVEN `asyncloop bench` with no flags, and with an explicit fake target
    default = config_from_args(parse([])).resolved()
    explicit = config_from_args(parse(["--target", "fake"]))
    # THEN the default sweeps the fake under aws-like and checks on moto; the explicit one
    # runs only where it was told
    assert (default.target, default.profile, default.http_check) == ("fake", "aws-like", "moto")
    assert explicit.http_check is None


def test_a_baseline_the_sizer_does_not_know_is_sized_like_a_gathering_one() -> None:
    # GIVEN the default sweep's config and a baseline name the sizer has no formula for
    config = BenchConfig().resolved()
    known = _messages(config, _predicted_msgs_s(config, "naive-gather", None, 40_000.0))
    other = _messages(config, _predicted_msgs_s(config, "some-new-baseline", None, 40_000.0))
    # THEN it gets a run of about run_seconds, not the 20,000-message cap
    assert other == known < config.n
