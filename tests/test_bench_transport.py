"""``asyncloop bench --transport LIST``: parsing and validation, the sweep over transports, and
how the table, report.md, --compare and the recommendation show a row per transport beside
each transport's CPU floor. The runs themselves are in tests/integration/test_bench_targets.py.
"""

from __future__ import annotations

import asyncio
import copy
import io
import types
from pathlib import Path
from typing import Any

import pytest
from _bench_helpers import parse

import asyncloop
from asyncloop._bench._compare import compare
from asyncloop._bench._config import BenchConfig, BenchError, LatencyModel, Setting
from asyncloop._bench._plot import write_plot
from asyncloop._bench._recommend import Point, recommend
from asyncloop._bench._report import validate
from asyncloop._bench._runner import run_bench
from asyncloop._bench._summary import calibrated_cpu_ceiling
from asyncloop._bench._tables import format_full_table, format_table, recommendation_lines
from asyncloop._cli_bench import config_from_args


@pytest.fixture(scope="module")
def fake_doc() -> dict[str, Any]:
    """A tiny fake sweep (two settings, no baselines): the shape the HTTP targets write too."""
    config = BenchConfig(
        target="fake",
        messages=40,
        receivers=(1,),
        max_in_flight=(1, 8),
        profile="zero",
        invoke_latency=LatencyModel(1.0),
        baselines=("naive-gather",),
        warmup_messages=10,
    )
    return asyncio.run(run_bench(config, progress_stream=io.StringIO(), argv=["asyncloop"]))


def _floor(transport: str, us: float) -> dict[str, Any]:
    return {
        "transport": transport,
        "receive_us_per_call": us * 4,
        "invoke_us_per_call": us * 0.6,
        "delete_us_per_call": us * 0.4,
        "messages_per_receive": 10.0,
        "us_per_message": us,
    }


def on_fauxqs(doc: dict[str, Any], transports: tuple[str, ...]) -> dict[str, Any]:
    """`doc` as a fauxqs run of `transports` would write it: each consumer row once per
    transport (lean at half the CPU), and the floors of each transport in the calibration."""
    out = copy.deepcopy(doc)
    out["parameters"]["target"] = "fauxqs"
    out["parameters"]["transport"] = list(transports)
    several = len(transports) > 1
    rows = []
    for row in out["results"]:
        if row["kind"] != "consumer":
            continue
        for transport in transports:
            copied = copy.deepcopy(row)
            copied["setting"]["transport"] = transport
            if several:
                copied["label"] = f"{row['label']} {transport}"
            if transport == "lean":
                copied["summary"]["cpu_s_per_1k"] = row["summary"]["cpu_s_per_1k"] / 2
            rows.append(copied)
    out["results"] = rows + [r for r in out["results"] if r["kind"] != "consumer"]
    out["calibration"] = {
        **{f"{t}_floor": _floor(t, 230.0 if t == "sdk" else 90.0) for t in ("sdk", *transports)},
        "emulator_ceiling": {
            "workers": 16,
            "messages": 500,
            "msgs_s": 5000.0,
            "requests_s": 7000.0,
            "server_cpu_utilisation": None,
        },
    }
    out["recommendation"]["setting"]["transport"] = transports[-1]
    return out


# -- the flag ----------------------------------------------------------------------------------


