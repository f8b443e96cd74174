"""Reports: the table, results.json (checked against results.schema.json), the plot, report.md,
and the comparison of two results files.

matplotlib is optional (the ``plot`` extra): without it everything but the PNG is written and
the report says how to get it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

__all__ = (
    "SCHEMA_PATH",
    "compare",
    "format_table",
    "load_results",
    "validate",
    "write_outputs",
    "write_plot",
)

SCHEMA_PATH: Final = Path(__file__).with_name("results.schema.json")
_PLOT_HINT: Final = "no plot: matplotlib is missing (pip install 'asyncloop[plot]')"


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def format_table(doc: dict[str, Any]) -> str:
    """The results as a fixed-width text table, one row per contender and setting."""
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
    ] + [f"x {name}" for name in baselines]
    rows = []
    for result in doc["results"]:
        s = result["summary"]
        lat = s["latency_ms"]["receive_to_done"]
        little = s["littles_law"]
        row = [
            result["contender"],
            result["label"] if result["setting"] else "",
            _fmt(s["msgs_s"]["median"]) + ("" if s["complete"] else "*"),
            f"[{_fmt(s['msgs_s']['min'])}-{_fmt(s['msgs_s']['max'])}]",
            f"{_fmt(lat['p50'], '.1f')}/{_fmt(lat['p95'], '.1f')}/{_fmt(lat['p99'], '.1f')}",
            _fmt(s["latency_ms"]["send_to_done"]["p99"], ".1f"),
            _fmt(s["sqs_calls_per_message"], ".3f"),
            _fmt(s["cpu_s_per_1k"], ".4f"),
            _fmt(s["process_cpu_s_per_1k"], ".4f"),
            _fmt(s["peak_rss_mb"], ".1f"),
            *([_fmt(s["server_requests_s"])] if served else []),
            _fmt(little["efficiency"] if little else None, ".2f"),
        ] + [_fmt(s["ratio_to"].get(name), ".2f") for name in baselines]
        rows.append(row)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    notes = _notes(doc)
    return "\n".join(lines + (["", *notes] if notes else []))


def _notes(doc: dict[str, Any]) -> list[str]:
    params = doc["parameters"]
    notes = [
        f"target {params['target']}: {params['messages']:,} messages x {params['repeats']} "
        f"repeats, delete-by {params['delete_by']}, invoke latency {params['invoke_latency_ms']} "
        f"ms, SQS latency {params['latency_ms']} ms, backlog {params['backlog']}",
        "msgs/s: median of repeats, to the N-th success; latency: receive to done; "
        "CPU: event-loop thread (proc: whole bench process); srv req/s: requests the target "
        "served per second, the feeder's included; eff: msgs/s over "
        "min(C/L, CPU ceiling, emulator ceiling); x: ratio of medians to the baseline, same run",
    ]
    cal = doc.get("calibration") or {}
    if "cpu_ceiling" in cal:
        c = cal["cpu_ceiling"]
        notes.append(
            f"CPU ceiling (fake, zero latency, {c['setting']}): {c['msgs_s']:,.0f} msgs/s, "
            f"{c['cpu_us_per_message']:.1f} us CPU per message"
        )
    if cal.get("sdk_floor"):
        f = cal["sdk_floor"]
        notes.append(
            f"SDK floor (bare aioboto3 calls, event-loop CPU): {f['us_per_message']:.0f} us/msg "
            f"= receive {f['receive_us_per_call']:.0f}/10 + invoke {f['invoke_us_per_call']:.0f}"
            f" + delete {f['delete_us_per_call']:.0f}/10"
        )
    if cal.get("emulator_ceiling"):
        e = cal["emulator_ceiling"]
        util = e.get("server_cpu_utilisation")
        notes.append(
            f"emulator ceiling ({e['workers']} bare workers): {e['msgs_s']:,.0f} msgs/s, "
            f"{e['requests_s']:,.0f} requests/s"
            + (f", server CPU {util:.2f} cores" if util is not None else "")
        )
    if any(not r["summary"]["complete"] for r in doc["results"]):
        notes.append("* a run did not finish within its time limit: rate over the time it ran")
    return notes


def validate(doc: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if `doc` does not match results.schema.json."""
    import jsonschema  # type: ignore[import-untyped]

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(doc, schema)


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results.json; ValueError if it is not one (wrong schema or version)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema") != "asyncloop-bench":
        raise ValueError(f"{path} is not an asyncloop bench results file")
    if doc.get("schema_version") != 1:
        raise ValueError(f"{path} has schema_version {doc.get('schema_version')!r}; expected 1")
    return doc


