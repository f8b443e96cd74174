"""The tables: the short one the terminal shows (`format_table`, with its legend, the HTTP
check and the recommendation lines) and the full one of report.md (`format_full_table`, with
its notes and the calibration figures)."""

from __future__ import annotations

import json
import textwrap
from typing import Any, Final

from ._config import TRANSPORTS
from ._format import WIDTH, fmt, grid, repeats_text, setting_text, us_per_msg

__all__ = (
    "floor_lines",
    "format_full_table",
    "format_table",
    "recommendation_lines",
    "transports",
)

# What each transport's CPU floor times (asyncloop._bench._targets.calibration).
_FLOOR_CALLS: Final = {
    "sdk": "bare aioboto3 calls",
    "lean": "the lean transport's bare calls",
}


def format_table(doc: dict[str, Any]) -> str:
    """The short table (at most 120 columns), its legend, the HTTP check and the
    recommendation: what the terminal shows. `format_full_table` has every column."""
    params = doc["parameters"]
    spread = params["repeats"] > 1
    headers = [
        "setting",
        "msgs/s",
        *(["[min-max]"] if spread else []),
        "p50 ms",
        "p99 ms",
        "SQS/msg",
        "CPU us/msg",
        "of best",
        "bound (msgs/s)",
    ]
    rows = []
    for result in doc["results"]:
        s = result["summary"]
        lat = s["latency_ms"]["receive_to_done"]
        bound = s.get("bound")
        rows.append(
            [
                result["label"],
                fmt(s["msgs_s"]["median"]) + ("" if s["complete"] else "*"),
                *([f"[{fmt(s['msgs_s']['min'])}-{fmt(s['msgs_s']['max'])}]"] if spread else []),
                fmt(lat["p50"], ".1f"),
                fmt(lat["p99"], ".1f"),
                fmt(s["sqs_calls_per_message"], ".2f"),
                us_per_msg(s["cpu_s_per_1k"]),
                fmt(s.get("of_best"), ".0%"),
                f"{bound['name']} {fmt(bound['msgs_s'])}" if bound else "-",
            ]
        )
    numeric = set(range(1, len(headers) - 1))
    lines = [
        *textwrap.wrap(_describe_run(doc), width=WIDTH, subsequent_indent="  "),
        "",
        *grid(headers, rows, numeric),
    ]
    floors = floor_lines(doc.get("calibration") or {})
    if floors:
        lines += ["", *floors]
    legend = [
        "msgs/s: "
        + ("median of repeats" if spread else "one run")
        + ", to the N-th success"
        + ("; [min-max] over repeats" if spread else ""),
        "p50/p99: receive to done; SQS/msg: the loop's SQS calls per message; CPU: the event "
        "loop thread's",
        "of best: msgs/s over the best row; bound: the lowest ceiling of that setting "
        "(C/L, R*B/L, CPU, emulator)",
    ]
    if floors:
        legend.append(
            "floor: event-loop CPU of the transport's bare calls, no consumer; a row's CPU above "
            "it is the consumer's own"
        )
    if any((r["setting"] or {}).get("prefetch") for r in doc["results"]):
        legend.append(
            "F=N: the consumer's prefetch (--prefetch), N messages held beyond C: a finished "
            "dispatch starts the next at once"
        )
    if any(r["kind"] == "baseline" and r["setting"] for r in doc["results"]):
        legend.append(
            "node-sqs-consumer NxB: N sqs-consumer instances of batch B; CPU: its Node process's"
        )
    if any(not r["summary"]["complete"] for r in doc["results"]):
        legend.append("*: a run did not finish in its time limit: rate over the time it ran")
    lines += ["", *legend]
    check = doc.get("http_check")
    if check:
        lines += ["", *_check_lines(check)]
    lines += ["", *recommendation_lines(doc)]
    return "\n".join(lines)


def _describe_run(doc: dict[str, Any]) -> str:
    params = doc["parameters"]
    profile = params.get("profile") or {}
    size = (
        f"runs of about {params['run_seconds']:g} s (<= {params['messages']:,} msgs)"
        if params.get("sized_by_time")
        else f"{params['messages']:,} messages a run"
    )
    # The fake's queue is in memory: no transport to name.
    transport = "" if params["target"] == "fake" else f", transport {','.join(transports(doc))}"
    return (
        f"target {params['target']}, profile {profile.get('name', '?')}, {size}, "
        f"{repeats_text(params['repeats'])}, delete by {params['delete_by']}, "
        f"Invoke {params['invocation_type']} {params['invoke_latency_ms']} ms{transport}"
    )


