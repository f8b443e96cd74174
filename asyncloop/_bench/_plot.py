"""The plot: msgs/s and p99 against max-in-flight (`write_plot`, plot.png).

matplotlib is optional (the ``plot`` extra): without it `write_plot` returns False and the
report says how to get it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ._format import repeats_text, setting_transport

__all__ = ("write_plot",)


def write_plot(doc: dict[str, Any], path: Path) -> bool:
    """msgs/s and p99 latency against max-in-flight: every point of the sweep, a line per
    receivers (and batch size, and transport), the HTTP check's points, the ceilings as lines
    (Little's law, each line's receiver bound, the CPU ceiling, the emulator's), the baselines
    as grey lines, and the recommended setting marked. False when matplotlib is missing."""
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
    # A line per receivers, batch size, prefetch and transport (older results: all sdk, none).
    lines: dict[tuple[int, int, int, str], list[dict[str, Any]]] = {}
    for r in consumers:
        s = r["setting"]
        key = (s["receivers"], s["batch_size"], s.get("prefetch", 0), setting_transport(s))
        lines.setdefault(key, []).append(r)
    several = len({transport for *_, transport in lines}) > 1
    bounds_drawn: set[tuple[int, int]] = set()
    profile = params.get("profile") or {}
    hold_s = float(params.get("slot_latency_mean_s") or 0.0)
    receive_s = _mean_s(profile.get("ReceiveMessage"))
    rates_seen: list[float] = []
    for index, ((receivers, batch, prefetch, transport), group) in enumerate(sorted(lines.items())):
        colour = colours[index % len(colours)]
        group.sort(key=lambda r: r["setting"]["max_in_flight"])
        xs = [r["setting"]["max_in_flight"] for r in group]
        label = (
            f"R={receivers}"
            + (f" B={batch}" if len(batch_sizes) > 1 else "")
            + (f" F={prefetch}" if prefetch else "")
            + (f" {transport}" if several else "")
        )
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
        if receive_s > 0 and (receivers, batch) not in bounds_drawn:
            bounds_drawn.add((receivers, batch))
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
            and c["setting"].get("prefetch", 0) == prefetch
            and setting_transport(c["setting"]) == transport
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
        f"Invoke {params['invocation_type']}, {repeats_text(params['repeats'])}"
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
