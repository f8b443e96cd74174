"""The results document: the runs summarised per contender and setting (medians, latency,
calls and CPU per message, the ceilings that bound each setting, ratios to the baselines),
the parameters and provenance, and the recommendation record (`asyncloop._bench._recommend`).
Its shape is ``results.schema.json``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any, Final

from asyncloop import LatencyHistogram

from ._config import BenchConfig, Setting
from ._measure import CONTENDER, RunResult
from ._node_baseline import NODE_BASELINE, baseline_label
from ._provenance import versions
from ._recommend import Point, binding, ceilings, recommend, slot_hold_s
from ._targets import BASELINE_TRANSPORT
from ._workload import BODY_BYTES

__all__ = (
    "SCHEMA_VERSION",
    "calibrated_cpu_ceiling",
    "document",
    "results_of",
    "setting_dict",
)

SCHEMA_VERSION: Final = 2
# Operations that are the contender's own SQS calls (not the feeder's, not the worker's).
SQS_OPERATIONS: Final = (
    "ReceiveMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibilityBatch",
    # node-sqs-consumer's: one call per message.
    "DeleteMessage",
    "ChangeMessageVisibility",
)
# The baselines' concurrency, for their Little's-law ceiling.
_BASELINE_CONCURRENCY: Final = {"seed-sequential": 1, "naive-gather": 10}


def _merge(histograms: list[LatencyHistogram]) -> dict[str, float | None]:
    merged = LatencyHistogram()
    for histogram in histograms:
        if histogram.count:
            merged.merge(histogram)
    return merged.summary_ms()


def _summarise(
    runs: list[RunResult],
    *,
    concurrency: int,
    invoke_latency_s: float,
    cpu_ceiling: float | None,
    emulator_ceiling: float | None,
    receivers_ceiling: float | None = None,
) -> dict[str, Any]:
    rates = [run.msgs_s for run in runs]
    succeeded = sum(run.succeeded for run in runs)
    calls: Counter[str] = Counter()
    for run in runs:
        calls.update(run.calls)
    per_message = (
        {op: round(n / succeeded, 4) for op, n in sorted(calls.items())} if succeeded else {}
    )
    sqs = sum(calls[op] for op in SQS_OPERATIONS)
    # Every request the target served, the feeder's and the worker's included.
    requests = [sum(run.calls.values()) / run.duration_s for run in runs if run.duration_s > 0]

    def per_1k(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return round(statistics.median(known), 6) if known else None

    median = statistics.median(rates)
    little: dict[str, Any] | None = None
    c_over_l = concurrency / invoke_latency_s if invoke_latency_s > 0 else None
    bounds = [
        b for b in (c_over_l, receivers_ceiling, cpu_ceiling, emulator_ceiling) if b is not None
    ]
    if bounds:
        ceiling = min(bounds)
        little = {
            "concurrency": concurrency,
            "latency_s": round(invoke_latency_s, 6),
            "c_over_l": None if c_over_l is None else round(c_over_l, 3),
            "receivers_ceiling_msgs_s": (
                None if receivers_ceiling is None else round(receivers_ceiling, 3)
            ),
            "cpu_ceiling_msgs_s": None if cpu_ceiling is None else round(cpu_ceiling, 3),
            "emulator_ceiling_msgs_s": (
                None if emulator_ceiling is None else round(emulator_ceiling, 3)
            ),
            "ceiling_msgs_s": round(ceiling, 3),
            "efficiency": round(median / ceiling, 4),
        }
    return {
        "repeats": len(runs),
        "complete": all(run.complete for run in runs),
        "msgs_s": {
            "median": round(median, 3),
            "min": round(min(rates), 3),
            "max": round(max(rates), 3),
        },
        "latency_ms": {
            "receive_to_done": _merge([run.stats.receive_to_done for run in runs]),
            "send_to_done": _merge([run.stats.send_to_done for run in runs]),
        },
        "api_calls_per_message": per_message,
        "sqs_calls_per_message": round(sqs / succeeded, 4) if succeeded else None,
        "cpu_s_per_1k": per_1k(
            [1000 * r.cpu_s / r.succeeded if r.succeeded else None for r in runs]
        ),
        "process_cpu_s_per_1k": per_1k(
            [1000 * r.process_cpu_s / r.succeeded if r.succeeded else None for r in runs]
        ),
        "server_cpu_s_per_1k": per_1k(
            [
                1000 * r.server_cpu_s / r.succeeded
                if r.succeeded and r.server_cpu_s is not None
                else None
                for r in runs
            ]
        ),
        "server_requests_s": round(statistics.median(requests), 3) if requests else None,
        "peak_rss_mb": round(max(run.peak_rss_bytes for run in runs) / 2**20, 2),
        "littles_law": little,
        "emulator_ceiling_ratio": (
            round(median / emulator_ceiling, 4) if emulator_ceiling else None
        ),
        "ratio_to": {},
        "of_best": None,
        "bound": None,
    }


def calibrated_cpu_ceiling(
    config: BenchConfig, calibration: dict[str, Any], transport: str | None = None
) -> float | None:
    """msgs/s one core's CPU allows: the fake's loop ceiling, else 1 / the CPU floor per
    message of `transport` (the SDK's when that transport's floor was not measured)."""
    if "cpu_ceiling" in calibration:
        return float(calibration["cpu_ceiling"]["msgs_s"])
    floor = calibration.get(f"{transport}_floor") or calibration.get("sdk_floor")
    if floor and floor.get("us_per_message"):
        return 1e6 / float(floor["us_per_message"])
    return None


def setting_dict(setting: Setting, *, with_transport: bool) -> dict[str, Any]:
    """results.json's ``setting``: R, C, B, (the consumer's) transport, and its prefetch
    when it has one (absent: 0, as in results written before the bench swept it)."""
    out: dict[str, Any] = {
        "receivers": setting.receivers,
        "max_in_flight": setting.max_in_flight,
        "batch_size": setting.batch_size,
    }
    if with_transport:
        out["transport"] = setting.transport
    if setting.prefetch:
        out["prefetch"] = setting.prefetch
    return out


def document(
    config: BenchConfig,
    runs: list[RunResult],
    calibration: dict[str, Any],
    machine: dict[str, Any],
    target: dict[str, Any],
    created_at: str,
    argv: list[str] | None,
    check: dict[str, Any] | None = None,
) -> dict[str, Any]:
    latency_s = config.invoke_model().mean_s
    results = results_of(config, runs, calibration)
    recommendation = _recommendation(config, results, calibration, check)
    return {
        "schema": "asyncloop-bench",
        "schema_version": SCHEMA_VERSION,
        "created_at": created_at,
        "command": argv,
        "machine": machine,
        "versions": versions(config.target),
        "target": target,
        "parameters": {
            "target": config.target,
            "profile": config.latency_profile().to_dict(),
            "messages": config.n,
            "sized_by_time": config.sized_by_time,
            "run_seconds": config.run_seconds,
            "receivers": list(config.receivers or ()),
            "max_in_flight": list(config.max_in_flight or ()),
            "batch_size": list(config.batch_size or ()),
            "transport": list(config.transport or ()),
            "prefetch": list(config.prefetch or (0,)),
            "delete_by": config.delete_by,
            "invoke_latency_ms": str(config.invoke_model()),
            "invoke_latency_mean_s": round(latency_s, 6),
            "slot_latency_mean_s": round(latency_s + config.latency_profile().receive.mean_s, 6),
            "repeats": config.repeats,
            "baselines": list(config.baselines or ()),
            "http_check": config.http_check,
            "endpoint_url": config.endpoint_url,
            "region": config.region,
            "backlog": config.backlog,
            "wait_time_seconds": config.wait_time_seconds,
            "warmup_messages": config.warmup_messages,
            "body_bytes": BODY_BYTES,
            "invocation_type": config.invocation_type,
            "payload": "seed",
        },
        "calibration": calibration,
        "results": results,
        "recommendation": recommendation,
        "http_check": check,
    }


def results_of(
    config: BenchConfig, runs: list[RunResult], calibration: dict[str, Any]
) -> list[dict[str, Any]]:
    """One entry per contender and setting: its summary (with ceilings) and its runs."""
    emulator = calibration.get("emulator_ceiling")
    emulator_ceiling = float(emulator["msgs_s"]) if emulator else None
    receive_s = config.latency_profile().receive.mean_s
    invoke_s = config.invoke_model().mean_s
    # L of Little's law: a slot is held over the receive and the invoke (see _recommend).
    latency_s = receive_s + invoke_s
    groups: dict[tuple[str, Setting | None], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.contender, run.setting), []).append(run)
    results: list[dict[str, Any]] = []
    for (contender, setting), group in groups.items():
        concurrency = (
            setting.max_in_flight if setting is not None else _BASELINE_CONCURRENCY[contender]
        )
        receivers_ceiling = (
            setting.receivers * setting.batch_size / receive_s
            if setting is not None and receive_s > 0
            else None
        )
        # The CPU ceiling is the transport's floor: the consumer's own, the Python baselines'
        # aioboto3; none for the Node process.
        transport = setting.transport if contender == CONTENDER and setting else None
        own_cpu_ceiling = (
            None
            if contender == NODE_BASELINE
            else calibrated_cpu_ceiling(config, calibration, transport or BASELINE_TRANSPORT)
        )
        # A prefetching setting's slot waits for no receive (`slot_hold_s`)
        hold_s = (
            latency_s
            if setting is None
            else slot_hold_s(setting, receive_s=receive_s, invoke_s=invoke_s)
        )
        summary = _summarise(
            group,
            concurrency=concurrency,
            invoke_latency_s=hold_s,
            cpu_ceiling=own_cpu_ceiling,
            emulator_ceiling=emulator_ceiling,
            receivers_ceiling=receivers_ceiling,
        )
        if setting is not None:
            found = binding(
                ceilings(
                    setting,
                    hold_s=hold_s,
                    receive_s=receive_s,
                    cpu_msgs_s=own_cpu_ceiling,
                    emulator_msgs_s=emulator_ceiling,
                )
            )
            if found is not None:
                summary["bound"] = {"name": found[0], "msgs_s": round(found[1], 3)}
        results.append(
            {
                "contender": contender,
                "kind": "consumer" if contender == CONTENDER else "baseline",
                "label": (
                    contender
                    if setting is None
                    else setting.name(with_transport=config.several_transports)
                    if contender == CONTENDER
                    else baseline_label(setting)
                ),
                "setting": None
                if setting is None
                else setting_dict(setting, with_transport=contender == CONTENDER),
                "summary": summary,
                "runs": [run.to_dict() for run in group],
            }
        )
    baselines = {
        r["contender"]: r["summary"]["msgs_s"]["median"] for r in results if r["kind"] == "baseline"
    }
    for result in results:
        median = result["summary"]["msgs_s"]["median"]
        result["summary"]["ratio_to"] = {
            name: round(median / value, 3) if value else None for name, value in baselines.items()
        }
    best = max((r["summary"]["msgs_s"]["median"] for r in results), default=0.0)
    for result in results:
        median = result["summary"]["msgs_s"]["median"]
        result["summary"]["of_best"] = round(median / best, 4) if best else None
    return results


def _recommendation(
    config: BenchConfig,
    results: list[dict[str, Any]],
    calibration: dict[str, Any],
    check: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """The recommendation record: `asyncloop._bench._recommend.recommend` over the consumer's
    points."""
    points = {}
    for r in results:
        if r["kind"] != "consumer":
            continue
        point = Point(
            setting=Setting(**r["setting"]),
            msgs_s=r["summary"]["msgs_s"]["median"],
            p99_ms=r["summary"]["latency_ms"]["receive_to_done"]["p99"],
            complete=r["summary"]["complete"],
        )
        points[point.setting] = (point, r)
    chosen = recommend([point for point, _ in points.values()])
    if chosen is None:
        return None
    summary = points[chosen.point.setting][1]["summary"]
    # One core's CPU limit per transport whose floor was measured (the HTTP check's
    # calibration when there is one: the fake target has no AWS calls to measure)
    measured = (check or {}).get("calibration") or calibration
    ceilings: dict[str, float] = {}
    for transport in ("sdk", "lean"):
        floor = measured.get(f"{transport}_floor")
        if floor and floor.get("us_per_message"):
            ceilings[transport] = round(1e6 / float(floor["us_per_message"]), 1)
    sdk_ceiling = ceilings.get("sdk")
    emulator = ((check or {}).get("calibration") or calibration).get("emulator_ceiling")
    return {
        "rule": "the smallest setting (by max in flight, then receivers, then batch size) "
        f"whose median msgs/s is within {chosen.tolerance:.0%} of the best",
        "tolerance": chosen.tolerance,
        "label": chosen.point.setting.name(with_transport=config.several_transports),
        "setting": setting_dict(chosen.point.setting, with_transport=True),
        "msgs_s": chosen.point.msgs_s,
        "p99_ms": chosen.point.p99_ms,
        "best_label": chosen.best.setting.name(with_transport=config.several_transports),
        "best_msgs_s": chosen.best.msgs_s,
        "bound": summary["bound"],
        "sdk_cpu_ceiling_msgs_s": sdk_ceiling,
        "cpu_ceilings_msgs_s": ceilings,
        "emulator_ceiling_msgs_s": None if not emulator else emulator.get("msgs_s"),
    }
