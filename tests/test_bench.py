"""The benchmark's own code: parameters, CLI, baselines, the fake target end to end, reports.

Nothing here asserts a speed: performance is measured by `asyncloop bench`, not by tests.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from _bench_helpers import parse

from asyncloop import DispatchError, Message, Stats
from asyncloop._bench import _targets
from asyncloop._bench._baselines import naive_gather, seed_sequential
from asyncloop._bench._config import (
    BenchConfig,
    BenchError,
    LatencyModel,
    parse_int_list,
    parse_names,
)
from asyncloop._bench._progress import Progress
from asyncloop._bench._report import load_results, validate, write_outputs
from asyncloop._bench._runner import run_bench
from asyncloop._bench._tables import format_full_table, format_table
from asyncloop._bench._workload import BODY_BYTES, Tracker, body
from asyncloop._cli_bench import run_bench_command
from asyncloop.testing import FakeQueue

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny(**overrides: Any) -> BenchConfig:
    settings: dict[str, Any] = {
        "target": "fake",
        "messages": 120,
        "receivers": (1, 2),
        "max_in_flight": (1, 16),
        "repeats": 2,
        "warmup_messages": 20,
        "profile": "zero",
    }
    settings.update(overrides)
    return BenchConfig(**settings)


@pytest.fixture(scope="module")
def fake_doc() -> dict[str, Any]:
    """One tiny fake sweep, shared by the report tests (it is the slowest part)."""
    return asyncio.run(
        run_bench(tiny(), progress_stream=io.StringIO(), argv=["asyncloop", "bench"])
    )


# -- parameters ------------------------------------------------------------------------------


def test_lists_parse_and_deduplicate() -> None:
    assert parse_int_list("1, 16,64,16", flag="--receivers") == (1, 16, 64)
    assert parse_names("none", flag="--baselines", choices=("a", "b")) == ()
    assert parse_names("b,a", flag="--baselines", choices=("a", "b")) == ("b", "a")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_int_list("1,x", flag="--receivers"), "--receivers must be"),
        (lambda: parse_names("seed", flag="--baselines", choices=("a",)), "--baselines must"),
        (lambda: LatencyModel.parse("fast"), "latency must be"),
        (lambda: LatencyModel.parse("50:10"), "p50 <= p99"),
        (lambda: BenchConfig(target="lambda"), "target must be one of"),
        (lambda: BenchConfig(receivers=(0,)), "receivers values must be in 1..1024, got 0"),
        (lambda: BenchConfig(batch_size=(11,)), "batch-size values must be in 1..10, got 11"),
        (lambda: BenchConfig(repeats=0), "repeats must be in 1..100"),
        (lambda: BenchConfig(target="fake", endpoint_url="http://x"), "aws target only"),
        (lambda: BenchConfig(target="aws", messages=10_001), "at most 10000"),
    ],
)
def test_bad_parameters_name_the_flag(call: Callable[[], object], message: str) -> None:
    with pytest.raises(BenchError, match=message):
        call()


def test_latency_model_fixed_and_lognormal() -> None:
    fixed = LatencyModel.parse("50")
    assert fixed.sampler() == 0.05
    assert fixed.mean_s == 0.05
    spread = LatencyModel.parse("50:200")
    draw = spread.sampler(seed=3)
    assert callable(draw)
    samples = sorted(draw() for _ in range(4000))
    # The median and p99 of the draws land near what was asked (lognormal with that shape).
    assert 0.045 < samples[2000] < 0.055
    assert 0.15 < samples[3960] < 0.26
    assert spread.mean_s > 0.05
    assert str(spread) == "50:200"


def test_defaults_depend_on_the_target() -> None:
    default = BenchConfig().resolved()
    assert (default.target, default.profile, default.repeats) == ("fake", "aws-like", 1)
    # The default sweep: max-in-flight from 1 to a few hundred at two receiver counts.
    assert default.max_in_flight == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert default.receivers == (1, 4)
    assert default.sized_by_time
    moto = BenchConfig(target="moto").resolved()
    assert moto.backlog == 100
    assert not moto.sized_by_time
    fake = BenchConfig(target="fake", receivers=(3,)).resolved()
    assert fake.receivers == (3,)
    assert fake.n > moto.n
    assert len(fake.settings()) == len(fake.max_in_flight or ()) * 1


def test_body_has_a_fixed_size() -> None:
    assert len(body(0)) == len(body(1_234_567)) == BODY_BYTES
    assert json.loads(body(42))["job"] == 42


# -- CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--target", "nowhere"],
        ["--messages", "many"],
        ["--receivers", "1,two"],
        ["--max-in-flight", "0"],
        ["--batch-size", "12"],
        ["--delete-by", "nobody"],
        ["--latency-ms", "-3"],
        ["--invoke-latency-ms", "x:y"],
        ["--repeats", "0"],
        ["--baselines", "fastest"],
        ["--target", "moto", "--endpoint-url", "http://127.0.0.1:1"],
    ],
)
def test_bad_arguments_exit_2_with_one_error_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(argv)
    assert args.handler(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("asyncloop: error: ")


def test_aws_without_a_terminal_needs_yes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # GIVEN an endpoint (nothing is contacted before the confirmation)
    args = parse(["--target", "aws", "--endpoint-url", "http://127.0.0.1:9"])
    # WHEN the command runs with a stdin that is not a terminal and without --yes
    code = run_bench_command(args, stdin=io.StringIO(""), stderr=io.StringIO())
    # THEN it refuses, creating nothing
    assert code == 2
    assert "pass --yes" in capsys.readouterr().err


def test_aws_without_credentials_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    args = parse(["--target", "aws", "--yes", "--region", "eu-west-1"])
    assert run_bench_command(args, stdin=io.StringIO(""), stderr=io.StringIO()) == 2
    assert "explicit credentials" in capsys.readouterr().err


def test_cli_runs_the_fake_target_and_writes_every_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = parse(
        [
            "--target",
            "fake",
            "--messages",
            "50",
            "--receivers",
            "2",
            "--max-in-flight",
            "4",
            "--repeats",
            "1",
            "--baselines",
            "none",
            "--invoke-latency-ms",
            "1:3",
            "--http-check",
            "none",
            "--out",
            str(out),
        ]
    )
    assert args.handler(args) == 0
    printed = capsys.readouterr()
    assert "R=2 C=4 B=10" in printed.out
    assert f"plot:    {out / 'plot.png'}" in printed.out
    assert "[" in printed.err  # the progress bar
    doc = load_results(out / "results.json")
    validate(doc)
    assert doc["parameters"]["invoke_latency_ms"] == "1:3"
    assert doc["parameters"]["profile"]["name"] == "aws-like+custom"
    assert "recommendation: R=2 C=4 B=10" in printed.out
    assert (out / "report.md").read_text().startswith("# asyncloop bench: fake")


def test_compare_prints_the_change(
    tmp_path: Path, fake_doc: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two results files, the second twice as fast for one setting
    faster = copy.deepcopy(fake_doc)
    faster["results"][0]["summary"]["msgs_s"]["median"] *= 2
    faster["parameters"]["max_in_flight"] = [1, 16, 99]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(fake_doc))
    b.write_text(json.dumps(faster))
    # WHEN they are compared through the CLI
    args = parse(["--compare", str(a), str(b)])
    assert args.handler(args) == 0
    # THEN the row shows +100% and the differing parameter is named
    out = capsys.readouterr().out
    first = fake_doc["results"][0]["label"]
    assert any(first in line and "+100.0%" in line for line in out.splitlines())
    assert "max_in_flight ([1, 16] -> [1, 16, 99])" in out


def test_compare_refuses_a_file_that_is_not_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    args = parse(["--compare", str(other), str(other)])
    assert args.handler(args) == 2
    assert "not an asyncloop bench results file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"http_check": "moto"},
            r"HTTP check on moto needs.*asyncloop\[bench\].*--http-check none",
        ),
        ({"target": "moto"}, r"moto target needs moto's server.*asyncloop\[bench\]'$"),
    ],
)
def test_a_run_needing_moto_stops_before_it_starts_when_moto_is_missing(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], message: str
) -> None:
    # GIVEN an install without moto's server (an absent module stands in for flask)
    monkeypatch.setattr(_targets, "_MOTO_MODULES", ("moto", "asyncloop_test_absent_module"))
    progress = io.StringIO()
    # WHEN a run that needs moto starts
    with pytest.raises(BenchError, match=message):
        asyncio.run(run_bench(tiny(**overrides), progress_stream=progress))
    # THEN it says what to install, before running anything (no warm-up, no sweep)
    assert progress.getvalue() == ""


def test_moto_is_not_required_where_it_is_installed_or_unused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN this environment (moto's server installed) WHEN runs are checked THEN none is refused
    assert _targets.moto_missing(tiny(target="moto")) is None
    assert _targets.moto_missing(tiny(http_check="moto")) is None
    # GIVEN moto missing WHEN a run needs no moto THEN it is not refused either
    monkeypatch.setattr(_targets, "_MOTO_MODULES", ("asyncloop_test_absent_module",))
    assert _targets.moto_missing(tiny()) is None


# -- the fake sweep end to end ---------------------------------------------------------------


def test_fake_sweep_runs_every_contender_to_completion(fake_doc: dict[str, Any]) -> None:
    results = fake_doc["results"]
    labels = [r["label"] for r in results]
    assert labels == [
        "R=1 C=1 B=10",
        "R=1 C=16 B=10",
        "R=2 C=1 B=10",
        "R=2 C=16 B=10",
        "seed-sequential",
        "naive-gather",
    ]
    for result in results:
        assert len(result["runs"]) == 2
        for run in result["runs"]:
            # Every message dispatched once and, with delete-by consumer, deleted.
            assert run["complete"] is True
            assert run["succeeded"] == 120
            assert run["api_calls"]["Invoke"] == 120
            assert run["deleted"] == 120
        summary = result["summary"]
        assert set(summary["ratio_to"]) == {"seed-sequential", "naive-gather"}
        assert summary["littles_law"]["cpu_ceiling_msgs_s"] > 0
        assert summary["latency_ms"]["receive_to_done"]["p50"] is not None
    consumer = results[3]["runs"][0]
    # The bench's own count of calls agrees with the consumer's.
    for op in ("ReceiveMessage", "DeleteMessageBatch"):
        assert consumer["api_calls"][op] == consumer["consumer_api_calls"][op]
    assert fake_doc["calibration"]["cpu_ceiling"]["msgs_s"] > 0


def test_results_validate_against_the_schema(fake_doc: dict[str, Any]) -> None:
    validate(fake_doc)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.pop("machine"),
        lambda d: d.__setitem__("schema_version", 1),
        lambda d: d["parameters"]["profile"].pop("ReceiveMessage"),
        lambda d: d["results"][0]["summary"].__setitem__("bound", 3),
        lambda d: d["results"][0]["summary"]["msgs_s"].pop("median"),
        lambda d: d["results"][0]["runs"][0].__setitem__("complete", "yes"),
        lambda d: d["parameters"].__setitem__("delete_by", "nobody"),
    ],
)
def test_schema_rejects_broken_results(
    fake_doc: dict[str, Any], breakage: Callable[[dict[str, Any]], object]
) -> None:
    broken = copy.deepcopy(fake_doc)
    breakage(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_outputs_include_a_real_png(tmp_path: Path, fake_doc: dict[str, Any]) -> None:
    paths = write_outputs(fake_doc, tmp_path)
    plot = paths["plot"]
    assert plot is not None
    data = plot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    # An IHDR of a figure-sized image, and more than an empty canvas's worth of pixels.
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert width >= 800
    assert height >= 400
    assert len(data) > 20_000
    assert b"IEND" in data[-16:]
    assert paths["report"] is not None
    report = paths["report"].read_text()
    assert "![msgs/s and p99 against max in flight](plot.png)" in report
    assert format_table(fake_doc) in report


def test_table_has_a_row_per_result(fake_doc: dict[str, Any]) -> None:
    table = format_table(fake_doc).splitlines()
    header = next(line for line in table if line.startswith("setting"))
    assert "[min-max]" in header  # two repeats: the spread is shown
    assert sum(1 for line in table if line.startswith(("R=", "seed-", "naive-"))) == 6
    full = format_full_table(fake_doc).splitlines()
    assert full[0].startswith("contender")
    assert "x seed-sequential" in full[0]


def test_worker_deletes_on_the_fake_target() -> None:
    # GIVEN delete-by worker: the fake function deletes the message it was given
    doc = asyncio.run(
        run_bench(
            tiny(
                receivers=(2,), max_in_flight=(8,), repeats=1, delete_by="worker", calibrate=False
            ),
            progress_stream=io.StringIO(),
        )
    )
    for result in doc["results"]:
        run = result["runs"][0]
        # THEN the consumer (and the baselines) delete nothing, the worker everything
        assert run["deleted"] == 0
        assert "DeleteMessageBatch" not in run["api_calls"]
        assert run["api_calls"]["DeleteMessageBatch (worker)"] == 120


def test_an_unfinished_run_is_reported_incomplete() -> None:
    # GIVEN a run time limit far below what 200 x 20 ms sequential invokes need
    config = tiny(
        messages=200,
        receivers=(1,),
        max_in_flight=(1,),
        repeats=1,
        baselines=("seed-sequential",),
        calibrate=False,
        warmup_messages=1,
        invoke_latency=LatencyModel(20.0),
        run_timeout_s=0.3,
    )
    doc = asyncio.run(run_bench(config, progress_stream=io.StringIO()))
    for result in doc["results"]:
        run = result["runs"][0]
        assert run["complete"] is False
        assert run["succeeded"] < 200
        assert result["summary"]["complete"] is False
    assert "did not finish" in format_table(doc)


def test_a_stalled_run_fails_with_an_error() -> None:
    # GIVEN invokes far slower than the stall limit: no message can succeed in time
    config = tiny(
        messages=20,
        receivers=(1,),
        max_in_flight=(1,),
        repeats=1,
        baselines=(),
        calibrate=False,
        warmup_messages=1,
        invoke_latency=LatencyModel(60_000.0),
        stall_timeout_s=0.2,
    )
    # WHEN the bench runs, THEN it gives up with a message that names the problem
    with pytest.raises(BenchError, match=r"no message succeeded for 0.2 s \(0 of 1 done\)"):
        asyncio.run(run_bench(config, progress_stream=io.StringIO()))


# -- baselines -------------------------------------------------------------------------------


class FailOn:
    """A dispatcher that fails the messages whose body is in `bad`, and records the rest."""

    operation = "Invoke"

    def __init__(self, tracker: Tracker, bad: set[str]) -> None:
        self.tracker = tracker
        self.bad = bad
        self.seen: list[str] = []

    async def dispatch(self, message: Message) -> None:
        self.seen.append(message.body)
        if message.body in self.bad:
            raise DispatchError("no", message_id=message.message_id)
        self.tracker.succeeded()


async def _baseline(
    runner: Any, bodies: list[str], bad: set[str], target: int
) -> tuple[FailOn, Stats, FakeQueue]:
    queue = FakeQueue()
    queue.send_many(bodies)
    tracker = Tracker(target)
    dispatcher = FailOn(tracker, bad)
    stats = Stats()
    await asyncio.wait_for(
        runner(
            queue=queue,
            dispatcher=dispatcher,
            tracker=tracker,
            delete_by="consumer",
            wait_time_seconds=0,
            stats=stats,
        ),
        timeout=10,
    )
    return dispatcher, stats, queue


@pytest.mark.asyncio
async def test_seed_sequential_abandons_a_batch_at_its_first_failure() -> None:
    # GIVEN ten messages, the fourth failing; the run ends after the first three
    bodies = [f"m{i}" for i in range(10)]
    dispatcher, stats, queue = await _baseline(seed_sequential, bodies, {"m3"}, target=3)
    # THEN like bluebird's .each, nothing after the failure was invoked
    assert dispatcher.seen == ["m0", "m1", "m2", "m3"]
    assert stats.failed == 1
    # AND the three that succeeded were deleted in one batch call
    assert stats.api_calls == {"ReceiveMessage": 1, "DeleteMessageBatch": 1}
    assert stats.deleted == 3
    assert len(queue) == 7


@pytest.mark.asyncio
async def test_naive_gather_dispatches_the_whole_batch_at_once() -> None:
    bodies = [f"m{i}" for i in range(10)]
    dispatcher, stats, queue = await _baseline(naive_gather, bodies, {"m3"}, target=9)
    assert sorted(dispatcher.seen) == sorted(bodies)
    assert stats.failed == 1
    assert stats.deleted == 9
    assert len(queue) == 1


# -- pieces ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_fake_targets_queue_memory_stays_bounded() -> None:
    # GIVEN the fake target's queue, which received and deleted many more messages than it holds
    queue = FakeQueue(visibility_timeout=60)
    for _ in range(300):
        queue.send_many(["x"] * 10)
        messages = await queue.receive(max_messages=10, wait_time_seconds=0)
        await queue.delete_batch([(str(i), m.receipt_handle) for i, m in enumerate(messages)])
    # THEN its visibility heap does not keep the 3,000 deleted ones until they time out
    assert len(queue) == 0
    assert queue.invisible_entries <= 1024 + 10


def test_progress_writes_a_line_per_step_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(3, stream)
    progress.step("one")
    progress.step("two", "detail")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[" + "#" * 10 + "." * 20 + "] 1/3")
    assert lines[1].endswith("two: detail")
