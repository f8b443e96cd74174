"""``asyncloop bench --compare A.json B.json``: the change per contender and setting, and what
makes two results incomparable."""

from __future__ import annotations

from typing import Any, Final

from ._config import TRANSPORTS
from ._format import fmt, grid, setting_text, setting_transport, us_per_msg

__all__ = ("CompareError", "compare", "differences")


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


def _order(key: tuple[str, dict[str, Any] | None]) -> tuple[int, int, int, int, int, str, str]:
    contender, setting = key
    # Baselines last, node-sqs-consumer's (which has a setting) too.
    if setting is None or contender != "asyncloop":
        return (1, 0, 0, 0, 0, "", contender)
    return (
        0,
        setting["receivers"],
        setting["max_in_flight"],
        setting["batch_size"],
        setting.get("prefetch", 0),
        setting_transport(setting),
        contender,
    )


def _consumer_setting(result: dict[str, Any]) -> dict[str, Any] | None:
    """A consumer row's setting, its transport filled in (``sdk`` in older results)."""
    setting = result["setting"]
    if result["contender"] != "asyncloop" or setting is None:
        return None
    return {**setting, "transport": setting_transport(setting)}


def _row_key(result: dict[str, Any]) -> str:
    """A row's identity: the contender and, for the consumer, its setting and transport."""
    setting = _consumer_setting(result)
    if setting is None:
        return f"{result['contender']} {result['label']}"
    return f"asyncloop {setting_text(setting, with_transport=True)}"


def compare(before: dict[str, Any], after: dict[str, Any], *, force: bool = False) -> str:
    """The change per contender and setting from `before` to `after`, rows matched and sorted
    by setting (receivers, then max in flight, then batch size, then transport; baselines
    last).

    The transport is part of a consumer row's setting: a setting measured on ``sdk`` in one
    file and ``lean`` in the other shows as two rows, ``gone`` and ``new``; labels name the
    transport when the two files hold more than one.

    Raises `CompareError` when the two measured different targets, profiles or workloads,
    unless `force`.
    """
    problems = differences(before, after)
    if problems and not force:
        raise CompareError(problems)

    def keyed(doc: dict[str, Any]) -> dict[str, tuple[tuple[str, Any], dict[str, Any]]]:
        return {_row_key(r): ((r["contender"], r["setting"]), r) for r in doc["results"]}

    old, new = keyed(before), keyed(after)
    several = (
        len(
            {
                setting_transport(r["setting"])
                for doc in (before, after)
                for r in doc["results"]
                if r["contender"] == "asyncloop" and r["setting"] is not None
            }
        )
        > 1
    )
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
        label = _label(a or b or {}, with_transport=several)
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
                fmt(rate_a),
                fmt(rate_b),
                change,
                fmt(sa["latency_ms"]["receive_to_done"]["p99"] if sa else None, ".1f"),
                fmt(sb["latency_ms"]["receive_to_done"]["p99"] if sb else None, ".1f"),
                us_per_msg(sa["cpu_s_per_1k"] if sa else None),
                us_per_msg(sb["cpu_s_per_1k"] if sb else None),
            ]
        )
    lines = []
    if problems:
        lines += ["compared anyway (--force), although: " + "; ".join(problems), ""]
    lines += grid(headers, rows, set(range(1, len(headers))))
    # Results written before the transport was recorded swept the SDK.
    pa = {"transport": [TRANSPORTS[0]], **before["parameters"]}
    pb = {"transport": [TRANSPORTS[0]], **after["parameters"]}
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


def _label(result: dict[str, Any], *, with_transport: bool) -> str:
    setting = _consumer_setting(result)
    if setting is None:
        return str(result["label"])
    return setting_text(setting, with_transport=with_transport)
