"""The report's cells: numbers as text, a padded grid of columns."""

from __future__ import annotations

import math
from typing import Any, Final

from ._config import TRANSPORTS

__all__ = (
    "WIDTH",
    "fmt",
    "grid",
    "repeats_text",
    "setting_text",
    "setting_transport",
    "us_per_msg",
)

# The short table and its notes fit a terminal this wide.
WIDTH: Final = 120


def fmt(value: float | None, spec: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def grid(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    """Columns padded to their widest cell; numbers (`right`) aligned right."""
    right = right or set()
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def repeats_text(n: int) -> str:
    return f"{n} repeat" + ("" if n == 1 else "s")


def us_per_msg(seconds_per_1k: float | None) -> str:
    return fmt(None if seconds_per_1k is None else seconds_per_1k * 1000, ",.0f")


def setting_transport(setting: dict[str, Any]) -> str:
    """A results setting's transport; ``sdk`` for one written before the bench recorded it
    (every such run was on the SDK)."""
    return str(setting.get("transport") or TRANSPORTS[0])


def setting_text(setting: dict[str, Any], *, with_transport: bool) -> str:
    """``R=8 C=256 B=10`` (`` F=10`` with a prefetch), and its transport `with_transport`
    (when it has one: only the consumer's settings do; a baseline's is R/C/B alone)."""
    text = f"R={setting['receivers']} C={setting['max_in_flight']} B={setting['batch_size']}"
    if setting.get("prefetch"):
        text += f" F={setting['prefetch']}"
    if with_transport and "transport" in setting:
        text += f" {setting['transport']}"
    return text
