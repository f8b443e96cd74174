"""`asyncloop redrive` as a user runs it, against moto's server and fauxqs over real HTTP.

Neither emulator implements StartMessageMoveTask (moto 5 answers a bare 500, fauxqs 1.9.2
``InvalidAction``), so ``auto`` falls back on the copy there; `FaultProxy` makes the sends fail
to show that the copy never deletes a message it did not send.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import anyio
import pytest
import pytest_asyncio
from _moto import REGION, AdminClients, MakeQueue

from asyncloop.testing import FaultProxy, Faults, FauxqsServer, node_available

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ATTRIBUTES = {
    "color": {"DataType": "String", "StringValue": "blue"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
}


async def redrive_cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "asyncloop", "redrive", *args]
    result = await anyio.run_process(argv, check=False)
    return subprocess.CompletedProcess(
        argv, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


async def fill(sqs: Any, url: str, count: int, *, fifo: bool = False) -> list[str]:
    bodies = [f"dead-{i:03d}" for i in range(count)]
    for start in range(0, count, 10):
        entries = []
        for i in range(start, min(start + 10, count)):
            entry: dict[str, Any] = {
                "Id": str(i),
                "MessageBody": bodies[i],
                "MessageAttributes": ATTRIBUTES,
            }
            if fifo:
                entry["MessageGroupId"] = f"g{i % 3}"
                entry["MessageDeduplicationId"] = f"d{i}"
            entries.append(entry)
        response = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed"), response
    return bodies


async def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Take every message of `url`: receive and delete (a FIFO queue would not hand out the
    rest of a group while some of it is in flight)."""
    found: list[dict[str, Any]] = []
    while True:
        response = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return found
        found.extend(messages)
        await sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


