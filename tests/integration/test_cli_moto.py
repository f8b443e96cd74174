"""`asyncloop run` as a user runs it: a subprocess talking to moto's server over HTTP.

Every test runs on both transports (the conftest's `transport` fixture), given as
``--transport`` or, in the environment test, as ``ASYNCLOOP_TRANSPORT``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from _moto import AdminClients, CountMessages, MakeFunction, MakeQueue, SendMessages
from _refusing import refusing_server

from asyncloop._config import Transport

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

REQUIRED_KEYS = {
    "received",
    "succeeded",
    "failed",
    "deleted",
    "released",
    "duration_s",
    "throughput_msgs_s",
    "latency_ms",
}


def _cli(*args: str, transport: Transport | None = None) -> list[str]:
    """``python -m asyncloop *args``, with ``--transport`` when one is given."""
    tail = ["--transport", transport] if transport is not None else []
    return [sys.executable, "-m", "asyncloop", *args, *tail]


def _cli_run(queue_url: str, endpoint_url: str, *args: str, transport: Transport) -> list[str]:
    """``asyncloop run`` on `queue_url` through `endpoint_url` (us-east-1), on `transport`."""
    where = ["--queue-url", queue_url, "--endpoint-url", endpoint_url, "--region", "us-east-1"]
    return _cli("run", *where, *args, transport=transport)


async def _run(
    argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = await anyio.run_process(argv, check=False, env=env)
    return subprocess.CompletedProcess(
        argv, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


async def test_run_until_empty_prints_json_last_and_exits_0(
    moto_endpoint: str,
    transport: Transport,
    make_queue: MakeQueue,
    make_function: MakeFunction,
    send_messages: SendMessages,
    count_messages: CountMessages,
) -> None:
    # GIVEN a queue with 50 messages and a function
    queue = await make_queue()
    function = await make_function()
    await send_messages(queue.url, 50)

    # WHEN the CLI drains it
    result = await _run(
        _cli_run(
            queue.url,
            moto_endpoint,
            "--function-name",
            function,
            "--wait-time-seconds",
            "0",
            "--until-empty",
            "--json",
            transport=transport,
        )
    )

    # THEN exit 0, the last stdout line is the JSON summary, and the queue is empty
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary.keys() >= REQUIRED_KEYS
    assert {"p50", "p95", "p99"} <= summary["latency_ms"].keys()
    # (at least once: moto, like SQS, may deliver a message twice)
    assert summary["received"] == summary["succeeded"] == summary["deleted"] >= 50
    assert summary["api_calls"]["Invoke"] == summary["succeeded"]
    assert await count_messages(queue.url) == 0
    # logs went to stderr, and never a message body; the run was on the transport asked for
    assert "consumer starting" in result.stderr
    assert "message-1" not in result.stderr
    assert f"transport={transport} " in result.stderr


async def test_run_reads_its_flags_from_the_environment(
    moto_endpoint: str,
    transport: Transport,
    make_queue: MakeQueue,
    make_function: MakeFunction,
    send_messages: SendMessages,
) -> None:
    queue = await make_queue()
    function = await make_function()
    await send_messages(queue.url, 5)
    env = dict(os.environ)
    env.update(
        ASYNCLOOP_QUEUE_URL=queue.url,
        ASYNCLOOP_FUNCTION_NAME=function,
        ASYNCLOOP_ENDPOINT_URL=moto_endpoint,
        ASYNCLOOP_REGION="us-east-1",
        ASYNCLOOP_WAIT_TIME_SECONDS="0",
        ASYNCLOOP_UNTIL_EMPTY="1",
        ASYNCLOOP_JSON="true",
        ASYNCLOOP_TRANSPORT=transport,
    )
    result = await _run(_cli("run"), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["deleted"] >= 5
    assert f"transport={transport} " in result.stderr


async def test_missing_queue_exits_1_with_a_clear_message(
    moto_endpoint: str, transport: Transport, make_function: MakeFunction
) -> None:
    function = await make_function()
    missing = f"{moto_endpoint}/123456789012/no-such-queue"
    result = await _run(
        _cli_run(
            missing,
            moto_endpoint,
            "--function-name",
            function,
            transport=transport,
        )
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("asyncloop: error:")
    assert "no-such-queue" in last
    assert "Traceback" not in result.stderr


async def test_missing_function_exits_1_even_though_moto_accepts_its_invokes(
    moto_endpoint: str, transport: Transport, make_queue: MakeQueue, send_messages: SendMessages
) -> None:
    queue = await make_queue()
    await send_messages(queue.url, 3)
    result = await _run(
        _cli_run(
            queue.url,
            moto_endpoint,
            "--function-name",
            "no-such-function",
            "--until-empty",
            transport=transport,
        )
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("asyncloop: error:")
    assert "no-such-function" in last
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("credentials", ["refused", "missing"])
async def test_bad_credentials_exit_1_with_one_line(
    transport: Transport,
    credentials: str,
    aws_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN an endpoint that refuses every access key, as SQS and Lambda do, or no
    # credentials anywhere (no variables, no files, no instance metadata)
    if credentials == "missing":
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
        ):
            monkeypatch.delenv(name)
    runner, url = await refusing_server()
    try:
        # WHEN the CLI starts on it
        result = await _run(
            _cli_run(
                f"{url}/123456789012/jobs",
                url,
                "--function-name",
                "worker",
                transport=transport,
            )
        )
    finally:
        await runner.cleanup()
    # THEN exit 1 with one line on stderr saying why: no traceback, no log line around it
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    expected = {"refused": "InvalidClientTokenId", "missing": "Unable to locate credentials"}
    assert lines[0].startswith("asyncloop: error: GetQueueAttributes on ")
    assert expected[credentials] in lines[0]


async def test_sigterm_mid_run_drains_and_loses_nothing(
    moto_endpoint: str,
    transport: Transport,
    make_queue: MakeQueue,
    send_messages: SendMessages,
    aws_admin: AdminClients,
    tmp_path: Path,
) -> None:
    # GIVEN a slow in-process handler that records what it finished
    module = tmp_path / "slow_handler.py"
    done_log = tmp_path / "done.log"
    module.write_text(
        textwrap.dedent(
            f"""
            import asyncio
            import sys

            async def handle(message):
                await asyncio.sleep(0.1)
                with open({str(done_log)!r}, "a") as f:
                    f.write(message.message_id + "\\n")
                print("DONE", message.message_id, file=sys.stderr, flush=True)
            """
        )
    )
    queue = await make_queue(visibility_timeout=120)
    await send_messages(queue.url, 60)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    argv = _cli_run(
        queue.url,
        moto_endpoint,
        "--handler",
        "slow_handler:handle",
        "--max-in-flight",
        "8",
        "--receivers",
        "2",
        "--wait-time-seconds",
        "1",
        "--json",
        transport=transport,
    )
    async with await anyio.open_process(argv, env=env) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        stderr_chunks: list[bytes] = []
        # WHEN some messages are done and others in flight, SIGTERM arrives
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                stderr_chunks.append(chunk)
                if b"".join(stderr_chunks).count(b"DONE ") >= 10:
                    break
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                stderr_chunks.append(chunk)
            stdout = b"".join([chunk async for chunk in process.stdout]).decode()
            await process.wait()
    stderr = b"".join(stderr_chunks).decode()

    # THEN it drained and exited 0; every message was either deleted or is visible again
    assert process.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    finished = done_log.read_text().split()  # one line per success, duplicates included
    assert summary["deleted"] == len(finished)
    attributes = (
        await aws_admin.sqs.get_queue_attributes(
            QueueUrl=queue.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 0
    assert int(attributes["ApproximateNumberOfMessages"]) == 60 - len(set(finished))


async def test_an_empty_queue_prints_no_messages_and_json_is_all_of_stdout(
    moto_endpoint: str, transport: Transport, make_queue: MakeQueue, make_function: MakeFunction
) -> None:
    # GIVEN an empty queue
    queue = await make_queue()
    function = await make_function()
    # WHEN the CLI runs until empty with --json
    result = await _run(
        _cli_run(
            queue.url,
            moto_endpoint,
            "--function-name",
            function,
            "--wait-time-seconds",
            "0",
            "--until-empty",
            "--json",
            transport=transport,
        )
    )
    # THEN exit 0; stdout is exactly one JSON object; the summary on stderr says "no messages"
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["received"] == 0
    assert "no messages" in result.stderr
    assert "None/None/None" not in result.stderr


_STUCK_ASYNC = """
import asyncio
import sys

