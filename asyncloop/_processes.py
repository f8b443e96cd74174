"""`asyncloop run --processes N`: N consumer processes on one queue, under one supervisor.

One asyncio process spends at most one core, and on the SDK path aiobotocore's cost per call
fills it first. The supervisor (the parent `asyncloop run`) starts N children, each the same
``asyncloop run`` with the same flags but ``--processes 1`` and its share, so each has its own
event loop, clients, receivers and acknowledgements. The parent:

- validates every flag once, before spawning (a usage error is exit 2 and spawns nothing);
- splits ``--max-in-flight`` across the children (`plan`): the flag keeps bounding the whole
  run's concurrency against the target, so N processes never hit a Lambda function harder than
  one process with the same flag would. A share must be >= 1, so N > max-in-flight is refused
  (exit 2). ``--receivers`` is split too (the run makes about the same number of long polls
  against the queue), with at least one receiver per child, since a child without one would
  receive nothing. ``--metrics-port P`` (P > 0) becomes P + i for child i; 0 stays 0 (each a
  free port);
- forwards SIGINT and SIGTERM to every child, as SIGTERM: the first makes each drain, the
  second makes each abort (in-flight work released). The children run in their own sessions,
  so a Ctrl-C on the terminal reaches them once, through the parent, never twice;
- prefixes each child's stderr lines with ``[p<i>] `` on its own stderr;
- reads each child's statistics (the child prints them whole, histograms included, with the
  hidden ``--emit-state`` flag) and prints one merged summary (`Stats.merged`): with ``--json``
  stdout is exactly one JSON object, the single-process keys plus ``processes`` and
  ``exit_codes``;
- exits with one code (`exit_code`): 2 if a child had a usage error, else 1 if any child
  failed, was aborted, died of a signal or printed no statistics, else 0. A child that fails
  while the others run makes the supervisor stop the others gracefully (as a first signal).

With ``--until-empty`` each child stops on its own once the queue answers it empty. A
supervisor killed with SIGKILL cannot forward anything: its children run on until their own
stop condition (a service manager that kills the whole control group stops them too).

This module plans the children and merges their results; `asyncloop._supervisor` runs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._exceptions import ConfigError
from ._stats import Stats

__all__ = (
    "ChildPlan",
    "ChildResult",
    "Option",
    "available_cores",
    "child_argv",
    "exit_code",
    "merged_summary",
    "parse_processes",
    "plan",
)

AUTO = "auto"
# A bound on typos (--processes 1000000), far above any machine's useful count.
MAX_PROCESSES = 1024
# The key of a child's statistics in its --emit-state JSON line.
STATE_KEY = "state"

_EXIT_OK = 0
_EXIT_FAILURE = 1
_EXIT_USAGE = 2


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, else
    ``os.cpu_count()``), at least 1: what ``--processes auto`` means."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parse_processes(value: str | int) -> int:
    """``"auto"`` -> `available_cores`; else an integer in 1..MAX_PROCESSES. ConfigError
    (field ``processes``) naming the range and the value otherwise."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return available_cores()
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if isinstance(value, bool) or not 1 <= count <= MAX_PROCESSES:
        raise ConfigError(
            f"processes must be {AUTO} or an integer in 1..{MAX_PROCESSES}, got {value!r}",
            field="processes",
        )
    return count


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` shares differing by at most one, the larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildPlan:
    """What child `index` (0-based) runs with: its share of ``--max-in-flight`` (>= 1), its
    receivers (>= 1), and its metrics port (None: no endpoint)."""

    index: int
    max_in_flight: int
    receivers: int
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"index must be >= 0, got {self.index}")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.receivers < 1:
            raise ValueError(f"receivers must be >= 1, got {self.receivers}")


def plan(
    processes: int, *, max_in_flight: int, receivers: int, metrics_port: int | None = None
) -> list[ChildPlan]:
    """Each child's share (see the module docstring). ConfigError when a child's share of
    max-in-flight would be 0 (field ``processes``) or a metrics port falls past 65535
    (field ``metrics_port``)."""
    if processes > max_in_flight:
        raise ConfigError(
            f"processes must be <= max-in-flight ({max_in_flight}: it is split across the "
            f"processes, each needs >= 1), got {processes}",
            field="processes",
        )
    if metrics_port and metrics_port + processes - 1 > 65_535:
        raise ConfigError(
            f"metrics_port must be in 1..{65_536 - processes} with {processes} processes "
            f"(process i serves on metrics_port + i), got {metrics_port}",
            field="metrics_port",
        )
    flights = _split(max_in_flight, processes)
    polls = [max(1, share) for share in _split(receivers, processes)]
    ports: list[int | None] = [
        None if metrics_port is None else metrics_port + i if metrics_port else 0
        for i in range(processes)
    ]
    return [
        ChildPlan(index=i, max_in_flight=flights[i], receivers=polls[i], metrics_port=ports[i])
        for i in range(processes)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    """One of the parent's resolved flags, to pass on to a child: ``--flag=value``, or for a
    `switch` the bare flag when `value` is true (nothing when it is None or false)."""

    flag: str
    value: Any
    switch: bool = False


def child_argv(
    options: Sequence[Option], child: ChildPlan, *, executable: str | None = None
) -> list[str]:
    """``python -m asyncloop run`` with the parent's `options` and the child's overrides:
    ``--processes 1``, its shares, ``--json --emit-state``. Values are passed as
    ``--flag=value``, so one that starts with a dash is not read as a flag."""
    overrides: dict[str, Any] = {
        "--processes": 1,
        "--max-in-flight": child.max_in_flight,
        "--receivers": child.receivers,
        "--metrics-port": child.metrics_port,
        "--json": True,
        "--emit-state": True,
    }
    argv = [executable or sys.executable, "-m", "asyncloop", "run"]
    seen: set[str] = set()
    for option in options:
        value = overrides.get(option.flag, option.value)
        seen.add(option.flag)
        argv += _render(option.flag, value, switch=option.switch)
    for flag, value in overrides.items():
        if flag not in seen:
            argv += _render(flag, value, switch=isinstance(value, bool))
    return argv


def _render(flag: str, value: Any, *, switch: bool) -> list[str]:
    if value is None or value is False:
        return []
    if switch:
        return [flag]
    return [f"{flag}={value}"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildResult:
    """How child `index` ended: its exit code (negative: killed by that signal) and its
    statistics (None when it printed none: a failure before or during the run).

    `stopped_idle`: the SIGTERM we forwarded killed it, so it had no handler installed. A
    child handles SIGTERM from before its first receive until after its last delete flushed,
    so it held no message: it was stopped before it started consuming (or just after it
    ended), which is a clean stop, not a failure, and there is nothing of it to count."""

    index: int
    exit_code: int
    stats: Stats | None
    stopped_idle: bool = False


def exit_code(results: Sequence[ChildResult]) -> int:
    """One exit code for the run: 2 if any child had a usage error, else 1 if any child
    failed (exit code not 0, a signal included) or exited 0 without statistics, else 0;
    a child `stopped_idle` by a forwarded signal is not a failure."""
    if any(result.exit_code == _EXIT_USAGE for result in results):
        return _EXIT_USAGE
    if any(_failed(result) for result in results):
        return _EXIT_FAILURE
    return _EXIT_OK


def _failed(result: ChildResult) -> bool:
    if result.stopped_idle:
        return False
    return result.exit_code != _EXIT_OK or result.stats is None


def merged_summary(results: Sequence[ChildResult]) -> dict[str, Any] | None:
    """The run's summary: `Stats.merged` of the children that reported, as `Stats.to_dict`,
    plus ``processes`` (how many ran) and ``exit_codes`` (by index). None when no child
    reported statistics."""
    parts = [result.stats for result in results if result.stats is not None]
    if not parts:
        return None
    summary = Stats.merged(parts).to_dict()
    summary["processes"] = len(results)
    summary["exit_codes"] = [result.exit_code for result in results]
    return summary
