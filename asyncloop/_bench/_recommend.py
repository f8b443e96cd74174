"""What to set: the recommendation rule and the ceilings that bound a setting (pure functions).

The rule (`recommend`): among the sweep's points, take the best median throughput; every point
within `tolerance` (5%) of it is "as good"; recommend the smallest of those, ordered by
max-in-flight, then receivers, then batch size, then prefetch (less concurrency: fewer
messages at risk in a crash, fewer connections, smaller bills for the downstream; no prefetch:
nothing waits locally); of one setting measured on two transports, the faster. Incomplete
runs count only when no run is complete. Repeats' noise is what the tolerance absorbs: a best
point that beats the rest by less than 5% does not win over a smaller setting.

The ceilings (`ceilings`) are what bound a setting's rate, each an estimate:

- Little's law: C / L, at most C messages in flight, each holding its slot L seconds: the
  mean ReceiveMessage plus the mean Invoke latency (the consumer takes capacity before it
  receives, so a slot is held over the receive's round trip too), or the Invoke alone with a
  prefetch (the next message waits in the hand-off: `slot_hold_s`);
- receivers: R x B / (mean ReceiveMessage latency): each receiver brings at most B messages
  per round trip;
- CPU: the loop's own ceiling (the fake's zero-latency calibration), or the SDK's (1 / the
  aioboto3 CPU per message measured on moto);
- emulator: the rate bare workers reach on moto or fauxqs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ._config import BenchError, Setting

__all__ = (
    "TOLERANCE",
    "Point",
    "Recommendation",
    "binding",
    "ceilings",
    "recommend",
    "slot_hold_s",
)

TOLERANCE: Final = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One measured setting: its median msgs/s, its p99 (ms, None if unknown), complete or not."""

    setting: Setting
    msgs_s: float
    p99_ms: float | None = None
    complete: bool = True

    def __post_init__(self) -> None:
        if not self.msgs_s >= 0:
            raise BenchError(f"msgs_s must be >= 0, got {self.msgs_s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Recommendation:
    """The chosen point, the best one, and the tolerance that related them."""

    point: Point
    best: Point
    tolerance: float


def _size(point: Point) -> tuple[int, int, int, int]:
    s = point.setting
    return (s.max_in_flight, s.receivers, s.batch_size, s.prefetch)


def slot_hold_s(setting: Setting, *, receive_s: float, invoke_s: float) -> float:
    """L of Little's law for `setting`: how long a dispatch slot is held per message. The
    receive's round trip and the invoke; the invoke alone when the setting prefetches (the
    next message is already waiting when a dispatch ends)."""
    return invoke_s if setting.prefetch else receive_s + invoke_s


def recommend(points: Sequence[Point], *, tolerance: float = TOLERANCE) -> Recommendation | None:
    """The smallest setting within `tolerance` (0..1) of the best throughput; None if no points."""
    if not 0 <= tolerance < 1:
        raise BenchError(f"tolerance must be in 0..1, got {tolerance}")
    complete = [p for p in points if p.complete]
    pool = complete or list(points)
    if not pool:
        return None
    # Ties on throughput go to the smaller setting, so the "best" is reproducible too.
    best = max(pool, key=lambda p: (p.msgs_s, tuple(-v for v in _size(p))))
    floor = (1 - tolerance) * best.msgs_s
    good = [p for p in pool if p.msgs_s >= floor]
    # One setting on two transports: the faster of the two.
    chosen = min(good, key=lambda p: (*_size(p), -p.msgs_s))
    return Recommendation(point=chosen, best=best, tolerance=tolerance)


def ceilings(
    setting: Setting,
    *,
    hold_s: float,
    receive_s: float,
    cpu_msgs_s: float | None = None,
    emulator_msgs_s: float | None = None,
) -> dict[str, float]:
    """The known bounds of `setting`'s rate in msgs/s, by name (see the module docstring);
    `hold_s` is L of Little's law, `receive_s` the mean receive round trip; a latency of 0
    gives no Little's-law or receiver bound."""
    out: dict[str, float] = {}
    if hold_s > 0:
        out["Little's law C/L"] = setting.max_in_flight / hold_s
    if receive_s > 0:
        out["receivers R*B/L"] = setting.receivers * setting.batch_size / receive_s
    if cpu_msgs_s:
        out["CPU"] = cpu_msgs_s
    if emulator_msgs_s:
        out["emulator"] = emulator_msgs_s
    return out


def binding(bounds: dict[str, float]) -> tuple[str, float] | None:
    """The lowest bound (name, msgs/s), or None when none is known."""
    if not bounds:
        return None
    name = min(bounds, key=lambda key: bounds[key])
    return name, bounds[name]