def test_transport_joins_the_sweep_as_the_innermost_product() -> None:
    # GIVEN --transport sdk,lean on an HTTP target
    args = parse(["--target", "fauxqs", "--transport", "sdk,lean", "--receivers", "1,2"])
    config = config_from_args(args).resolved()
    # THEN every setting is measured on both, side by side, and named with its transport
    settings = config.settings()
    assert [(s.receivers, s.max_in_flight, s.transport) for s in settings][:4] == [
        (1, 4, "sdk"),
        (1, 4, "lean"),
        (1, 16, "sdk"),
        (1, 16, "lean"),
    ]
    assert len(settings) == 2 * 4 * 2
    assert config.several_transports
    assert settings[1].name(with_transport=True) == "R=1 C=4 B=10 lean"
    assert settings[1].name(with_transport=False) == settings[1].label == "R=1 C=4 B=10"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("quic", "--transport must be a comma-separated list of sdk, lean, got 'quic'"),
        ("none", "--transport must be a comma-separated list of sdk, lean, got 'none'"),
        (",", "--transport must be a comma-separated list of sdk, lean, got ','"),
    ],
)
def test_a_bad_transport_is_a_usage_error(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(["--target", "moto", "--transport", value])
    # WHEN the command runs THEN it exits 2 with one line naming the flag and the choices
    assert args.handler(args) == 2
    assert capsys.readouterr().err.strip() == f"asyncloop: error: {message}"


_DEFAULT = asyncloop.AwsConfig().transport
_OTHER = "sdk" if _DEFAULT == "lean" else "lean"


@pytest.mark.parametrize("value", ["sdk,lean", _OTHER])
def test_the_fake_target_takes_no_transport_but_the_default(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the fake target, whose queue is in memory
    args = parse(["--target", "fake", "--transport", value])
    # WHEN the command runs THEN it is a usage error that says where the flag applies
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert "transport applies to the moto, fauxqs and aws targets" in err
    assert f"got {value}" in err
    # AND the default alone is accepted there
    assert config_from_args(parse(["--transport", _DEFAULT])).resolved().transport == (_DEFAULT,)


def test_the_default_transport_is_asyncloops(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no --transport THEN the sweep uses AwsConfig's default
    assert BenchConfig(target="moto").resolved().transport == (asyncloop.AwsConfig().transport,)
    # WHEN asyncloop's default becomes lean
    monkeypatch.setattr(asyncloop, "AwsConfig", lambda: types.SimpleNamespace(transport="lean"))
    # THEN the bench follows it, and on the fake target lean is the one accepted
    assert BenchConfig(target="moto").resolved().transport == ("lean",)
    assert BenchConfig(target="fake", transport=("lean",)).resolved().transport == ("lean",)
    with pytest.raises(BenchError, match="only transport is the default, lean"):
        BenchConfig(target="fake", transport=("sdk",))


# -- the report --------------------------------------------------------------------------------


def test_the_table_has_a_row_per_transport_beside_both_floors(fake_doc: dict[str, Any]) -> None:
    # GIVEN results of a fauxqs sweep over sdk and lean
    doc = on_fauxqs(fake_doc, ("sdk", "lean"))
    validate(doc)
    # WHEN the table is formatted
    lines = format_table(doc).splitlines()
    # THEN it fits 120 columns, names the transports swept, and has each setting on each
    assert max(len(line) for line in lines) <= 120, max(lines, key=len)
    assert "transport sdk,lean" in " ".join(line.strip() for line in lines[:2])
    rows = {line.split()[3]: line for line in lines if line.startswith("R=1 C=8 B=10 ")}
    assert sorted(rows) == ["lean", "sdk"]
    # AND each row's CPU us/msg is its own (lean's is half of sdk's here)
    cpu = {t: float(row.split()[8].replace(",", "")) for t, row in rows.items()}
    assert cpu["lean"] == pytest.approx(cpu["sdk"] / 2, rel=0.05)
    # AND both floors are there to read them against
    assert any(line.startswith("floor sdk: 230 us/msg = receive 920/10") for line in lines)
    assert any(line.startswith("floor lean: 90 us/msg") for line in lines)
    assert any(line.startswith("floor: ") for line in lines)
    # AND report.md's table names the transport in the setting column, its notes both floors
    full = format_full_table(doc)
    assert "R=1 C=8 B=10 lean" in full
    assert "CPU floor sdk: 230 us/msg" in full
    assert "CPU floor lean: 90 us/msg" in full


def test_one_transport_keeps_the_labels_and_the_fake_names_none(
    fake_doc: dict[str, Any],
) -> None:
    # GIVEN one transport on fauxqs, and the fake's own results
    lean = format_table(on_fauxqs(fake_doc, ("lean",))).splitlines()
    fake = format_table(fake_doc).splitlines()
    # THEN rows keep R/C/B alone, the run's line says which transport, the fake's says none
    assert any(line.startswith("R=1 C=8 B=10  ") for line in lean)
    assert "transport lean" in lean[0]
    assert "transport" not in fake[0]
    assert not any(line.startswith("floor") for line in fake)


def test_the_sdk_ceiling_line_names_where_the_floor_was_measured(
    fake_doc: dict[str, Any],
) -> None:
    # GIVEN a fauxqs run whose recommendation is above one core's SDK ceiling
    doc = on_fauxqs(fake_doc, ("sdk", "lean"))
    doc["recommendation"]["sdk_cpu_ceiling_msgs_s"] = doc["recommendation"]["msgs_s"] / 2
    # THEN the warning says the floor was measured on fauxqs, not on moto
    text = " ".join(line.strip() for line in recommendation_lines(doc))
    assert "SDK CPU (measured on fauxqs)" in text


@pytest.mark.parametrize(
    ("lean_share", "sdk_share", "expected", "absent"),
    [
        # the recommended setting's own transport binds: its line, naming that transport
        (0.5, 0.25, "one core's CPU on the lean transport (measured on fauxqs) caps", "aioboto3"),
        # only the sdk transport would bind: said as what --transport sdk would do
        (
            4.0,
            0.5,
            "with --transport sdk (aioboto3), one core's SDK CPU (measured on fauxqs)",
            None,
        ),
        # neither binds: no CPU line at all
        (4.0, 2.0, None, "one core"),
    ],
)
def test_the_cpu_ceiling_line_follows_the_recommended_settings_transport(
    fake_doc: dict[str, Any],
    lean_share: float,
    sdk_share: float,
    expected: str | None,
    absent: str | None,
) -> None:
    # GIVEN a recommendation on the lean transport and both transports' one-core ceilings
    doc = on_fauxqs(fake_doc, ("sdk", "lean"))
    rec = doc["recommendation"]
    rec["setting"]["transport"] = "lean"
    rec["sdk_cpu_ceiling_msgs_s"] = rec["msgs_s"] * sdk_share
    rec["cpu_ceilings_msgs_s"] = {
        "sdk": rec["msgs_s"] * sdk_share,
        "lean": rec["msgs_s"] * lean_share,
    }
    # WHEN the recommendation is written
    text = " ".join(line.strip() for line in recommendation_lines(doc))
    # THEN the CPU line is the one for the ceiling that binds, or none
    if expected is not None:
        assert expected in text
    if absent is not None:
        assert absent not in text


def test_the_plot_draws_a_line_per_transport(fake_doc: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    doc = on_fauxqs(fake_doc, ("sdk", "lean"))
    assert write_plot(doc, tmp_path / "plot.png") is True
    assert (tmp_path / "plot.png").stat().st_size > 0


# -- results written before the transport was recorded, --compare ------------------------------


def test_results_without_a_transport_read_as_sdk_in_compare(fake_doc: dict[str, Any]) -> None:
    # GIVEN results from before the transport was recorded (no parameter, no setting field)
    old = on_fauxqs(fake_doc, ("sdk",))
    del old["parameters"]["transport"]
    del old["calibration"]["sdk_floor"]["transport"]
    for row in old["results"]:
        if row["setting"] is not None:
            row["setting"].pop("transport", None)
    del old["recommendation"]["setting"]["transport"]
    validate(old)
    # WHEN compared with a sweep of both transports
    new = on_fauxqs(fake_doc, ("sdk", "lean"))
    table = compare(old, new).splitlines()
    rows = {" ".join(line.split()[:4]): line.split() for line in table if line.startswith("R=")}
    # THEN the old rows match the new sdk rows (a change in %), and lean's are new
    assert rows["R=1 C=8 B=10 sdk"][6].endswith("%")
    assert rows["R=1 C=8 B=10 lean"][6] == "new"
    assert "transport (['sdk'] -> ['sdk', 'lean'])" in table[-1]
    # AND against a new sdk-only sweep nothing differs but the numbers
    same = compare(old, on_fauxqs(fake_doc, ("sdk",)))
    assert "transport" not in same
    assert "new" not in same.split()


def test_compare_keeps_sdk_and_lean_rows_apart(fake_doc: dict[str, Any]) -> None:
    # GIVEN one file on sdk and one on lean, same settings
    sdk, lean = on_fauxqs(fake_doc, ("sdk",)), on_fauxqs(fake_doc, ("lean",))
    # WHEN compared THEN no sdk row is set against a lean one: each is gone or new
    table = compare(sdk, lean).splitlines()
    consumer = [line.split() for line in table if line.startswith("R=")]
    assert {(row[3], row[6]) for row in consumer} == {
        ("sdk", "gone"),
        ("lean", "new"),
    }


# -- the recommendation and the CPU ceiling ----------------------------------------------------


def test_of_one_setting_on_two_transports_the_faster_is_recommended() -> None:
    sdk = Point(setting=Setting(2, 64, 10, "sdk"), msgs_s=1000.0)
    lean = Point(setting=Setting(2, 64, 10, "lean"), msgs_s=1030.0)
    bigger = Point(setting=Setting(2, 128, 10, "lean"), msgs_s=1040.0)
    for points in ([sdk, lean, bigger], [bigger, lean, sdk]):
        chosen = recommend(points)
        assert chosen is not None
        assert chosen.point == lean


def test_each_transport_is_bounded_by_its_own_floor() -> None:
    config = BenchConfig(target="fauxqs")
    both = {"sdk_floor": {"us_per_message": 1000.0}, "lean_floor": {"us_per_message": 250.0}}
    assert calibrated_cpu_ceiling(config, both, "sdk") == pytest.approx(1000.0)
    assert calibrated_cpu_ceiling(config, both, "lean") == pytest.approx(4000.0)
    # A transport whose floor was not measured falls back on the SDK's
    assert calibrated_cpu_ceiling(config, {"sdk_floor": both["sdk_floor"]}, "lean") == 1000.0
