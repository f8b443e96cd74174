"""The node-sqs-consumer baseline (asyncloop/_bench/_node_baseline.py and node/consumer.mjs).

- Against fauxqs and an in-process LambdaServer: every message of the queue is invoked (at least
  once, with the seed's payload) and deleted, and the queue is empty afterwards; the CPU and
  API calls come back from the Node process.
- How C maps to instances of batch 10; which targets it runs on by default, and the skip (not
  an error) when Node is missing, with its message in the bench's progress output.

Skipped only where Node.js >= 20 and npm are missing; the first run installs the pinned
packages into the cache (`ensure_node_baseline`).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import pytest
import pytest_asyncio

from asyncloop import Stats
from asyncloop._bench import _runner
from asyncloop._bench._config import BenchConfig, BenchError, Setting
from asyncloop._bench._latency_profiles import PROFILES
from asyncloop._bench._node_baseline import (
    NODE_BASELINE,
    NodeConsumer,
    baseline_setting,
    default_cache_dir,
    ensure_node_baseline,
    node_versions,
    open_node_consumer,
    unavailable_reason,
)
from asyncloop._bench._runner import run_bench
from asyncloop._bench._workload import Tracker, body
from asyncloop.testing import FaultProxy, node_available
from asyncloop.testing._fauxqs import FauxqsServer
from asyncloop.testing._lambda_server import LambdaServer

pytestmark = [pytest.mark.integration]
needs_node = pytest.mark.skipif(
    not node_available(), reason="the node baseline needs Node.js >= 20 and npm on PATH"
)

REGION = "us-east-1"
FUNCTION = "worker"
MESSAGES = 200


@pytest.fixture(scope="module")
def fauxqs() -> Iterator[FauxqsServer]:
    if not node_available():
        pytest.skip("fauxqs needs Node.js >= 20 and npm on PATH")
    with FauxqsServer() as server:
        yield server


@pytest_asyncio.fixture
async def sqs(fauxqs: FauxqsServer) -> AsyncIterator[Any]:
    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    async with session.client("sqs", endpoint_url=fauxqs.endpoint_url) as client:
        yield client


async def queue_with(sqs: Any, name: str, count: int) -> str:
    url = str(
        (await sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "300"}))[
            "QueueUrl"
        ]
    )
    for start in range(0, count, 10):
        entries = [
            {"Id": str(i), "MessageBody": body(start + i)} for i in range(min(10, count - start))
        ]
        response = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed")
    return url


async def messages_left(sqs: Any, url: str) -> int:
    attributes = (
        await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


# One sqs-consumer instance of batch 10, as most of these runs use.
_ONE_INSTANCE = Setting(1, 10, 10)


async def _consume(
    url: str,
    sqs_endpoint: str,
    lambda_endpoint: str,
    expected: int,
    *,
    setting: Setting = _ONE_INSTANCE,
    tracker: Tracker | None = None,
    stats: Stats | None = None,
    delete_by: str = "consumer",
    **options: Any,
) -> NodeConsumer:
    """Run the node baseline on `url` (long polls of 1 s) until `expected` succeeded, within
    90 s; the finished consumer, for its calls and CPU."""
    with anyio.fail_after(90):
        async with open_node_consumer(
            queue_url=url,
            sqs_endpoint=sqs_endpoint,
            lambda_endpoint=lambda_endpoint,
            function_name=FUNCTION,
            region=REGION,
            setting=setting,
            expected=expected,
            delete_by=delete_by,
            wait_time_seconds=1,
            **options,
        ) as node:
            await node.run(
                tracker=tracker if tracker is not None else Tracker(expected),
                stats=stats if stats is not None else Stats(),
            )
    return node


@needs_node
@pytest.mark.asyncio
async def test_every_message_is_invoked_and_deleted_and_the_queue_is_empty(
    fauxqs: FauxqsServer, sqs: Any
) -> None:
    # GIVEN 200 messages on fauxqs and a local Lambda endpoint that records every payload
    url = await queue_with(sqs, "node-baseline", MESSAGES)
    async with LambdaServer(functions=[FUNCTION], record_payloads=True) as lambda_server:
        tracker = Tracker(MESSAGES)
        stats = Stats()
        # WHEN the node baseline consumes them with 2 instances of batch 10
        node = await _consume(
            url,
            fauxqs.endpoint_url,
            lambda_server.endpoint_url,
            MESSAGES,
            setting=Setting(2, 20, 10),
            tracker=tracker,
            stats=stats,
        )
        recorded = list(lambda_server.recorded or ())
    # THEN every message was invoked at least once, as an Event with the seed's payload
    bodies = Counter(invocation.decoded()["Records"][0]["sqs"]["Body"] for invocation in recorded)
    assert set(bodies) == {body(i) for i in range(MESSAGES)}
    assert {invocation.invocation_type for invocation in recorded} == {"Event"}
    assert all(not invocation.failed for invocation in recorded)
    # AND every message was deleted: nothing is left in the queue, visible or in flight
    assert await messages_left(sqs, url) == 0
    assert stats.deleted >= MESSAGES
    assert tracker.done >= MESSAGES
    assert tracker.finished.is_set()
    # AND the Node process reported its calls (one DeleteMessage per message) and its CPU
    assert node.calls["Invoke"] == len(recorded)
    assert node.calls["DeleteMessage"] == stats.deleted
    assert node.calls["ReceiveMessage"] >= MESSAGES // 10
    assert node.cpu_s is not None
    assert node.cpu_s > 0
    assert stats.receive_to_done.count == node.calls["Invoke"]


@needs_node
@pytest.mark.asyncio
async def test_every_sqs_call_it_makes_gets_the_profile_latency_at_the_proxy(
    fauxqs: FauxqsServer, sqs: Any
) -> None:
    # GIVEN fauxqs behind a FaultProxy holding exactly the operations the bench's latency
    # proxy holds (Profile.proxy_latencies), for 0 s: it only counts them
    url = await queue_with(sqs, "node-baseline-proxied", 40)
    held = PROFILES["aws-like"].proxy_latencies("Event")
    async with (
        FaultProxy(fauxqs.endpoint_url, latency=dict.fromkeys(held, 0.0)) as proxy,
        LambdaServer(functions=[FUNCTION]) as lambda_server,
    ):
        # WHEN the node baseline consumes through the proxy, as the fauxqs target routes it
        node = await _consume(url, proxy.endpoint_url, lambda_server.endpoint_url, 40)
        delayed = dict(proxy.delayed)
    # THEN every SQS call Node made (its one DeleteMessage per message included) was held
    sqs_calls = {op: n for op, n in node.calls.items() if op != "Invoke"}
    assert sqs_calls["DeleteMessage"] == 40
    for operation, count in sqs_calls.items():
        assert delayed.get(operation) == count, (operation, delayed)


@needs_node
@pytest.mark.asyncio
async def test_it_invokes_with_the_runs_invocation_type(fauxqs: FauxqsServer, sqs: Any) -> None:
    # GIVEN 20 messages and a bench run with --invocation-type RequestResponse
    url = await queue_with(sqs, "node-baseline-sync", 20)
    async with LambdaServer(functions=[FUNCTION], record_payloads=True) as lambda_server:
        # WHEN the node baseline consumes them
        await _consume(
            url,
            fauxqs.endpoint_url,
            lambda_server.endpoint_url,
            20,
            invocation_type="RequestResponse",
        )
        recorded = list(lambda_server.recorded or ())
    # THEN every invoke was synchronous, as asyncloop's are in that run, and all were deleted
    assert len(recorded) >= 20
    assert {invocation.invocation_type for invocation in recorded} == {"RequestResponse"}
    assert await messages_left(sqs, url) == 0


@needs_node
@pytest.mark.asyncio
async def test_delete_by_worker_leaves_the_messages_to_the_worker(
    fauxqs: FauxqsServer, sqs: Any
) -> None:
    # GIVEN 20 messages and delete-by worker (the seed: the worker function deletes)
    url = await queue_with(sqs, "node-baseline-worker", 20)
    async with LambdaServer(functions=[FUNCTION], record_payloads=True) as lambda_server:
        # WHEN the node baseline consumes them
        node = await _consume(
            url, fauxqs.endpoint_url, lambda_server.endpoint_url, 20, delete_by="worker"
        )
        invoked = len(lambda_server.recorded or ())
    # THEN all 20 were invoked, none deleted by the consumer: all 20 are still in flight
    assert invoked >= 20
    assert "DeleteMessage" not in node.calls
    assert await messages_left(sqs, url) == 20


@pytest.mark.parametrize(
    ("max_in_flight", "expected"),
    [
        ((8,), Setting(1, 10, 10)),
        ((10,), Setting(1, 10, 10)),
        ((16, 11), Setting(2, 20, 10)),
        ((64, 256), Setting(26, 260, 10)),
    ],
)
def test_instances_are_ceil_of_the_largest_c_over_10(
    max_in_flight: tuple[int, ...], expected: Setting
) -> None:
    # GIVEN a fauxqs sweep WHEN the node baseline is sized THEN ceil(max C / 10) of batch 10
    config = BenchConfig(target="fauxqs", max_in_flight=max_in_flight).resolved()
    assert baseline_setting(config) == expected


def test_it_is_a_default_baseline_on_fauxqs_only() -> None:
    # GIVEN default baselines WHEN resolved THEN fauxqs has all three, the other targets two
    assert NODE_BASELINE in (BenchConfig(target="fauxqs").resolved().baselines or ())
    for target in ("fake", "moto", "aws"):
        assert BenchConfig(target=target).resolved().baselines == (
            "seed-sequential",
            "naive-gather",
        )
    # AND asking for it on another target is a parameter error naming the target
    with pytest.raises(BenchError, match="fauxqs target only, got target 'moto'"):
        BenchConfig(target="moto", baselines=(NODE_BASELINE,))


def test_without_node_it_is_unavailable_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no Node on the machine
    import asyncloop.testing

    monkeypatch.setattr(asyncloop.testing, "node_available", lambda: False)
    # WHEN asked THEN the reason names Node and how to install it
    reason = unavailable_reason(BenchConfig(target="fauxqs").resolved())
    assert reason is not None
    assert "Node.js >= 20" in reason


def test_the_pinned_versions_are_exact() -> None:
    # GIVEN asyncloop/_bench/node/package.json and its lock THEN exact versions, the same in both
    versions = node_versions()
    assert set(versions) == {"sqs-consumer", "@aws-sdk/client-sqs", "@aws-sdk/client-lambda"}
    lock = json.loads(
        (
            Path(__file__).parents[2] / "asyncloop" / "_bench" / "node" / "package-lock.json"
        ).read_text()
    )
    for name, version in versions.items():
        assert version[0].isdigit(), f"{name} is not pinned: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


@needs_node
def test_install_is_done_once_and_kept() -> None:
    # GIVEN the default cache WHEN ensured twice (the first installs on a fresh machine)
    script = ensure_node_baseline()
    root = default_cache_dir()
    stamp = (root / ".installed").stat().st_mtime_ns
    again = ensure_node_baseline()
    # THEN the script sits beside the pinned packages, and the second call installed nothing
    assert script == again == root / "consumer.mjs"
    package = json.loads((root / "node_modules" / "sqs-consumer" / "package.json").read_text())
    assert package["version"] == node_versions()["sqs-consumer"]
    assert (root / ".installed").stat().st_mtime_ns == stamp


@needs_node
@pytest.mark.asyncio
async def test_the_bench_skips_it_with_a_message_when_unavailable(
    monkeypatch: pytest.MonkeyPatch, aws_credentials: None
) -> None:
    # GIVEN a fauxqs bench asking for the node baseline, on a machine where it cannot run
    monkeypatch.setattr(_runner, "unavailable_reason", lambda config: "no Node here")
    config = BenchConfig(
        target="fauxqs",
        messages=20,
        receivers=(1,),
        max_in_flight=(8,),
        repeats=1,
        warmup_messages=10,
        calibrate=False,
        baselines=(NODE_BASELINE,),
    )
    progress = io.StringIO()
    # WHEN the bench runs
    with anyio.fail_after(90):
        doc = await run_bench(config, progress_stream=progress)
    # THEN it says so, and runs the rest without it: not an error
    assert "skipping the node-sqs-consumer baseline: no Node here" in progress.getvalue()
    assert [r["contender"] for r in doc["results"]] == ["asyncloop"]
    assert doc["parameters"]["baselines"] == []
