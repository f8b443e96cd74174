"""The runner: warm up, calibrate, then every contender once per repeat, and the HTTP check.

Repeats are interleaved (repeat 1 of every contender, then repeat 2...), so a neighbour's load
on this shared machine falls on all of them alike. One run is `asyncloop._bench._measure`'s;
the document it returns is `asyncloop._bench._summary`'s.

On the fake target without ``--messages``, each run is sized to last about `run_seconds` at
the rate its setting's ceilings predict (`_messages`), so a sweep from C=1 to C=256 under
AWS-like latencies takes seconds per point, not minutes. With `http_check` (the default
command), the sweep's settings are then run on moto too, where moto's calibrated ceiling
leaves room; the others are reported as emulator-bound, not measured.

After the sweep, `asyncloop._bench._recommend.recommend` picks the smallest setting within 5% of
the best throughput and names the ceiling that bounds it.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from ._config import TRANSPORTS, BenchConfig, BenchError, Setting
from ._measure import CONTENDER, RunResult, measure
from ._node_baseline import NODE_BASELINE, baseline_setting, unavailable_reason
from ._progress import Progress
from ._provenance import machine_facts
from ._recommend import binding, ceilings, slot_hold_s
from ._summary import calibrated_cpu_ceiling, document, results_of
from ._targets import FakeTarget, Target, make_target, moto_missing

__all__ = ("HTTP_CHECK_SHARE", "run_bench")

# The fake target's CPU-ceiling calibration: a zero-latency consumer at its fastest measured
# setting (R=4 C=256 beat R=8 and C=64/1024 here: more receivers cost more per message).
_CPU_CEILING_SETTING: Final = Setting(4, 256, 10)
# A run sized by time has at least this many messages: fewer make a noisy rate.
_MIN_SIZED_MESSAGES: Final = 50
# The HTTP check runs a setting on the emulator only if the fake measured it below this
# share of the emulator's ceiling: above it, the emulator, not the loop, would be measured.
HTTP_CHECK_SHARE: Final = 0.7
_HTTP_CHECK_MESSAGES: Final = (100, 400)


async def _fake_cpu_ceiling(config: BenchConfig, progress: Progress | None) -> dict[str, Any]:
    """The loop's own ceiling on the fake target: a zero-latency consumer, median of 3."""
    zero = replace(
        config,
        profile="zero",
        latency=None,
        invoke_latency=None,
        worker_ms=None,
        delete_by="consumer",
        backlog=max(config.backlog or 0, 2 * _CPU_CEILING_SETTING.max_in_flight),
    )
    target = FakeTarget(zero)
    n = 5_000 if config.sized_by_time else min(max(config.n, 5_000), 50_000)
    rates = []
    cpu = []
    for repeat in range(3):
        run = await measure(target, zero, CONTENDER, _CPU_CEILING_SETTING, n, repeat)
        rates.append(run.msgs_s)
        cpu.append(1e6 * run.cpu_s / max(1, run.succeeded))
    if progress is not None:
        progress.step("calibration", f"fake CPU ceiling {statistics.median(rates):,.0f} msgs/s")
    return {
        "cpu_ceiling": {
            "setting": _CPU_CEILING_SETTING.label,
            "messages": n,
            "msgs_s": round(statistics.median(rates), 1),
            "cpu_us_per_message": round(statistics.median(cpu), 2),
        }
    }


def _predicted_msgs_s(
    config: BenchConfig, contender: str, setting: Setting | None, cpu_ceiling: float | None
) -> float | None:
    """The rate the ceilings predict for a contender (None: nothing bounds it)."""
    profile = config.latency_profile()
    invoke, receive, delete = (
        config.invoke_model().mean_s,
        profile.receive.mean_s,
        profile.delete.mean_s,
    )
    if setting is not None:
        bounds = ceilings(
            setting,
            hold_s=slot_hold_s(setting, receive_s=receive, invoke_s=invoke),
            receive_s=receive,
            cpu_msgs_s=cpu_ceiling,
        )
        found = binding(bounds)
        return None if found is None else found[1]
    # The baselines: a batch of 10 per round of receive, invokes (in turn or gathered), delete.
    # Another baseline is sized as a gathering one: a guess, but never the whole cap of
    # messages at a sequential rate.
    per_batch = {
        "seed-sequential": receive + 10 * invoke + delete,
        "naive-gather": receive + invoke + delete,
    }.get(contender, receive + invoke + delete)
    rates = [r for r in (cpu_ceiling, 10 / per_batch if per_batch else None) if r]
    return min(rates) if rates else None


def _messages(config: BenchConfig, predicted: float | None) -> int:
    """Messages for one run: fixed, or sized to last about `run_seconds` (see the module)."""
    if not config.sized_by_time or predicted is None:
        return config.n
    return int(min(config.n, max(_MIN_SIZED_MESSAGES, predicted * config.run_seconds)))


