"""What every target is: `Target` (entered once per bench, `run_env` once per run) and
`RunEnv` (one run's queue, dispatcher, feeder and emulator processes)."""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from asyncloop import ConsumerConfig

from .._config import BenchConfig
from .._workload import CountingQueue, Tracker, TrackingDispatcher

__all__ = ("BASELINE_TRANSPORT", "FUNCTION_NAME", "RunEnv", "Target", "proc_cpu_seconds")

FUNCTION_NAME: Final = "asyncloop-bench"
# The baselines port loops written on the AWS SDK: they run on aiobotocore whatever the sweep.
BASELINE_TRANSPORT: Final = "sdk"
_CLK_TCK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` (Linux /proc), or None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[11], fields[12]: utime, stime (the 14th and 15th of the full line)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


@dataclass
class RunEnv:
    """One run's queue and dispatcher (both counting into `tracker`), and its feeder."""

    queue: CountingQueue
    dispatcher: TrackingDispatcher
    tracker: Tracker
    start_feeding: Callable[[], None] = lambda: None
    server_pids: list[int] = field(default_factory=list)
    feeder_error: list[BaseException] = field(default_factory=list)
    # The HTTP targets' endpoints, for a contender in another process (node-sqs-consumer).
    sqs_endpoint: str | None = None
    lambda_endpoint: str | None = None
    function_name: str | None = None
    region: str | None = None

    def server_cpu(self) -> float | None:
        """CPU seconds used so far by the emulator processes, or None (fake, aws)."""
        if not self.server_pids:
            return None
        total = 0.0
        for pid in self.server_pids:
            seconds = proc_cpu_seconds(pid)
            if seconds is None:
                return None
            total += seconds
        return total


class Target(ABC):
    """A place to run: entered once per bench, `run_env` once per run."""

    name: str

    def __init__(self, config: BenchConfig) -> None:
        self.config = config

    async def __aenter__(self) -> Target:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    @abstractmethod
    def run_env(
        self,
        n: int,
        tracker: Tracker,
        *,
        transport: str = BASELINE_TRANSPORT,
        consumer: ConsumerConfig | None = None,
    ) -> contextlib.AbstractAsyncContextManager[RunEnv]:
        """A fresh queue holding the first `backlog` of `n` messages, before timing starts.

        On the HTTP targets the run's queue and dispatcher are built by
        `asyncloop.open_consumer` on `transport`, its clients' pool sized to `consumer` (the
        run's `ConsumerConfig`; None: the default's). The fake target has no transport.
        """

    async def calibrate(self) -> dict[str, Any]:
        """Target-specific reference figures measured in the same run (see the runner)."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
