"""`asyncloop run`'s self-reporting: the periodic stats line and the Prometheus endpoint."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ._cli_flags import _option
from ._exceptions import AsyncloopError, ConfigError
from ._validate import check_range


def _add_observe(run: argparse.ArgumentParser) -> None:
    _option(
        run,
        "--stats-interval",
        float,
        30.0,
        "seconds between the INFO summary lines (rates, in flight, limit, p50/p99); 0: none",
    )
    _option(
        run,
        "--metrics-port",
        int,
        help="serve Prometheus metrics on this port (0: a free one; needs asyncloop[metrics])",
    )
    _option(run, "--metrics-host", default="127.0.0.1", help="the address --metrics-port binds")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Observe:
    """`stats_interval` seconds (0: no stats line; else 0.01..86400, default 30);
    `metrics_port` (None: no endpoint; 0..65535) on `metrics_host` (default 127.0.0.1)."""

    stats_interval: float = 30.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.stats_interval != 0:
            check_range("stats_interval", self.stats_interval, 0.01, 86_400.0)
        if self.metrics_port is not None:
            check_range("metrics_port", self.metrics_port, 0, 65_535)
        if not self.metrics_host:
            raise ConfigError("metrics_host must not be empty", field="metrics_host")


def _observe_options(args: argparse.Namespace) -> _Observe:
    """The flags' values, checked; a --metrics-port without prometheus-client is refused here,
    before anything runs."""
    observe = _Observe(
        stats_interval=args.stats_interval,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    if observe.metrics_port is not None:
        from ._metrics import require

        require()
    return observe


@asynccontextmanager
async def _observing(consumer: Any, observe: _Observe) -> AsyncIterator[None]:
    """Serve metrics and log the stats line while the block runs; both stop when it ends."""
    import anyio

    with ExitStack() as stack:
        if observe.metrics_port is not None:
            from ._metrics import MetricsServer

            server = MetricsServer(consumer, host=observe.metrics_host, port=observe.metrics_port)
            try:
                stack.enter_context(server)
            except OSError as exc:
                raise AsyncloopError(
                    f"--metrics-port: cannot listen on {observe.metrics_host}:"
                    f"{observe.metrics_port}: {exc.strerror or exc}"
                ) from exc
        async with anyio.create_task_group() as group:
            if observe.stats_interval > 0:
                from ._stats_log import StatsReporter

                group.start_soon(StatsReporter(consumer, observe.stats_interval).run)
            try:
                yield
            finally:
                group.cancel_scope.cancel()