async def run_bench(
    config: BenchConfig,
    *,
    progress_stream: TextIO | None = None,
    argv: list[str] | None = None,
    on_target: Callable[[Target], None] | None = None,
) -> dict[str, Any]:
    """Run the whole benchmark described by `config`; return the results document."""
    config = config.resolved()
    missing = moto_missing(config)
    if missing is not None:
        raise BenchError(missing)
    settings = config.settings()
    skipped = unavailable_reason(config) if NODE_BASELINE in (config.baselines or ()) else None
    if skipped is not None:
        config = replace(
            config, baselines=tuple(b for b in config.baselines or () if b != NODE_BASELINE)
        )
    contenders: list[tuple[str, Setting | None]] = [(CONTENDER, s) for s in settings]
    contenders += [
        (name, baseline_setting(config) if name == NODE_BASELINE else None)
        for name in config.baselines or ()
    ]
    transports = config.transport or ()
    steps = len(transports) + len(contenders) * config.repeats + (1 if config.calibrate else 0)
    if config.http_check:
        steps += 2 + len(settings)
    progress = Progress(steps, progress_stream)
    if skipped is not None:
        progress.note(f"skipping the {NODE_BASELINE} baseline: {skipped}")
    machine = machine_facts()
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    runs: list[RunResult] = []
    calibration: dict[str, Any] = {}
    target = make_target(config)
    if on_target is not None:
        on_target(target)
    async with target:
        # Warm-up: imports, connection pools, moto's first-request costs. Not recorded. At
        # the widest setting: the fastest, so it costs the least time. Once per transport:
        # each has imports and first calls of its own.
        warm_n = max(1, min(config.n, config.warmup_messages))
        for transport in transports:
            widest = max(
                (s for s in settings if s.transport == transport),
                key=lambda s: (s.max_in_flight, s.receivers),
            )
            await measure(target, config, CONTENDER, widest, warm_n, -1)
            named = f" {transport}" if config.several_transports else ""
            progress.step(f"warm-up{named}", f"{warm_n} messages")
        if config.calibrate:
            if config.target == "fake":
                calibration = await _fake_cpu_ceiling(config, progress)
            else:
                calibration = await target.calibrate()
                progress.step("calibration", _describe_calibration(calibration))
        cpu_ceiling = calibrated_cpu_ceiling(config, calibration)
        sizes = {
            (contender, setting): _messages(
                config, _predicted_msgs_s(config, contender, setting, cpu_ceiling)
            )
            for contender, setting in contenders
        }
        for repeat in range(config.repeats):
            for contender, setting in contenders:
                n = sizes[(contender, setting)]
                run = await measure(target, config, contender, setting, n, repeat)
                runs.append(run)
                label = setting.name(with_transport=config.several_transports) if setting else ""
                state = "" if run.complete else " (INCOMPLETE)"
                progress.step(
                    f"{contender} {label}".strip(),
                    f"{run.msgs_s:,.0f} msgs/s{state} (repeat {repeat + 1}/{config.repeats})",
                )
        description = target.describe()
    check: dict[str, Any] | None = None
    if config.http_check:
        check = await _http_check(config, runs, progress)
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return document(config, runs, calibration, machine, description, created_at, argv, check)


async def _http_check(
    config: BenchConfig, fake_runs: list[RunResult], progress: Progress
) -> dict[str, Any]:
    """The sweep's settings on the HTTP target where its ceiling allows (see the module)."""
    check_config = replace(
        config,
        target=config.http_check or "moto",
        http_check=None,
        messages=_HTTP_CHECK_MESSAGES[1],
        baselines=(),
        repeats=1,
    ).resolved()
    by_setting: dict[Setting, list[float]] = {}
    for run in fake_runs:
        if run.contender == CONTENDER and run.setting is not None:
            by_setting.setdefault(run.setting, []).append(run.msgs_s)
    fake_rate = {s: statistics.median(r) for s, r in by_setting.items()}
    runs: list[RunResult] = []
    skipped: list[dict[str, Any]] = []
    target = make_target(check_config)
    async with target:
        first = min(fake_rate, key=lambda s: (s.max_in_flight, s.receivers))
        await measure(target, check_config, CONTENDER, first, 50, -1)
        progress.step(f"{check_config.target} warm-up", "50 messages")
        calibration = await target.calibrate()
        progress.step(f"{check_config.target} calibration", _describe_calibration(calibration))
        emulator = calibration.get("emulator_ceiling") or {}
        ceiling = float(emulator.get("msgs_s") or 0.0)
        threshold = HTTP_CHECK_SHARE * ceiling
        low, high = _HTTP_CHECK_MESSAGES
        for setting in sorted(fake_rate, key=lambda s: (s.receivers, s.max_in_flight)):
            rate = fake_rate[setting]
            if rate > threshold:
                skipped.append({"label": setting.label, "fake_msgs_s": round(rate, 3)})
                progress.step(
                    f"{check_config.target} {setting.label}",
                    f"skipped: the fake's {rate:,.0f} msgs/s is above {threshold:,.0f}",
                )
                continue
            n = int(min(high, max(low, rate * config.run_seconds)))
            run = await measure(target, check_config, CONTENDER, setting, n, 0)
            runs.append(run)
            progress.step(f"{check_config.target} {setting.label}", f"{run.msgs_s:,.0f} msgs/s")
        description = target.describe()
    results = results_of(check_config, runs, calibration)
    for result in results:
        setting = Setting(**result["setting"])
        fake = fake_rate.get(setting)
        median = result["summary"]["msgs_s"]["median"]
        result["summary"]["ratio_to"] = {"fake": round(median / fake, 3) if fake else None}
    return {
        "target": description,
        "calibration": calibration,
        "threshold_msgs_s": round(threshold, 3),
        "results": results,
        "skipped": skipped,
    }


def _describe_calibration(calibration: dict[str, Any]) -> str:
    parts = []
    for transport in TRANSPORTS:
        floor = calibration.get(f"{transport}_floor")
        if floor:
            parts.append(f"{transport} floor {floor['us_per_message']:.0f} us/msg")
    ceiling = calibration.get("emulator_ceiling")
    if ceiling:
        parts.append(f"emulator ceiling {ceiling['msgs_s']:,.0f} msgs/s")
    return ", ".join(parts) or "none"
