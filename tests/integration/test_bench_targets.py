"""The benchmark over real HTTP: the moto and fauxqs targets end to end with tiny settings, and
the aws target's create / run / teardown against a moto server (``--endpoint-url``), which must
leave nothing behind, also when the run is cancelled halfway.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _moto import AdminClients

import asyncloop
from asyncloop._bench._config import BenchConfig, LatencyModel
from asyncloop._bench._report import load_results, validate
from asyncloop._bench._runner import run_bench
from asyncloop._bench._tables import format_table
from asyncloop._bench._targets import AwsTarget, Target
from asyncloop._cli_bench import register
from asyncloop.testing import node_available

pytestmark = [pytest.mark.integration]


def tiny(target: str, **overrides: Any) -> BenchConfig:
    settings: dict[str, Any] = {
        "target": target,
        "messages": 40,
        "receivers": (2,),
        "max_in_flight": (8,),
        "repeats": 1,
        "warmup_messages": 10,
    }
    settings.update(overrides)
    return BenchConfig(**settings)


def check_complete(doc: dict[str, Any], messages: int, *, node: bool = False) -> None:
    validate(doc)
    assert [r["contender"] for r in doc["results"]] == [
        "asyncloop",
        "seed-sequential",
        "naive-gather",
        *(["node-sqs-consumer"] if node else []),
    ]
    for result in doc["results"]:
        run = result["runs"][0]
        assert run["complete"] is True
        assert run["succeeded"] == messages
        assert run["api_calls"]["Invoke"] == messages
        # The feeder sent exactly the run's messages, 10 at a time
        assert run["api_calls"]["SendMessageBatch (feeder)"] == messages // 10
        assert run["deleted"] == messages


async def resources(admin: AdminClients, prefix: str) -> list[str]:
    """Every queue, function and role whose name starts with `prefix`."""
    found = [
        url for url in (await admin.sqs.list_queues(QueueNamePrefix=prefix)).get("QueueUrls", [])
    ]
    functions = (await admin.lambda_.list_functions()).get("Functions", [])
    found += [f["FunctionName"] for f in functions if f["FunctionName"].startswith(prefix)]
    roles = (await admin.iam.list_roles()).get("Roles", [])
    found += [r["RoleName"] for r in roles if r["RoleName"].startswith(prefix)]
    return found


@pytest.mark.asyncio
async def test_moto_target_end_to_end(aws_credentials: None) -> None:
    # GIVEN the moto target (its own moto server in a child process) and tiny settings
    with anyio.fail_after(90):
        doc = await run_bench(tiny("moto"), progress_stream=io.StringIO())
    # THEN every contender consumed every message, and the calibration ran on moto
    check_complete(doc, 40)
    assert doc["calibration"]["emulator_ceiling"]["msgs_s"] > 0
    assert doc["calibration"]["sdk_floor"]["us_per_message"] > 0
    summary = doc["results"][0]["summary"]
    assert summary["server_cpu_s_per_1k"] is not None
    assert summary["emulator_ceiling_ratio"] is not None


@pytest.mark.asyncio
@pytest.mark.skipif(not node_available(), reason="fauxqs needs Node.js >= 20 and npm on PATH")
async def test_fauxqs_target_end_to_end(aws_credentials: None) -> None:
    with anyio.fail_after(90):
        doc = await run_bench(tiny("fauxqs"), progress_stream=io.StringIO())
    # THEN every contender consumed every message, node-sqs-consumer (its default baseline
    # there) too, in the same run, at ceil(C / 10) instances of batch 10
    check_complete(doc, 40, node=True)
    assert doc["versions"]["fauxqs"] == "1.9.2"
    node = doc["results"][-1]
    assert node["setting"] == {"receivers": 1, "max_in_flight": 10, "batch_size": 10}
    assert node["runs"][0]["api_calls"]["DeleteMessage"] == 40
    assert node["runs"][0]["cpu_s"] > 0
    # AND under the same (default aws-like) profile, its row named as node's, not asyncloop's
    assert doc["parameters"]["profile"]["name"] == "aws-like"
    assert node["label"] == "node-sqs-consumer 1x10"
    assert node["kind"] == "baseline"
    table = format_table(doc).splitlines()
    assert any(line.startswith("node-sqs-consumer 1x10 ") for line in table)
    assert max(len(line) for line in table) <= 120


@pytest.mark.asyncio
@pytest.mark.skipif(not node_available(), reason="fauxqs needs Node.js >= 20 and npm on PATH")
async def test_fauxqs_sweeps_both_transports_beside_both_floors(aws_credentials: None) -> None:
    # GIVEN a tiny sweep on fauxqs over both transports, the queue each run got recorded
    config = tiny("fauxqs", transport=("sdk", "lean"), baselines=(), messages=30)
    queues: list[tuple[str, str]] = []

    def hook(target: Target) -> None:
        original = target.run_env

        @contextlib.asynccontextmanager
        async def run_env(n: int, tracker: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async with original(n, tracker, **kwargs) as env:
                queues.append((kwargs["transport"], type(env.queue.inner).__name__))
                yield env

        target.run_env = run_env  # type: ignore[method-assign]

    # WHEN it runs
    with anyio.fail_after(120):
        doc = await run_bench(config, progress_stream=io.StringIO(), on_target=hook)
    # THEN there is a row per transport, each consumed every message
    validate(doc)
    assert doc["parameters"]["transport"] == ["sdk", "lean"]
    rows = {r["setting"]["transport"]: r for r in doc["results"]}
    assert sorted(rows) == ["lean", "sdk"]
    assert [r["label"] for r in doc["results"]] == ["R=2 C=8 B=10 sdk", "R=2 C=8 B=10 lean"]
    for row in rows.values():
        assert row["runs"][0]["complete"] is True
        assert row["runs"][0]["succeeded"] == 30
        assert row["summary"]["cpu_s_per_1k"] > 0
    # AND each run's consumer used the queue the wiring builds for its transport (warm-ups too)
    assert set(queues) == {("sdk", "SqsQueue"), ("lean", "LeanQueue")}
    # AND both CPU floors were measured in the same run, and the table shows them by the rows
    for transport in ("sdk", "lean"):
        floor = doc["calibration"][f"{transport}_floor"]
        assert floor["transport"] == transport
        assert floor["us_per_message"] > 0
        assert floor["invoke_us_per_call"] > 0
    table = format_table(doc).splitlines()
    assert any(line.startswith("R=2 C=8 B=10 lean ") for line in table)
    assert any(line.startswith("floor lean: ") for line in table)
    assert any(line.startswith("floor sdk: ") for line in table)
    assert max(len(line) for line in table) <= 120, max(table, key=len)


def test_aws_target_through_the_cli_leaves_nothing_behind(
    moto_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the CLI pointed at a moto server, confirmed with --yes
    parser = argparse.ArgumentParser(prog="asyncloop")
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "aws"
    args = parser.parse_args(
        [
            "bench",
            "--target",
            "aws",
            "--endpoint-url",
            moto_endpoint,
            "--region",
            "us-east-1",
            "--messages",
            "30",
            "--receivers",
            "2",
            "--max-in-flight",
            "8",
            "--repeats",
            "1",
            "--baselines",
            "seed-sequential",
            "--yes",
            "--out",
            str(out),
        ]
    )
    # WHEN it runs
    assert args.handler(args) == 0
    # THEN it said what it would create, and the results are complete
    assert "no-op Lambda function" in capsys.readouterr().err
    doc = load_results(out / "results.json")
    validate(doc)
    assert all(r["runs"][0]["complete"] for r in doc["results"])
    prefix = doc["target"]["prefix"]
    assert prefix.startswith("asyncloop-bench-")

    # AND nothing with its prefix is left on the server
    async def left() -> list[str]:
        import aioboto3

        session = aioboto3.Session(region_name="us-east-1")
        async with (
            session.client("sqs", endpoint_url=moto_endpoint) as sqs,
            session.client("lambda", endpoint_url=moto_endpoint) as lambda_,
            session.client("iam", endpoint_url=moto_endpoint) as iam,
        ):
            return await resources(AdminClients(sqs=sqs, lambda_=lambda_, iam=iam), prefix)

    assert anyio.run(left) == []


def test_aws_target_with_an_endpoint_that_does_not_answer_exits_1(
    aws_credentials: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a port on 127.0.0.1 that nothing listens on
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    parser = argparse.ArgumentParser(prog="asyncloop")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "bench",
            "--target",
            "aws",
            "--endpoint-url",
            f"http://127.0.0.1:{port}",
            "--yes",
            "--messages",
            "10",
            "--out",
            str(tmp_path / "none"),
        ]
    )
    # WHEN the bench runs, THEN it fails with one error line and exit code 1, writing nothing
    assert args.handler(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("asyncloop: error: the aws target failed: ")
    assert not (tmp_path / "none").exists()


@pytest.mark.asyncio
async def test_aws_target_cancelled_mid_run_leaves_nothing_behind(
    moto_endpoint: str, aws_admin: AdminClients
) -> None:
    # GIVEN the aws target against moto, with runs long enough to be caught halfway
    config = tiny(
        "aws",
        endpoint_url=moto_endpoint,
        region="us-east-1",
        messages=400,
        max_in_flight=(1,),
        receivers=(1,),
        baselines=(),
        warmup_messages=400,
        calibrate=False,
    )
    targets: list[Target] = []
    running = anyio.Event()

    def hook(target: Target) -> None:
        # Signal once the first run has its queue, feeder and messages: mid-run.
        targets.append(target)
        original = target.run_env

        @contextlib.asynccontextmanager
        async def run_env(n: int, tracker: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async with original(n, tracker, **kwargs) as env:
                running.set()
                yield env

        target.run_env = run_env  # type: ignore[method-assign]

    # WHEN the bench is cancelled while the run is under way
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_bench(config, progress_stream=io.StringIO(), on_target=hook))
            await running.wait()
            target = targets[0]
            assert isinstance(target, AwsTarget)
            aws_target = target
            # (the resources really existed: the queue of this run, the DLQ, function, role)
            during = await resources(aws_admin, target.prefix)
            assert len(during) == 4
            tg.cancel_scope.cancel()
    # THEN the teardown deleted every one of them
    assert aws_target.left_behind == []
    assert await resources(aws_admin, aws_target.prefix) == []


@pytest.mark.asyncio
async def test_the_http_check_runs_on_moto_only_below_its_ceiling(aws_credentials: None) -> None:
    # GIVEN a fake sweep with a slow setting (C=1, 100 ms invokes: about 10 msgs/s) and a fast
    # one (C=256: thousands a second), and the HTTP check on moto
    config = tiny(
        "fake",
        max_in_flight=(1, 256),
        receivers=(1,),
        baselines=(),
        profile="zero",
        invoke_latency=LatencyModel(100.0),
        http_check="moto",
    )
    # WHEN the bench runs
    with anyio.fail_after(120):
        doc = await run_bench(config, progress_stream=io.StringIO())
    validate(doc)
    check = doc["http_check"]
    threshold = check["threshold_msgs_s"]
    # THEN the slow setting ran on moto over real HTTP, compared with the fake's rate
    (ran,) = check["results"]
    assert ran["label"] == "R=1 C=1 B=10"
    assert ran["runs"][0]["complete"] is True
    assert ran["summary"]["ratio_to"]["fake"] > 0
    # AND the fast one, above the share of moto's ceiling, was reported, not run
    assert [s["label"] for s in check["skipped"]] == ["R=1 C=256 B=10"]
    assert check["skipped"][0]["fake_msgs_s"] > threshold
    assert check["calibration"]["emulator_ceiling"]["msgs_s"] > 0
    # AND the recommendation comes from the fake sweep, with the SDK's CPU from moto
    assert doc["recommendation"]["label"] == "R=1 C=256 B=10"
    assert doc["recommendation"]["sdk_cpu_ceiling_msgs_s"] > 0
    # and one core's ceiling of each transport whose floor moto measured, the default's too
    ceilings = doc["recommendation"]["cpu_ceilings_msgs_s"]
    assert ceilings["sdk"] == doc["recommendation"]["sdk_cpu_ceiling_msgs_s"]
    assert ceilings[asyncloop.AwsConfig().transport] > 0
