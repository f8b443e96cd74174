"""`asyncloop run --processes 2` as a user runs it: a supervisor and two children over fauxqs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import pytest
import pytest_asyncio
from _moto import REGION, count_messages, send_messages, unique_name

from asyncloop.testing import FauxqsServer, node_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio,
    pytest.mark.skipif(not node_available(), reason="fauxqs needs Node.js >= 20 and npm on PATH"),
]


@pytest_asyncio.fixture
async def fauxqs(aws_credentials: None) -> AsyncIterator[tuple[str, Any]]:
    """fauxqs's endpoint URL and an SQS client on it."""
    async with FauxqsServer() as server:
        session = aioboto3.Session(region_name=REGION)
        async with session.client("sqs", endpoint_url=server.endpoint_url) as sqs:
            yield server.endpoint_url, sqs


def _argv(endpoint: str, queue_url: str, handler: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "asyncloop", "run",
        "--queue-url", queue_url, "--handler", handler,
        "--endpoint-url", endpoint, "--region", REGION,
        "--processes", "2", "--stats-interval", "0", "--json", *extra,
    ]  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    # The handler module and this worktree's asyncloop, for the children too.
    paths = [str(tmp_path), *sys.path]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


async def _not_visible(sqs: Any, queue_url: str) -> tuple[int, int]:
    attributes = (
        await sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
async def test_two_processes_drain_the_queue_into_one_summary(
    fauxqs: tuple[str, Any], tmp_path: Path, event_loop: str
) -> None:
    # GIVEN 200 messages and a handler that records each message it handled, and the class
    # of the event loop it ran on
    endpoint, sqs = fauxqs
    done_log = tmp_path / "done.log"
    (tmp_path / "record_handler.py").write_text(
        textwrap.dedent(
            f"""
            import asyncio
            import os

            async def handle(message):
                loop = type(asyncio.get_running_loop()).__module__
                with open({str(done_log)!r}, "a") as f:
                    f.write(f"{{os.getpid()}} {{message.message_id}} {{loop}}\\n")
            """
        )
    )
    queue_url = (await sqs.create_queue(QueueName=unique_name("procs")))["QueueUrl"]
    sent = await send_messages(sqs, queue_url, 200)

    # WHEN two processes drain it
    argv = _argv(
        endpoint, queue_url, "record_handler:handle",
        "--until-empty", "--wait-time-seconds", "0", "--max-in-flight", "16",
        "--event-loop", event_loop,
    )  # fmt: skip
    result = await anyio.run_process(argv, check=False, env=_env(tmp_path))
    stdout, stderr = result.stdout.decode(), result.stderr.decode()

    # THEN exit 0; stdout is one JSON object, the merged summary of both processes; every
    # message was handled once or more, every success deleted, and nothing is left
    assert result.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["processes"] == 2
    assert summary["exit_codes"] == [0, 0]
    handled = [line.split() for line in done_log.read_text().splitlines()]
    assert {message_id for _, message_id, _ in handled} == set(sent)
    # every handler ran on the event loop asked for
    assert {loop.split(".")[0] for _, _, loop in handled} == {event_loop}
    assert summary["succeeded"] == len(handled) >= 200
    assert summary["deleted"] == summary["succeeded"]
    assert summary["received"] >= 200
    assert summary["latency_ms"]["p50"] is not None
    assert sum(summary["api_calls"].values()) > 0
    # each child's lines reach the parent's stderr, prefixed
    assert "[p0] " in stderr
    assert "[p1] " in stderr
    assert await count_messages(sqs, queue_url) == 0


# Blocks every message until the gate file exists, so the test decides when work finishes.
_GATED = """
import asyncio
import os
import sys

async def handle(message):
    print("STARTED", file=sys.stderr, flush=True)
    while not os.path.exists({gate!r}):
        await asyncio.sleep(0.02)
    with open({done!r}, "a") as f:
        f.write(message.message_id + "\\n")
"""


async def test_sigterm_drains_both_processes_and_loses_nothing(
    fauxqs: tuple[str, Any], tmp_path: Path
) -> None:
    # GIVEN both children holding messages in a handler that waits on a gate
    endpoint, sqs = fauxqs
    gate, done_log = tmp_path / "gate", tmp_path / "done.log"
    (tmp_path / "gated_handler.py").write_text(_GATED.format(gate=str(gate), done=str(done_log)))
    queue_url = (
        await sqs.create_queue(
            QueueName=unique_name("procs"), Attributes={"VisibilityTimeout": "120"}
        )
    )["QueueUrl"]
    await send_messages(sqs, queue_url, 60)
    argv = _argv(
        endpoint, queue_url, "gated_handler:handle",
        "--max-in-flight", "8", "--receivers", "2", "--wait-time-seconds", "1",
    )  # fmt: skip
    async with await anyio.open_process(
        argv, env=_env(tmp_path), stdin=subprocess.DEVNULL
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        stderr = b""
        with anyio.fail_after(60):
            async for chunk in process.stderr:
                stderr += chunk
                if b"[p0] STARTED" in stderr and b"[p1] STARTED" in stderr:
                    break
        # WHEN the supervisor gets SIGTERM, and then the held work may finish
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(60):
            async for chunk in process.stderr:
                stderr += chunk
                if stderr.count(b"again to abort") >= 3:  # the parent and both children
                    break
        gate.touch()
        with anyio.fail_after(60):
            async for chunk in process.stderr:
                stderr += chunk
            stdout = b"".join([chunk async for chunk in process.stdout]).decode()
            await process.wait()
    text = stderr.decode()

    # THEN both children drained and exit 0; what was finished is deleted, the rest is
    # visible again at once (released), none lost
    assert process.returncode == 0, text
    summary = json.loads(stdout)
    assert summary["exit_codes"] == [0, 0]
    finished = done_log.read_text().split()
    assert len(finished) >= 2  # each child had work in flight when the signal came
    assert summary["deleted"] == summary["succeeded"] == len(finished)
    visible, not_visible = await _not_visible(sqs, queue_url)
    assert not_visible == 0
    assert visible == 60 - len(set(finished))
