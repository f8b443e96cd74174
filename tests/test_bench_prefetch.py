"""``asyncloop bench --prefetch LIST``: parsing and validation, the sweep over prefetch depths
(each run's consumer gets its setting's), how results.json, the labels, --compare and the
recommendation carry it, and Little's law without the receive for a prefetching setting."""

from __future__ import annotations

import asyncio
import copy
import io
from typing import Any

import pytest
from _bench_helpers import parse

from asyncloop import ConsumerConfig
from asyncloop._bench import _measure
from asyncloop._bench._compare import compare
from asyncloop._bench._config import BenchConfig, BenchError, LatencyModel, Setting
from asyncloop._bench._format import setting_text
from asyncloop._bench._recommend import Point, binding, ceilings, recommend, slot_hold_s
from asyncloop._bench._report import validate
from asyncloop._bench._runner import run_bench
from asyncloop._bench._summary import setting_dict
from asyncloop._bench._tables import format_table
from asyncloop._cli_bench import config_from_args


def test_prefetch_parses_sweeps_and_is_checked() -> None:
    # GIVEN --prefetch 0,10 on the command line
    config = config_from_args(parse(["--prefetch", "0,10", "--max-in-flight", "16"])).resolved()
    # THEN every setting is swept without and with a prefetch of 10, labelled by it
    assert config.prefetch == (0, 10)
    assert [s.label for s in config.settings() if s.receivers == 1] == [
        "R=1 C=16 B=10",
        "R=1 C=16 B=10 F=10",
    ]
    # AND without the flag the sweep has the library's default, 0, and labels stay as before
    plain = BenchConfig().resolved()
    assert plain.prefetch == (0,)
    assert all(s.prefetch == 0 and "F=" not in s.label for s in plain.settings())
    with pytest.raises(BenchError, match=r"prefetch values must be in 0\.\.100000, got -1"):
        BenchConfig(prefetch=(-1,))
    with pytest.raises(BenchError, match="prefetch must list at least one value"):
        BenchConfig(prefetch=())


def test_a_setting_writes_its_prefetch_only_when_it_has_one() -> None:
    with_prefetch = Setting(4, 64, 10, "lean", 20)
    written = setting_dict(with_prefetch, with_transport=True)
    assert written == {
        "receivers": 4,
        "max_in_flight": 64,
        "batch_size": 10,
        "transport": "lean",
        "prefetch": 20,
    }
    assert Setting(**written) == with_prefetch
    assert setting_text(written, with_transport=True) == "R=4 C=64 B=10 F=20 lean"
    # An older result (no prefetch key) reads as prefetch 0
    assert "prefetch" not in setting_dict(Setting(4, 64, 10, "lean"), with_transport=True)
    assert Setting(receivers=4, max_in_flight=64, batch_size=10).prefetch == 0


def test_a_prefetching_slot_is_held_for_the_invoke_alone() -> None:
    # GIVEN 20 ms a receive and 30 ms an invoke, R=8 C=64
    plain, prefetching = Setting(8, 64, 10), Setting(8, 64, 10, prefetch=10)
    # THEN a slot is held 50 ms without a prefetch and 30 ms with one
    assert slot_hold_s(plain, receive_s=0.02, invoke_s=0.03) == pytest.approx(0.05)
    hold = slot_hold_s(prefetching, receive_s=0.02, invoke_s=0.03)
    assert hold == pytest.approx(0.03)
    # AND Little's law, 64 / 30 ms, binds below the receivers' 8 x 10 / 20 ms
    bounds = ceilings(prefetching, hold_s=hold, receive_s=0.02)
    assert bounds["receivers R*B/L"] == pytest.approx(4000)
    found = binding(bounds)
    assert found is not None
    assert found[0] == "Little's law C/L"
    assert found[1] == pytest.approx(64 / 0.03)


def _point(c: int, prefetch: int, msgs_s: float) -> Point:
    return Point(setting=Setting(1, c, 10, prefetch=prefetch), msgs_s=msgs_s)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        pytest.param(
            [_point(16, 0, 1000.0), _point(16, 10, 1010.0)], (16, 0), id="as good: no prefetch"
        ),
        pytest.param(
            [_point(16, 0, 800.0), _point(16, 10, 1000.0), _point(32, 0, 1000.0)],
            (16, 10),
            id="a prefetch instead of twice the concurrency",
        ),
    ],
)
def test_the_recommendation_prefers_less_concurrency_then_no_prefetch(
    points: list[Point], expected: tuple[int, int]
) -> None:
    chosen = recommend(points)
    assert chosen is not None
    assert (chosen.point.setting.max_in_flight, chosen.point.setting.prefetch) == expected


def test_a_fake_sweep_gives_each_consumer_its_prefetch_and_writes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the consumer configs the bench builds, recorded
    built: list[ConsumerConfig] = []

    def recording(**fields: Any) -> ConsumerConfig:
        config = ConsumerConfig(**fields)
        built.append(config)
        return config

    monkeypatch.setattr(_measure, "ConsumerConfig", recording)
    # WHEN a tiny fake sweep runs without and with a prefetch of 3
    config = BenchConfig(
        target="fake",
        messages=40,
        receivers=(1,),
        max_in_flight=(2,),
        prefetch=(0, 3),
        profile="zero",
        invoke_latency=LatencyModel(1.0),
        baselines=(),
        warmup_messages=10,
    )
    doc = asyncio.run(run_bench(config, progress_stream=io.StringIO(), argv=["asyncloop"]))
    # THEN each measured run's consumer had its setting's prefetch
    assert {c.prefetch for c in built} == {0, 3}
    # AND results.json carries it, in the schema, in the parameters and the rows' labels
    validate(doc)
    assert doc["parameters"]["prefetch"] == [0, 3]
    labels = sorted(r["label"] for r in doc["results"] if r["kind"] == "consumer")
    assert labels == ["R=1 C=2 B=10", "R=1 C=2 B=10 F=3"]
    # AND the table names the prefetch in its legend
    table = format_table(doc)
    assert "R=1 C=2 B=10 F=3" in table
    assert "F=N: the consumer's prefetch (--prefetch)" in table
    assert max(len(line) for line in table.splitlines()) <= 120
    # AND --compare keeps the two apart
    after = copy.deepcopy(doc)
    text = compare(doc, after)
    assert "R=1 C=2 B=10 F=3" in text
    assert text.count("R=1 C=2 B=10") == 2
