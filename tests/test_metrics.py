"""The Prometheus endpoint: scraped over real HTTP on 127.0.0.1, stopped with the run."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import urllib.request
from dataclasses import dataclass, field

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asyncloop import CallableDispatcher, Consumer, ConsumerConfig, Message, Stats
from asyncloop._cli import main
from asyncloop._metrics import DURATION_BUCKETS, MetricsServer

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


@dataclass
class Observed:
    stats: Stats = field(default_factory=Stats)
    in_flight: int = 0
    concurrency_limit: int = 0


def scrape(url: str) -> dict[str, float]:
    """``{"name{label=value,...}": value}`` of every sample the endpoint serves."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_scrape_serves_every_family_with_the_stats_values() -> None:
    # GIVEN a consumer's counters: 4 received, 3 succeeded at 3 ms, 20 ms, 0.3 s; 1 failed
    observed = Observed(in_flight=5, concurrency_limit=32)
    stats = observed.stats
    stats.received, stats.succeeded, stats.failed, stats.throttled = 4, 3, 1, 2
    stats.deleted, stats.delete_failed, stats.released = 3, 0, 1
    stats.peak_in_flight = 9
    for seconds in (0.003, 0.020, 0.300):
        stats.receive_to_done.record(seconds)
    stats.count_call("ReceiveMessage", 6)
    stats.count_call("DeleteMessageBatch")
    stats.count_error("ReceiveMessage", 2)
    threads_before = set(threading.enumerate())

    # WHEN the endpoint is scraped over HTTP on 127.0.0.1
    with MetricsServer(observed, port=0) as server:
        port = server.port
        assert server.url == f"http://127.0.0.1:{port}/metrics"
        samples = scrape(server.url)

    # THEN the counters, gauges and calls have their conventional names and the values,
    assert samples["asyncloop_messages_received_total"] == 4
    assert samples["asyncloop_messages_total{outcome=succeeded}"] == 3
    assert samples["asyncloop_messages_total{outcome=failed}"] == 1
    assert samples["asyncloop_dispatch_throttled_total"] == 2
    assert samples["asyncloop_messages_deleted_total"] == 3
    assert samples["asyncloop_messages_released_total"] == 1
    assert samples["asyncloop_in_flight_messages"] == 5
    assert samples["asyncloop_peak_in_flight_messages"] == 9
    assert samples["asyncloop_dispatch_limit"] == 32
    assert samples["asyncloop_api_calls_total{operation=ReceiveMessage}"] == 6
    assert samples["asyncloop_api_calls_total{operation=DeleteMessageBatch}"] == 1
    assert samples["asyncloop_api_errors_total{operation=ReceiveMessage}"] == 2
    # the histogram puts each duration under its bucket and agrees with its count and sum,
    bucket = "asyncloop_dispatch_duration_seconds_bucket"
    assert samples[f"{bucket}{{le=0.005}}"] == 1
    assert samples[f"{bucket}{{le=0.025}}"] == 2
    assert samples[f"{bucket}{{le=0.25}}"] == 2
    assert samples[f"{bucket}{{le=0.5}}"] == 3
    assert samples[f"{bucket}{{le=+Inf}}"] == 3
    assert samples["asyncloop_dispatch_duration_seconds_count"] == 3
    assert samples["asyncloop_dispatch_duration_seconds_sum"] == pytest.approx(0.323)
    counts = [samples[f"{bucket}{{le={b}}}"] for b in DURATION_BUCKETS]
    assert counts == sorted(counts)
    # the process collectors are there too,
    assert "process_cpu_seconds_total" in samples
    # and leaving the block closed the port and joined the server's thread
    assert refuses(port)
    assert set(threading.enumerate()) <= threads_before


@pytest.mark.asyncio
async def test_a_scrape_during_a_run_sees_the_messages_in_flight() -> None:
    # GIVEN a consumer whose 6 messages are held by their handler until a scrape happened
    from asyncloop.testing import FakeQueue

    queue = FakeQueue()
    queue.send_many([f"m{i}" for i in range(6)])
    entered = 0
    all_in = asyncio.Event()
    release = asyncio.Event()

    async def handler(message: Message) -> None:
        nonlocal entered
        entered += 1
        if entered == 6:
            all_in.set()
        await release.wait()

    consumer = Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(handler),
        config=ConsumerConfig(max_in_flight=16, until_empty=True, wait_time_seconds=0),
    )
    with MetricsServer(consumer, port=0) as server:
        async with anyio.create_task_group() as group:
            group.start_soon(consumer.run)
            await all_in.wait()
            # WHEN it is scraped while the 6 are in flight, and again after the run
            during = await anyio.to_thread.run_sync(scrape, server.url)
            release.set()
        after = await anyio.to_thread.run_sync(scrape, server.url)

    # THEN the first scrape saw them in flight under the limit, and the second saw them done
    assert during["asyncloop_in_flight_messages"] == 6
    assert during["asyncloop_dispatch_limit"] == 16
    assert during["asyncloop_messages_total{outcome=succeeded}"] == 0
    assert during["asyncloop_api_calls_total{operation=ReceiveMessage}"] >= 1
    assert after["asyncloop_in_flight_messages"] == 0
    assert after["asyncloop_messages_total{outcome=succeeded}"] == 6
    assert after["asyncloop_dispatch_duration_seconds_count"] == 6


def test_without_prometheus_client_metrics_port_exits_2_with_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN prometheus-client cannot be imported
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    # WHEN run is asked for metrics
    code = main(["run", "--queue-url", URL, "--handler", "os:getcwd", "--metrics-port", "9464"])
    # THEN it stops before anything runs, with one line saying how to install it
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "pip install 'asyncloop[metrics]'" in err


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--metrics-port", "70000"], {}, "--metrics-port must be in 0..65535, got 70000"),
        (
            [],
            {"ASYNCLOOP_METRICS_PORT": "-1"},
            "ASYNCLOOP_METRICS_PORT must be in 0..65535, got -1",
        ),
        (["--stats-interval", "-5"], {}, "--stats-interval must be in 0.01..86400.0, got -5.0"),
        (
            [],
            {"ASYNCLOOP_STATS_INTERVAL": "nan"},
            "ASYNCLOOP_STATS_INTERVAL must be in 0.01..86400.0, got nan",
        ),
        (["--metrics-host", ""], {}, "--metrics-host must not be empty"),
    ],
)
def test_bad_observe_flags_exit_2(
    argv: list[str],
    env: dict[str, str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["run", "--queue-url", URL, "--handler", "os:getcwd", *argv]) == 2
    assert expected in capsys.readouterr().err


def test_a_port_in_use_is_an_oserror() -> None:
    # GIVEN a port someone holds on 127.0.0.1
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # WHEN the server is asked to bind it THEN it refuses, and leaves no thread behind
        threads_before = set(threading.enumerate())
        with pytest.raises(OSError, match="in use"), MetricsServer(Observed(), port=port):
            pass
        assert set(threading.enumerate()) <= threads_before


@pytest.mark.asyncio
async def test_the_run_observer_reports_a_port_in_use_as_one_error() -> None:
    from asyncloop import AsyncloopError
    from asyncloop._cli_observe import _Observe, _observing

    # GIVEN a port someone holds
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # WHEN `run`'s observer starts on it THEN the error names the flag and the address
        expected = rf"--metrics-port: cannot listen on 127.0.0.1:{port}: .*in use"
        with pytest.raises(AsyncloopError, match=expected):
            async with _observing(Observed(), _Observe(metrics_port=port, stats_interval=0)):
                pytest.fail("the block must not run")