async def handle(message):
    print("STARTED", file=sys.stderr, flush=True)
    await asyncio.Event().wait()
"""

# A sync handler blocked in its thread: the abort abandons the thread, and the process must
# exit without waiting for it (longer than the test's 30 s bound on the exit).
_STUCK_SYNC = """
import sys
import time

def handle(message):
    print("STARTED", file=sys.stderr, flush=True)
    time.sleep(90)
"""


@pytest.mark.parametrize("handler_source", [_STUCK_ASYNC, _STUCK_SYNC], ids=["async", "sync"])
async def test_a_second_signal_aborts_with_exit_1_and_loses_nothing(
    moto_endpoint: str,
    transport: Transport,
    make_queue: MakeQueue,
    send_messages: SendMessages,
    aws_admin: AdminClients,
    tmp_path: Path,
    handler_source: str,
) -> None:
    # GIVEN a handler that never finishes, holding messages
    module = tmp_path / "stuck_handler.py"
    module.write_text(handler_source)
    queue = await make_queue(visibility_timeout=120)
    await send_messages(queue.url, 4)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    argv = _cli_run(
        queue.url,
        moto_endpoint,
        "--handler",
        "stuck_handler:handle",
        "--max-in-flight",
        "4",
        "--receivers",
        "1",
        "--wait-time-seconds",
        "1",
        "--json",
        transport=transport,
    )
    async with await anyio.open_process(argv, env=env) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        stderr = b""
        # WHEN the first signal arrives while handlers are stuck, then a second one
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                stderr += chunk
                if b"STARTED" in stderr:
                    break
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                stderr += chunk
                if b"again to abort" in stderr:
                    break
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                stderr += chunk
            stdout = b"".join([chunk async for chunk in process.stdout]).decode()
            await process.wait()

    # THEN exit 1 (as the README says), the statistics still printed, and every message that
    # was held is visible again: none deleted, none lost
    assert process.returncode == 1, stderr.decode()
    assert "aborted by a second signal" in stderr.decode()
    summary = json.loads(stdout)
    assert summary["deleted"] == 0
    assert summary["released"] == summary["received"] >= 1
    attributes = (
        await aws_admin.sqs.get_queue_attributes(
            QueueUrl=queue.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 0
    assert int(attributes["ApproximateNumberOfMessages"]) == 4