def transports(doc: dict[str, Any]) -> list[str]:
    """The transports a results document swept (``sdk`` for one written before they were
    recorded)."""
    return list(doc["parameters"].get("transport") or [TRANSPORTS[0]])


def floor_lines(calibration: dict[str, Any]) -> list[str]:
    """One line per transport whose CPU floor the calibration measured (HTTP targets)."""
    lines = []
    for transport in TRANSPORTS:
        f = calibration.get(f"{transport}_floor")
        if f:
            lines.append(
                f"floor {transport}: {f['us_per_message']:,.0f} us/msg = receive "
                f"{f['receive_us_per_call']:,.0f}/10 + invoke {f['invoke_us_per_call']:,.0f} + "
                f"delete {f['delete_us_per_call']:,.0f}/10 ({_FLOOR_CALLS[transport]})"
            )
    return lines


def _check_lines(check: dict[str, Any]) -> list[str]:
    name = check["target"].get("name", "http")
    emulator = (check.get("calibration") or {}).get("emulator_ceiling") or {}
    ceiling = emulator.get("msgs_s")
    lines = [
        f"real HTTP on {name} (behind the latency proxy): its ceiling here is {fmt(ceiling)} "
        "msgs/s (16 bare workers), so only",
        f"settings the fake ran below {fmt(check['threshold_msgs_s'])} msgs/s run on it; "
        f"{name}'s own time per request adds to the profile's latencies",
    ]
    rows = []
    for result in check["results"]:
        s = result["summary"]
        rows.append(
            [
                result["label"],
                fmt(s["msgs_s"]["median"]) + ("" if s["complete"] else "*"),
                fmt((s["ratio_to"] or {}).get("fake"), ".2f"),
                fmt(s["latency_ms"]["receive_to_done"]["p99"], ".1f"),
                us_per_msg(s["cpu_s_per_1k"]),
            ]
        )
    if rows:
        headers = ["setting", f"{name} msgs/s", "x fake", "p99 ms", "CPU us/msg"]
        lines += grid(headers, rows, {1, 2, 3, 4})
    groups: dict[str, list[str]] = {}
    for item in check.get("skipped", ()):
        receivers, max_in_flight, batch = item["label"].split()
        groups.setdefault(f"{receivers} {batch}", []).append(max_in_flight.removeprefix("C="))
    if groups:
        lines += textwrap.wrap(
            f"not run on {name} ({name}, not asyncloop, would be the limit): "
            + "; ".join(f"{key} C={','.join(cs)}" for key, cs in groups.items()),
            width=WIDTH,
            subsequent_indent="  ",
        )
    return lines


def recommendation_lines(doc: dict[str, Any]) -> list[str]:
    """The recommendation, in one line (two when the SDK's CPU would bound it on AWS)."""
    rec = doc.get("recommendation")
    if not rec:
        return ["recommendation: none (no consumer setting was measured)"]
    bound = rec.get("bound")
    line = (
        f"recommendation: {rec['label']}: {fmt(rec['msgs_s'])} msgs/s, p99 "
        f"{fmt(rec['p99_ms'], '.0f')} ms, within {rec['tolerance']:.0%} of the best "
        f"({rec['best_label']}, {fmt(rec['best_msgs_s'])} msgs/s)"
    )
    if bound:
        line += f"; bounded by {bound['name']} ({fmt(bound['msgs_s'])} msgs/s)"
    lines = textwrap.wrap(line, width=WIDTH, subsequent_indent="  ")
    # The floors come from the HTTP check's calibration when there is one (the default).
    check = doc.get("http_check") or {}
    where = (check.get("target") or {}).get("name") or doc["parameters"]["target"]
    sdk = rec.get("sdk_cpu_ceiling_msgs_s")
    transport = (rec.get("setting") or {}).get("transport") or "sdk"
    own = (rec.get("cpu_ceilings_msgs_s") or {}).get(transport) if transport != "sdk" else None
    binds = rec["msgs_s"] * 1.05
    text = None
    if own and own < binds:
        text = (
            f"on AWS, one core's CPU on the {transport} transport (measured on {where}) caps a "
            f"process near {fmt(own)} msgs/s: beyond it, add processes, not max-in-flight"
        )
    elif own and sdk and sdk < binds:
        text = (
            f"with --transport sdk (aioboto3), one core's SDK CPU (measured on {where}) would cap "
            f"a process near {fmt(sdk)} msgs/s; on the {transport} transport near {fmt(own)}"
        )
    elif sdk and sdk < binds:
        text = (
            f"on AWS with aioboto3, one core's SDK CPU (measured on {where}) caps a process near "
            f"{fmt(sdk)} msgs/s: beyond it, add processes, not max-in-flight"
        )
    if text is not None:
        lines += textwrap.wrap(text, width=WIDTH, initial_indent="  ", subsequent_indent="  ")
    return lines


