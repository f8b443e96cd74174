"""Prometheus metrics of a running consumer (`asyncloop run --metrics-port`).

Needs the ``metrics`` extra (``pip install 'asyncloop[metrics]'``: prometheus-client).
`MetricsServer` serves ``/metrics`` from prometheus-client's own HTTP server, in a thread,
on 127.0.0.1 unless told otherwise. Nothing is counted on the hot path: a custom collector
(`StatsCollector`) reads the consumer's `Stats` when Prometheus scrapes, and turns its
latency histogram (1%-wide buckets) into a Prometheus histogram with the conventional
buckets of `DURATION_BUCKETS`.

The families (all prefixed ``asyncloop_``):

- ``messages_received_total``: messages returned by ReceiveMessage.
- ``messages_total{outcome}``: finished dispatches, ``succeeded`` or ``failed``.
- ``dispatch_throttled_total``, ``dispatch_retried_total``: throttles and in-process retries.
- ``messages_deleted_total``, ``message_delete_failures_total``, ``messages_released_total``,
  ``message_release_failures_total``, ``visibility_extensions_total``,
  ``visibility_extension_failures_total``, ``leases_lost_total``.
- ``in_flight_messages``, ``peak_in_flight_messages``, ``dispatch_limit`` (gauges).
- ``dispatch_duration_seconds``: a histogram of the time from receive to a successful dispatch.
- ``api_calls_total{operation}``: AWS calls made, by operation.
- ``api_errors_total{operation}``: AWS calls that failed as a whole, by operation.

The collector runs in the server's thread and reads counters the event loop writes; each read
is atomic under the GIL, so a scrape may be a message or two behind, never torn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from ._exceptions import ConfigError
from ._stats_log import Observed

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ("DURATION_BUCKETS", "INSTALL_HINT", "MetricsServer", "StatsCollector", "require")

logger = logging.getLogger("asyncloop.metrics")

INSTALL_HINT: Final = "--metrics-port needs prometheus-client: pip install 'asyncloop[metrics]'"

# Prometheus's default buckets, widened to the minutes a Lambda invoke can take.
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip


def require() -> None:
    """Raise `ConfigError` (with how to install it) when prometheus-client is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT, field="metrics_port") from exc


class StatsCollector:
    """A prometheus-client collector that reads `observed` at scrape time."""

    def __init__(self, observed: Observed) -> None:
        self._observed = observed

    def describe(self) -> list[Metric]:
        # Empty: the registry then does not call collect() at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        observed = self._observed
        stats = observed.stats

        def counter(name: str, doc: str, value: int) -> CounterMetricFamily:
            return CounterMetricFamily(f"asyncloop_{name}", doc, value=value)

        yield counter("messages_received", "Messages returned by ReceiveMessage.", stats.received)
        outcomes = CounterMetricFamily(
            "asyncloop_messages", "Finished dispatches, by outcome.", labels=["outcome"]
        )
        outcomes.add_metric(["succeeded"], stats.succeeded)
        outcomes.add_metric(["failed"], stats.failed)
        yield outcomes
        yield counter(
            "dispatch_throttled", "Dispatch attempts the target refused for capacity.",
            stats.throttled,
        )  # fmt: skip
        yield counter(
            "dispatch_retried", "In-process re-dispatches after a throttle.", stats.retried
        )
        yield counter("messages_deleted", "Messages deleted by the consumer.", stats.deleted)
        yield counter(
            "message_delete_failures", "Deletes given up after retries (the message returns).",
            stats.delete_failed,
        )  # fmt: skip
        yield counter("messages_released", "Messages made visible again at once.", stats.released)
        yield counter(
            "message_release_failures", "Releases that failed (visible after the timeout).",
            stats.release_failed,
        )  # fmt: skip
        yield counter(
            "visibility_extensions", "Visibility extensions by the heartbeat.", stats.extended
        )
        yield counter(
            "visibility_extension_failures", "Visibility extensions that failed.",
            stats.extend_failed,
        )  # fmt: skip
        yield counter(
            "leases_lost", "Messages whose receipt handle an extension found invalid.",
            stats.lease_lost,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "asyncloop_in_flight_messages",
            "Messages received and not yet finished.",
            value=observed.in_flight,
        )
        yield GaugeMetricFamily(
            "asyncloop_peak_in_flight_messages",
            "The most messages held at once so far.",
            value=stats.peak_in_flight,
        )
        yield GaugeMetricFamily(
            "asyncloop_dispatch_limit",
            "The adaptive dispatch limit (max in flight until a throttle lowers it).",
            value=observed.concurrency_limit,
        )
        # One snapshot, so the buckets, the count and the sum agree with each other.
        latency = stats.receive_to_done.copy()
        cumulative = latency.cumulative_counts(DURATION_BUCKETS)
        total = max(latency.count, cumulative[-1])
        buckets: list[tuple[str, float]] = [
            (repr(bound), float(n)) for bound, n in zip(DURATION_BUCKETS, cumulative, strict=True)
        ]
        buckets.append(("+Inf", float(total)))
        yield HistogramMetricFamily(
            "asyncloop_dispatch_duration_seconds",
            "Seconds from receive to the dispatch's success.",
            buckets=buckets,
            sum_value=latency.total,
        )
        calls = CounterMetricFamily(
            "asyncloop_api_calls", "AWS API calls made, by operation.", labels=["operation"]
        )
        for operation, n in sorted(dict(stats.api_calls).items()):
            calls.add_metric([operation], n)
        yield calls
        errors = CounterMetricFamily(
            "asyncloop_api_errors",
            "AWS API calls that failed as a whole (throttles included), by operation.",
            labels=["operation"],
        )
        for operation, n in sorted(dict(stats.api_errors).items()):
            errors.add_metric([operation], n)
        yield errors


class MetricsServer:
    """Serves ``/metrics`` for `observed` on `host`:`port` while the ``with`` block runs.

    ``port=0`` takes a free port (read `port` after entering). Leaving the block stops the
    server, closes its socket and joins its thread. A bind failure raises `OSError`.
    """

    def __init__(self, observed: Observed, *, host: str = "127.0.0.1", port: int) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65_535:
            raise ConfigError(f"metrics_port must be in 0..65535, got {port!r}", field="port")
        self._observed = observed
        self._host = host
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the free one chosen for ``port=0``)."""
        if self._server is None:
            raise RuntimeError("MetricsServer is not running")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/metrics"

    def __enter__(self) -> MetricsServer:
        from prometheus_client import (
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
            start_http_server,
        )

        # A registry of our own: the global one would keep collectors of finished runs.
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        registry.register(StatsCollector(self._observed))
        self._server, self._thread = start_http_server(
            self._port, addr=self._host, registry=registry
        )
        logger.info("serving Prometheus metrics on %s", self.url)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and join the thread; idempotent."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()
