"""Reports: the table, results.json (checked against results.schema.json), the plot, report.md,
and the comparison of two results files.

matplotlib is optional (the ``plot`` extra): without it everything but the PNG is written and
the report says how to get it.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any, Final

__all__ = (
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "CompareError",
    "compare",
    "differences",
    "format_full_table",
    "format_table",
    "load_results",
    "recommendation_lines",
    "validate",
    "write_outputs",
    "write_plot",
)

SCHEMA_PATH: Final = Path(__file__).with_name("results.schema.json")
# Kept equal to asyncloop._bench._summary.SCHEMA_VERSION (a test checks it); not imported from
# there, so reading results does not import the library.
SCHEMA_VERSION: Final = 2
# The short table and its notes fit a terminal this wide.
_WIDTH: Final = 120
_PLOT_HINT: Final = "no plot: matplotlib is missing (pip install 'asyncloop[plot]')"


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _grid(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    """Columns padded to their widest cell; numbers (`right`) aligned right."""
    right = right or set()
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _repeats(n: int) -> str:
    return f"{n} repeat" + ("" if n == 1 else "s")


def _us_per_msg(seconds_per_1k: float | None) -> str:
    return _fmt(None if seconds_per_1k is None else seconds_per_1k * 1000, ",.0f")


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
                _fmt(s["msgs_s"]["median"]) + ("" if s["complete"] else "*"),
                *([f"[{_fmt(s['msgs_s']['min'])}-{_fmt(s['msgs_s']['max'])}]"] if spread else []),
                _fmt(lat["p50"], ".1f"),
                _fmt(lat["p99"], ".1f"),
                _fmt(s["sqs_calls_per_message"], ".2f"),
                _us_per_msg(s["cpu_s_per_1k"]),
                _fmt(s.get("of_best"), ".0%"),
                f"{bound['name']} {_fmt(bound['msgs_s'])}" if bound else "-",
            ]
        )
    numeric = set(range(1, len(headers) - 1))
    lines = [_describe_run(doc), "", *_grid(headers, rows, numeric)]
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
    return (
        f"target {params['target']}, profile {profile.get('name', '?')}, {size}, "
        f"{_repeats(params['repeats'])}, delete by {params['delete_by']}, "
        f"Invoke {params['invocation_type']} {params['invoke_latency_ms']} ms"
    )


def _check_lines(check: dict[str, Any]) -> list[str]:
    name = check["target"].get("name", "http")
    emulator = (check.get("calibration") or {}).get("emulator_ceiling") or {}
    ceiling = emulator.get("msgs_s")
    lines = [
        f"real HTTP on {name} (behind the latency proxy): its ceiling here is {_fmt(ceiling)} "
        "msgs/s (16 bare workers), so only",
        f"settings the fake ran below {_fmt(check['threshold_msgs_s'])} msgs/s run on it; "
        f"{name}'s own time per request adds to the profile's latencies",
    ]
    rows = []
    for result in check["results"]:
        s = result["summary"]
        rows.append(
            [
                result["label"],
                _fmt(s["msgs_s"]["median"]) + ("" if s["complete"] else "*"),
                _fmt((s["ratio_to"] or {}).get("fake"), ".2f"),
                _fmt(s["latency_ms"]["receive_to_done"]["p99"], ".1f"),
                _us_per_msg(s["cpu_s_per_1k"]),
            ]
        )
    if rows:
        headers = ["setting", f"{name} msgs/s", "x fake", "p99 ms", "CPU us/msg"]
        lines += _grid(headers, rows, {1, 2, 3, 4})
    groups: dict[str, list[str]] = {}
    for item in check.get("skipped", ()):
        receivers, max_in_flight, batch = item["label"].split()
        groups.setdefault(f"{receivers} {batch}", []).append(max_in_flight.removeprefix("C="))
    if groups:
        lines += textwrap.wrap(
            f"not run on {name} ({name}, not asyncloop, would be the limit): "
            + "; ".join(f"{key} C={','.join(cs)}" for key, cs in groups.items()),
            width=_WIDTH,
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
        f"recommendation: {rec['label']}: {_fmt(rec['msgs_s'])} msgs/s, p99 "
        f"{_fmt(rec['p99_ms'], '.0f')} ms, within {rec['tolerance']:.0%} of the best "
        f"({rec['best_label']}, {_fmt(rec['best_msgs_s'])} msgs/s)"
    )
    if bound:
        line += f"; bounded by {bound['name']} ({_fmt(bound['msgs_s'])} msgs/s)"
    lines = textwrap.wrap(line, width=_WIDTH, subsequent_indent="  ")
    sdk = rec.get("sdk_cpu_ceiling_msgs_s")
    if sdk and sdk < rec["msgs_s"] * 1.05:
        lines += textwrap.wrap(
            f"on AWS with aioboto3, one core's SDK CPU (measured on moto) caps a process near "
            f"{_fmt(sdk)} msgs/s: beyond it, add processes, not max-in-flight",
            width=_WIDTH,
            initial_indent="  ",
            subsequent_indent="  ",
        )
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
            _setting_text(result["setting"]),
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
            _fmt(s.get("of_best"), ".2f"),
        ] + [_fmt(s["ratio_to"].get(name), ".2f") for name in baselines]
        rows.append(row)
    lines = _grid(headers, rows)
    notes = _notes(doc)
    return "\n".join(lines + (["", *notes] if notes else []))


def _setting_text(setting: dict[str, int] | None) -> str:
    # A baseline with a setting (node-sqs-consumer: instances x batch) shows it as R/C/B too.
    if setting is None:
        return ""
    return f"R={setting['receivers']} C={setting['max_in_flight']} B={setting['batch_size']}"


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
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path} has schema_version {doc.get('schema_version')!r}; expected {SCHEMA_VERSION} "
            "(re-run the benchmark that made it)"
        )
    return doc


def write_plot(doc: dict[str, Any], path: Path) -> bool:
    """msgs/s and p99 latency against max-in-flight: every point of the sweep, a line per
    receivers (and batch size), the HTTP check's points, the ceilings as lines (Little's law,
    each line's receiver bound, the CPU ceiling, the emulator's), the baselines as grey lines,
    and the recommended setting marked. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import (
            FixedLocator,
            FuncFormatter,
            LogLocator,
            NullFormatter,
            NullLocator,
        )
    except ImportError:
        return False
    results = doc["results"]
    params = doc["parameters"]
    consumers = [r for r in results if r["kind"] == "consumer"]
    baselines = [r for r in results if r["kind"] == "baseline"]
    check = doc.get("http_check") or {}
    checked = check.get("results") or []
    batch_sizes = sorted({r["setting"]["batch_size"] for r in consumers})
    xs_all = sorted({r["setting"]["max_in_flight"] for r in consumers + checked})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (ax_rate, ax_p99) = plt.subplots(1, 2, figsize=(13, 7.2))
    lines: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in consumers:
        lines.setdefault((r["setting"]["receivers"], r["setting"]["batch_size"]), []).append(r)
    profile = params.get("profile") or {}
    hold_s = float(params.get("slot_latency_mean_s") or 0.0)
    receive_s = _mean_s(profile.get("ReceiveMessage"))
    rates_seen: list[float] = []
    for index, ((receivers, batch), group) in enumerate(sorted(lines.items())):
        colour = colours[index % len(colours)]
        group.sort(key=lambda r: r["setting"]["max_in_flight"])
        xs = [r["setting"]["max_in_flight"] for r in group]
        label = f"R={receivers}" + (f" B={batch}" if len(batch_sizes) > 1 else "")
        rates = [r["summary"]["msgs_s"]["median"] for r in group]
        rates_seen += rates
        low = [m - r["summary"]["msgs_s"]["min"] for m, r in zip(rates, group, strict=True)]
        high = [r["summary"]["msgs_s"]["max"] - m for m, r in zip(rates, group, strict=True)]
        ax_rate.errorbar(
            xs,
            rates,
            yerr=[low, high],
            marker="o",
            capsize=3,
            color=colour,
            label=f"{label} ({params['target']})",
        )
        p99 = [r["summary"]["latency_ms"]["receive_to_done"]["p99"] for r in group]
        ax_p99.plot(
            xs, [math.nan if v is None else v for v in p99], marker="o", color=colour, label=label
        )
        if receive_s > 0:
            bound = receivers * batch / receive_s
            ax_rate.axhline(
                bound,
                color=colour,
                linestyle=":",
                linewidth=1,
                label=f"{label} receiver bound R*B/L = {bound:,.0f}",
            )
        mine = [
            c
            for c in checked
            if (c["setting"]["receivers"], c["setting"]["batch_size"]) == (receivers, batch)
        ]
        if mine:
            mine.sort(key=lambda r: r["setting"]["max_in_flight"])
            cx = [c["setting"]["max_in_flight"] for c in mine]
            cy = [c["summary"]["msgs_s"]["median"] for c in mine]
            rates_seen += cy
            name = check["target"].get("name", "http")
            ax_rate.plot(
                cx,
                cy,
                marker="s",
                linestyle="--",
                color=colour,
                markerfacecolor="white",
                label=f"{label} on {name} (real HTTP)",
            )
            cp = [c["summary"]["latency_ms"]["receive_to_done"]["p99"] for c in mine]
            ax_p99.plot(
                cx,
                [math.nan if v is None else v for v in cp],
                marker="s",
                linestyle="--",
                color=colour,
                markerfacecolor="white",
                label=f"{label} on {name}",
            )
    styles = ["--", "-.", (0, (5, 1, 1, 1))]
    for i, r in enumerate(baselines):
        style = styles[i % len(styles)]
        rates_seen.append(r["summary"]["msgs_s"]["median"])
        ax_rate.axhline(
            r["summary"]["msgs_s"]["median"],
            color="grey",
            linestyle=style,
            linewidth=1,
            label=f"baseline {r['contender']}",
        )
        p99 = r["summary"]["latency_ms"]["receive_to_done"]["p99"]
        if p99 is not None:
            ax_p99.axhline(p99, color="grey", linestyle=style, linewidth=1, label=r["contender"])
    if hold_s > 0 and xs_all:
        ax_rate.plot(
            xs_all,
            [x / hold_s for x in xs_all],
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"Little's law C/L (L = {hold_s * 1000:.1f} ms: receive + invoke)",
        )
    cpu = (doc.get("calibration") or {}).get("cpu_ceiling")
    if cpu:
        ax_rate.axhline(
            cpu["msgs_s"],
            color="tab:purple",
            linestyle="-.",
            linewidth=1,
            label=f"loop CPU ceiling {cpu['msgs_s']:,.0f}",
        )
    emulator = (check.get("calibration") or doc.get("calibration") or {}).get("emulator_ceiling")
    if emulator:
        name = (check.get("target") or doc.get("target") or {}).get("name", "emulator")
        ax_rate.axhline(
            emulator["msgs_s"],
            color="tab:red",
            linestyle="-",
            linewidth=1.5,
            label=f"{name}'s ceiling {emulator['msgs_s']:,.0f}",
        )
    rec = doc.get("recommendation")
    sdk = rec.get("sdk_cpu_ceiling_msgs_s") if rec else None
    if sdk:
        ax_rate.axhline(
            sdk,
            color="tab:green",
            linestyle="--",
            linewidth=1,
            label=f"aioboto3 CPU, one core (on AWS) {sdk:,.0f}",
        )
    if rec:
        x, y = rec["setting"]["max_in_flight"], rec["msgs_s"]
        ax_rate.plot(
            [x],
            [y],
            marker="*",
            markersize=18,
            color="gold",
            markeredgecolor="black",
            linestyle="none",
            label=f"recommended {rec['label']}",
            zorder=5,
        )
        ax_rate.annotate(
            f"{rec['label']}\n{y:,.0f} msgs/s",
            (x, y),
            textcoords="offset points",
            xytext=(-10, 14),
            ha="right",
            fontsize=9,
        )
        if rec.get("p99_ms") is not None:
            ax_p99.plot(
                [x],
                [rec["p99_ms"]],
                marker="*",
                markersize=18,
                color="gold",
                markeredgecolor="black",
                linestyle="none",
                zorder=5,
            )
    plain = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")
    for ax in (ax_rate, ax_p99):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(xs_all or [1]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yscale("log")
        # Labels at 1, 2, 3 and 5 of each decade only: every minor tick labelled is unreadable.
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("max in flight, C (messages)")
        ax.grid(True, which="both", alpha=0.3)
    if rates_seen:
        # Ceilings far above the data (C/L at C=256) would squash the points: clip the view.
        top = max(rates_seen) * 4
        ax_rate.set_ylim(min(rates_seen) / 2, top)
        for line in ax_rate.get_lines():
            label = str(line.get_label())
            ys = line.get_ydata()
            if not label.startswith("_") and len(ys) and min(ys) > top:
                line.set_label(f"{label} (above the view)")
    # Below the axes: inside, the legend would hide the points.
    for ax, columns in ((ax_rate, 2), (ax_p99, 2)):
        ax.legend(
            fontsize=8,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            ncol=columns,
            frameon=False,
        )
    ax_rate.set_ylabel("throughput (messages/s; bars: min-max of repeats)")
    ax_rate.set_title("throughput, with the ceilings that bound it", fontsize=10)
    ax_p99.set_ylabel("p99 latency, receive to done (ms)")
    ax_p99.set_title("p99 latency", fontsize=10)
    fig.suptitle(
        f"asyncloop bench: {params['target']} target, profile {profile.get('name', '?')}, "
        f"Invoke {params['invocation_type']}, {_repeats(params['repeats'])}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _mean_s(text: str | None) -> float:
    """The mean in seconds of a ``p50`` or ``p50:p99`` latency text (0 if none)."""
    if not text:
        return 0.0
    from ._config import LatencyModel

    return LatencyModel.parse(text).mean_s


def _report_md(doc: dict[str, Any], plot: str | None) -> str:
    machine = doc["machine"]
    params = doc["parameters"]
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
        "## Summary",
        "",
        "```",
        format_table(doc),
        "```",
        "",
        "## Every column",
        "",
        "```",
        format_full_table(doc),
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
    report = out / "report.md"
    report.write_text(_report_md(doc, plot.name if plot else None), encoding="utf-8")
    return {"results": results, "plot": plot, "report": report}


class CompareError(ValueError):
    """Two results files that measured different things: `differences` names them."""

    def __init__(self, differences: list[str]) -> None:
        self.differences = differences
        super().__init__(
            "the results measured different things ("
            + "; ".join(differences)
            + "): compare runs of one target, profile and workload, or pass --force"
        )


# What must match for two results to be comparable: where, under which latencies, and what
# work (the sweep's settings may differ: rows are matched by setting).
_WORKLOAD_KEYS: Final = (
    "delete_by",
    "invocation_type",
    "payload",
    "body_bytes",
    "backlog",
    "wait_time_seconds",
    "sized_by_time",
    "run_seconds",
    "messages",
)


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What makes two results incomparable: target, latency profile, workload parameters."""
    pa, pb = before["parameters"], after["parameters"]
    out = []
    if pa.get("target") != pb.get("target"):
        out.append(f"target {pa.get('target')} vs {pb.get('target')}")
    if pa.get("profile") != pb.get("profile"):
        name_a = (pa.get("profile") or {}).get("name")
        name_b = (pb.get("profile") or {}).get("name")
        out.append(
            f"profile {name_a} vs {name_b}"
            if name_a != name_b
            else f"profile {name_a} with different latencies"
        )
    for key in _WORKLOAD_KEYS:
        if pa.get(key) != pb.get(key):
            out.append(f"{key} {pa.get(key)!r} vs {pb.get(key)!r}")
    return out


def _order(key: tuple[str, dict[str, int] | None]) -> tuple[int, int, int, int, str]:
    contender, setting = key
    # Baselines last, node-sqs-consumer's (which has a setting) too.
    if setting is None or contender != "asyncloop":
        return (1, 0, 0, 0, contender)
    return (0, setting["receivers"], setting["max_in_flight"], setting["batch_size"], contender)


def compare(before: dict[str, Any], after: dict[str, Any], *, force: bool = False) -> str:
    """The change per contender and setting from `before` to `after`, rows matched and sorted
    by setting (receivers, then max in flight, then batch size; baselines last).

    Raises `CompareError` when the two measured different targets, profiles or workloads,
    unless `force`.
    """
    problems = differences(before, after)
    if problems and not force:
        raise CompareError(problems)

    def keyed(doc: dict[str, Any]) -> dict[str, tuple[tuple[str, Any], dict[str, Any]]]:
        return {
            f"{r['contender']} {r['label']}": ((r["contender"], r["setting"]), r)
            for r in doc["results"]
        }

    old, new = keyed(before), keyed(after)
    names = sorted(set(old) | set(new), key=lambda k: _order((old.get(k) or new[k])[0]))
    headers = [
        "setting",
        "msgs/s A",
        "msgs/s B",
        "change",
        "p99 A",
        "p99 B",
        "CPU us A",
        "CPU us B",
    ]
    rows: list[list[str]] = []
    for name in names:
        a = old.get(name, (None, None))[1]
        b = new.get(name, (None, None))[1]
        sa = a["summary"] if a else None
        sb = b["summary"] if b else None
        label = (a or b or {})["label"]
        rate_a = sa["msgs_s"]["median"] if sa else None
        rate_b = sb["msgs_s"]["median"] if sb else None
        if sa is None:
            change = "new"
        elif sb is None:
            change = "gone"
        else:
            change = (
                f"{(rate_b / rate_a - 1) * 100:+.1f}%" if rate_a and rate_b is not None else "-"
            )
        rows.append(
            [
                label,
                _fmt(rate_a),
                _fmt(rate_b),
                change,
                _fmt(sa["latency_ms"]["receive_to_done"]["p99"] if sa else None, ".1f"),
                _fmt(sb["latency_ms"]["receive_to_done"]["p99"] if sb else None, ".1f"),
                _us_per_msg(sa["cpu_s_per_1k"] if sa else None),
                _us_per_msg(sb["cpu_s_per_1k"] if sb else None),
            ]
        )
    lines = []
    if problems:
        lines += ["compared anyway (--force), although: " + "; ".join(problems), ""]
    lines += _grid(headers, rows, set(range(1, len(headers))))
    pa, pb = before["parameters"], after["parameters"]
    differ = [
        k
        for k in sorted(set(pa) | set(pb))
        if pa.get(k) != pb.get(k) and k not in (*_WORKLOAD_KEYS, "target", "profile")
    ]
    if differ:
        lines += [
            "",
            "other parameters that differ: "
            + ", ".join(f"{k} ({pa.get(k)!r} -> {pb.get(k)!r})" for k in differ),
        ]
    return "\n".join(lines)