def format_full_table(doc: dict[str, Any]) -> str:
    """Every column, one row per contender and setting (report.md), with its legend."""
    params = doc["parameters"]
    baselines = params["baselines"]
    # The emulator's request rate during the runs: shows when it, not the loop, is the ceiling.
    served = params["target"] != "fake"
    headers = [
        "contender",
        "setting",
        "msgs/s med",
        "[min-max]",
        "p50/p95/p99 ms",
        "send p99",
        "SQS/msg",
        "CPU s/1k",
        "proc s/1k",
        "RSS MB",
        *(["srv req/s"] if served else []),
        "eff",
        "of best",
    ] + [f"x {name}" for name in baselines]
    rows = []
    for result in doc["results"]:
        s = result["summary"]
        lat = s["latency_ms"]["receive_to_done"]
        little = s["littles_law"]
        row = [
            result["contender"],
            _setting_text(result["setting"], with_transport=len(transports(doc)) > 1),
            fmt(s["msgs_s"]["median"]) + ("" if s["complete"] else "*"),
            f"[{fmt(s['msgs_s']['min'])}-{fmt(s['msgs_s']['max'])}]",
            f"{fmt(lat['p50'], '.1f')}/{fmt(lat['p95'], '.1f')}/{fmt(lat['p99'], '.1f')}",
            fmt(s["latency_ms"]["send_to_done"]["p99"], ".1f"),
            fmt(s["sqs_calls_per_message"], ".3f"),
            fmt(s["cpu_s_per_1k"], ".4f"),
            fmt(s["process_cpu_s_per_1k"], ".4f"),
            fmt(s["peak_rss_mb"], ".1f"),
            *([fmt(s["server_requests_s"])] if served else []),
            fmt(little["efficiency"] if little else None, ".2f"),
            fmt(s.get("of_best"), ".2f"),
        ] + [fmt(s["ratio_to"].get(name), ".2f") for name in baselines]
        rows.append(row)
    lines = grid(headers, rows)
    notes = _notes(doc)
    return "\n".join(lines + (["", *notes] if notes else []))


def _setting_text(setting: dict[str, Any] | None, *, with_transport: bool) -> str:
    # A baseline with a setting (node-sqs-consumer: instances x batch) shows it as R/C/B too.
    return "" if setting is None else setting_text(setting, with_transport=with_transport)


def _notes(doc: dict[str, Any]) -> list[str]:
    params = doc["parameters"]
    notes = [
        _describe_run(doc),
        "msgs/s: median of repeats, to the N-th success; latency: receive to done; "
        "CPU: event-loop thread (node-sqs-consumer: its Node process; proc: whole bench "
        "process, plus Node's); srv req/s: requests the target "
        "served per second, the feeder's included; eff: msgs/s over "
        "min(C/L, R*B/L, CPU ceiling, emulator ceiling), an estimate that a run can beat "
        "(see the README); of best: msgs/s over the best row's; x: ratio of medians to the "
        "baseline, same run",
        f"profile: {json.dumps(params.get('profile'))}",
    ]
    for cal in (doc.get("calibration") or {}, (doc.get("http_check") or {}).get("calibration")):
        if cal:
            notes += _calibration_notes(cal)
    if any(not r["summary"]["complete"] for r in doc["results"]):
        notes.append("* a run did not finish within its time limit: rate over the time it ran")
    return notes


def _calibration_notes(cal: dict[str, Any]) -> list[str]:
    notes = []
    if "cpu_ceiling" in cal:
        c = cal["cpu_ceiling"]
        notes.append(
            f"CPU ceiling (fake, zero latency, {c['setting']}): {c['msgs_s']:,.0f} msgs/s, "
            f"{c['cpu_us_per_message']:.1f} us CPU per message"
        )
    notes += [f"CPU {line}, event-loop CPU" for line in floor_lines(cal)]
    if cal.get("emulator_ceiling"):
        e = cal["emulator_ceiling"]
        util = e.get("server_cpu_utilisation")
        notes.append(
            f"emulator ceiling ({e['workers']} bare workers): {e['msgs_s']:,.0f} msgs/s, "
            f"{e['requests_s']:,.0f} requests/s"
            + (f", server CPU {util:.2f} cores" if util is not None else "")
        )
    return notes