async def settled(sqs: Any, url: str) -> None:
    """Wait until no message of `url` is hidden (a receive the proxy broke after it reached
    moto hid some for the copy's visibility timeout)."""
    while True:
        response = await sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
        if response["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0":
            return
        await anyio.sleep(0.2)


def bodies_of(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(m["Body"] for m in messages)


# -- moto -----------------------------------------------------------------------------------


async def test_redrive_moves_the_dlq_back_to_its_source_with_attributes(
    moto_endpoint: str, make_queue: MakeQueue, aws_admin: AdminClients
) -> None:
    # GIVEN 25 messages with attributes in the DLQ of a queue
    queue = await make_queue()
    bodies = await fill(aws_admin.sqs, queue.dlq_url, 25)

    # WHEN redriven with the defaults (the move task, else the copy to the one source)
    result = await redrive_cli(
        "--dlq-url", queue.dlq_url, "--endpoint-url", moto_endpoint, "--json"
    )

    # THEN exit 0, the copy was used and moved all 25,
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["method"], summary["moved"], summary["failed"]) == ("copy", 25, 0)
    assert summary["destination_url"] == queue.url
    assert "StartMessageMoveTask is not supported" in result.stderr
    # the source holds them with their attributes, and the DLQ is empty
    moved = await drain(aws_admin.sqs, queue.url)
    assert bodies_of(moved) == bodies
    assert moved[0]["MessageAttributes"]["color"]["StringValue"] == "blue"
    assert moved[0]["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01"
    assert await drain(aws_admin.sqs, queue.dlq_url) == []


async def test_status_and_cancel_on_an_endpoint_without_move_tasks(
    moto_endpoint: str, make_queue: MakeQueue
) -> None:
    # GIVEN a DLQ, named by its ARN
    queue = await make_queue()
    common = ("--source-arn", queue.dlq_arn, "--endpoint-url", moto_endpoint)
    # WHEN its move tasks are listed, and the running one cancelled
    status = await redrive_cli(*common, "--status")
    cancel = await redrive_cli(*common, "--cancel")
    # THEN the status says the endpoint has none (exit 0), and cancel fails with one line
    assert status.returncode == 0, status.stderr
    assert "does not support message move tasks" in status.stdout
    assert cancel.returncode == 1
    assert "a copy redrive runs in the foreground" in cancel.stderr


async def test_fifo_redrive_keeps_groups(moto_endpoint: str, aws_admin: AdminClients) -> None:
    # GIVEN a FIFO DLQ with 12 messages in 3 groups, and a FIFO destination
    sqs = aws_admin.sqs
    fifo = {"FifoQueue": "true"}
    dlq = (await sqs.create_queue(QueueName="jobs-dlq.fifo", Attributes=fifo))["QueueUrl"]
    destination = (await sqs.create_queue(QueueName="jobs.fifo", Attributes=fifo))["QueueUrl"]
    bodies = await fill(sqs, dlq, 12, fifo=True)
    # WHEN copied to it
    result = await redrive_cli(
        "--dlq-url", dlq, "--destination-url", destination, "--method", "copy",
        "--endpoint-url", moto_endpoint,
    )  # fmt: skip
    # THEN all 12 arrived, each in its group
    assert result.returncode == 0, result.stderr
    moved = await drain(sqs, destination)
    assert bodies_of(moved) == bodies
    groups = {m["Body"]: m["Attributes"]["MessageGroupId"] for m in moved}
    assert groups == {body: f"g{int(body[-3:]) % 3}" for body in bodies}


async def test_sends_that_always_fail_leave_every_message_in_the_dlq(
    moto_endpoint: str, make_queue: MakeQueue, aws_admin: AdminClients
) -> None:
    # GIVEN 15 messages in a DLQ, and a proxy that throttles every SendMessageBatch
    queue = await make_queue()
    bodies = await fill(aws_admin.sqs, queue.dlq_url, 15)
    faults = Faults(throttle=1.0, operations={"SendMessageBatch"})
    async with FaultProxy(moto_endpoint, faults=faults, seed=1) as proxy:
        # WHEN redriven through it
        result = await redrive_cli(
            "--dlq-url", queue.dlq_url, "--method", "copy", "--endpoint-url", proxy.endpoint_url,
            "--json",
        )  # fmt: skip
        injected = dict(proxy.injected)
    # THEN exit 1 with the error, nothing moved, and all 15 are still in the DLQ
    assert injected.get("throttle", 0) > 0
    assert result.returncode == 1
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["moved"] == 0
    assert summary["failed"] == 10  # the first receive's batch; the rest was never received
    assert "SendMessageBatch" in result.stderr
    assert bodies_of(await drain(aws_admin.sqs, queue.dlq_url)) == bodies
    assert await drain(aws_admin.sqs, queue.url) == []


async def test_random_faults_lose_nothing(
    moto_endpoint: str, make_queue: MakeQueue, aws_admin: AdminClients
) -> None:
    # GIVEN 40 messages in a DLQ, and 30% faults on every SQS call, half of them after the
    # call reached moto (a send or delete that happened but looked failed)
    queue = await make_queue()
    bodies = await fill(aws_admin.sqs, queue.dlq_url, 40)
    faults = Faults(internal_error=0.15, reset=0.15, after_forward=0.5)
    async with FaultProxy(moto_endpoint, faults=faults, seed=11) as proxy:
        # WHEN redriven through it
        result = await redrive_cli(
            "--dlq-url", queue.dlq_url, "--destination-url", queue.url, "--method", "copy",
            "--endpoint-url", proxy.endpoint_url, "--visibility-timeout", "1",
        )  # fmt: skip
        injected = sum(proxy.injected.values())
    await settled(aws_admin.sqs, queue.dlq_url)
    # THEN faults happened, and every message is in the DLQ or the destination (duplicates
    # allowed: at least once), whatever the exit code
    assert injected > 0
    assert result.returncode in (0, 1), result.stderr
    everywhere = bodies_of(await drain(aws_admin.sqs, queue.dlq_url))
    everywhere += bodies_of(await drain(aws_admin.sqs, queue.url))
    assert set(everywhere) == set(bodies)


# -- fauxqs ---------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def fauxqs(aws_credentials: None) -> AsyncIterator[tuple[str, Any]]:
    if not node_available():
        pytest.skip("fauxqs needs Node.js >= 20 and npm on PATH")
    async with FauxqsServer() as server:
        session = aioboto3.Session(region_name=REGION)
        async with session.client("sqs", endpoint_url=server.endpoint_url) as sqs:
            yield server.endpoint_url, sqs


@pytest.mark.parametrize("fifo", [False, True])
async def test_fauxqs_falls_back_on_the_copy(fauxqs: tuple[str, Any], fifo: bool) -> None:
    # GIVEN fauxqs, a DLQ of 23 messages and a destination of the same kind
    endpoint, sqs = fauxqs
    suffix, attributes = (".fifo", {"FifoQueue": "true"}) if fifo else ("", {})
    dlq = (await sqs.create_queue(QueueName=f"dlq{suffix}", Attributes=attributes))["QueueUrl"]
    dest = (await sqs.create_queue(QueueName=f"src{suffix}", Attributes=attributes))["QueueUrl"]
    bodies = await fill(sqs, dlq, 23, fifo=fifo)
    # WHEN redriven (auto) to the destination
    result = await redrive_cli(
        "--dlq-url", dlq, "--destination-url", dest, "--endpoint-url", endpoint, "--json"
    )
    # THEN the move task was refused (InvalidAction), the copy moved all 23 with attributes
    assert result.returncode == 0, result.stderr
    assert "InvalidAction" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["moved"] == 23
    moved = await drain(sqs, dest)
    assert bodies_of(moved) == bodies
    assert {m["MessageAttributes"]["color"]["StringValue"] for m in moved} == {"blue"}
    assert await drain(sqs, dlq) == []


async def test_fauxqs_without_a_destination_asks_for_one(fauxqs: tuple[str, Any]) -> None:
    # GIVEN fauxqs, which cannot list a DLQ's source queues
    endpoint, sqs = fauxqs
    dlq = (await sqs.create_queue(QueueName="lonely-dlq"))["QueueUrl"]
    await fill(sqs, dlq, 3)
    # WHEN redriven without --destination-url
    result = await redrive_cli("--dlq-url", dlq, "--endpoint-url", endpoint)
    # THEN it is a usage error that says what to give, and the messages stay
    assert result.returncode == 2
    assert "give --destination-url" in result.stderr
    assert len(await drain(sqs, dlq)) == 3