def write_plot(doc: dict[str, Any], path: Path) -> bool:
    """msgs/s and p99 latency against max-in-flight, a line per receivers (and batch size),
    baselines as dashed reference lines. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    results = doc["results"]
    consumers = [r for r in results if r["kind"] == "consumer"]
    baselines = [r for r in results if r["kind"] == "baseline"]
    batch_sizes = sorted({r["setting"]["batch_size"] for r in consumers})
    fig, (ax_rate, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.8))
    lines: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in consumers:
        key = (r["setting"]["receivers"], r["setting"]["batch_size"])
        lines.setdefault(key, []).append(r)
    for (receivers, batch), group in sorted(lines.items()):
        group.sort(key=lambda r: r["setting"]["max_in_flight"])
        xs = [r["setting"]["max_in_flight"] for r in group]
        label = f"R={receivers}" + (f" B={batch}" if len(batch_sizes) > 1 else "")
        rates = [r["summary"]["msgs_s"]["median"] for r in group]
        low = [m - r["summary"]["msgs_s"]["min"] for m, r in zip(rates, group, strict=True)]
        high = [r["summary"]["msgs_s"]["max"] - m for m, r in zip(rates, group, strict=True)]
        ax_rate.errorbar(xs, rates, yerr=[low, high], marker="o", capsize=3, label=label)
        p99 = [r["summary"]["latency_ms"]["receive_to_done"]["p99"] for r in group]
        ax_p99.plot(xs, [math.nan if v is None else v for v in p99], marker="o", label=label)
    styles = ["--", ":", "-."]
    for i, r in enumerate(baselines):
        style = styles[i % len(styles)]
        ax_rate.axhline(
            r["summary"]["msgs_s"]["median"], color="grey", linestyle=style, label=r["contender"]
        )
        p99 = r["summary"]["latency_ms"]["receive_to_done"]["p99"]
        if p99 is not None:
            ax_p99.axhline(p99, color="grey", linestyle=style, label=r["contender"])
    params = doc["parameters"]
    for ax in (ax_rate, ax_p99):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("max in flight (C)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_rate.set_ylabel("messages/s (median, min-max)")
    ax_rate.set_yscale("log")
    ax_p99.set_ylabel("p99 latency, receive to done (ms)")
    ax_p99.set_yscale("log")
    fig.suptitle(
        f"asyncloop bench: {params['target']}, {params['messages']:,} messages, invoke latency "
        f"{params['invoke_latency_ms']} ms, {params['repeats']} repeats"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _report_md(doc: dict[str, Any], table: str, plot: str | None) -> str:
    params = doc["parameters"]
    machine = doc["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in doc["versions"].items() if v)
    command = " ".join(doc.get("command") or ["asyncloop", "bench"])
    parts = [
        f"# asyncloop bench: {params['target']}",
        "",
        f"- created: {doc['created_at']}",
        f"- command: `{command}`",
        f"- machine: {machine.get('cpu_model')}, {machine.get('cpu_count')} CPUs, "
        f"{machine.get('platform')}; load average at start {machine.get('loadavg_start')}, "
        f"at end {machine.get('loadavg_end')}",
        f"- versions: {versions}",
        "",
        "```",
        table,
        "```",
        "",
    ]
    parts.append(f"![msgs/s and p99 against max in flight]({plot})" if plot else _PLOT_HINT)
    parts.append("")
    return "\n".join(parts)


def write_outputs(doc: dict[str, Any], out: Path) -> dict[str, Path | None]:
    """Write results.json, plot.png (if matplotlib is there) and report.md into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    results.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    plot: Path | None = out / "plot.png"
    assert plot is not None
    if not write_plot(doc, plot):
        plot = None
    table = format_table(doc)
    report = out / "report.md"
    report.write_text(_report_md(doc, table, plot.name if plot else None), encoding="utf-8")
    return {"results": results, "plot": plot, "report": report}


def compare(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The change per contender and setting from `before` to `after` (matched by label)."""
    old = {(r["contender"], r["label"]): r["summary"] for r in before["results"]}
    headers = [
        "contender",
        "setting",
        "msgs/s A",
        "msgs/s B",
        "change",
        "p99 A",
        "p99 B",
        "CPU s/1k A",
        "CPU s/1k B",
    ]
    rows: list[Sequence[str]] = []
    for result in after["results"]:
        key = (result["contender"], result["label"])
        new = result["summary"]
        prev = old.pop(key, None)
        setting = result["label"] if result["setting"] else ""
        if prev is None:
            rows.append(
                [
                    result["contender"],
                    setting,
                    "-",
                    _fmt(new["msgs_s"]["median"]),
                    "new",
                    "-",
                    _fmt(new["latency_ms"]["receive_to_done"]["p99"], ".1f"),
                    "-",
                    _fmt(new["cpu_s_per_1k"], ".4f"),
                ]
            )
            continue
        a, b = prev["msgs_s"]["median"], new["msgs_s"]["median"]
        change = f"{(b / a - 1) * 100:+.1f}%" if a else "-"
        rows.append(
            [
                result["contender"],
                setting,
                _fmt(a),
                _fmt(b),
                change,
                _fmt(prev["latency_ms"]["receive_to_done"]["p99"], ".1f"),
                _fmt(new["latency_ms"]["receive_to_done"]["p99"], ".1f"),
                _fmt(prev["cpu_s_per_1k"], ".4f"),
                _fmt(new["cpu_s_per_1k"], ".4f"),
            ]
        )
    for (contender, label), prev in old.items():
        rows.append(
            [
                contender,
                label if contender == "asyncloop" else "",
                _fmt(prev["msgs_s"]["median"]),
                "-",
                "gone",
                "-",
                "-",
                "-",
                "-",
            ]
        )
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    pa, pb = before["parameters"], after["parameters"]
    differ = [k for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)]
    if differ:
        lines += [
            "",
            "parameters that differ: "
            + ", ".join(f"{k} ({pa.get(k)!r} -> {pb.get(k)!r})" for k in differ),
        ]
    return "\n".join(lines)
