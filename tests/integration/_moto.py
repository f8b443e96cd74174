"""Helpers that build AWS resources on an emulator with plain aioboto3 clients (not fixtures).

They use the raw aiobotocore clients on purpose: the fixtures must not depend on the code
under test. The server itself is `asyncloop.testing._moto.MotoServer`; `Emulator` offers the
same factories on moto or on fauxqs with a `LambdaServer`, for tests that run on both.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asyncloop import AwsConfig

if TYPE_CHECKING:
    from asyncloop._config import Transport
    from asyncloop.testing import LambdaServer

__all__ = (
    "ACCOUNT_ID",
    "HANDLER_SOURCE",
    "REGION",
    "AdminClients",
    "CountMessages",
    "Emulator",
    "MakeFunction",
    "MakeQueue",
    "SendMessages",
    "TestQueue",
    "count_messages",
    "create_function",
    "create_queue",
    "handler_zip",
    "send_messages",
    "unique_name",
)

# moto's default account
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

HANDLER_SOURCE = """\
def handler(event, context):
    return event
"""

_ASSUME_LAMBDA = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def unique_name(prefix: str) -> str:
    """`prefix` plus a random suffix, valid as a queue, function or role name."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class TestQueue:
    """A queue and its dead-letter queue."""

    __test__ = False  # not a pytest test class

    url: str
    arn: str
    dlq_url: str
    dlq_arn: str
    max_receive_count: int
    visibility_timeout: int


@dataclass(frozen=True, slots=True)
class AdminClients:
    """Plain aiobotocore clients for setting up and inspecting state (not the code under test)."""

    sqs: Any
    lambda_: Any
    iam: Any


# What the factory fixtures return
MakeQueue = Callable[..., Awaitable[TestQueue]]
MakeFunction = Callable[..., Awaitable[str]]
SendMessages = Callable[..., Awaitable[list[str]]]
CountMessages = Callable[[str], Awaitable[int]]


async def _queue_arn(sqs: Any, url: str) -> str:
    response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    arn: str = response["Attributes"]["QueueArn"]
    return arn


async def create_queue(
    sqs: Any,
    name: str | None = None,
    *,
    visibility_timeout: int = 30,
    max_receive_count: int = 3,
) -> TestQueue:
    """A standard queue with a DLQ and a RedrivePolicy of `max_receive_count`."""
    name = name or unique_name("q")
    dlq_url = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
    dlq_arn = await _queue_arn(sqs, dlq_url)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    url = (
        await sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(visibility_timeout),
                "RedrivePolicy": json.dumps(redrive),
            },
        )
    )["QueueUrl"]
    return TestQueue(
        url=url,
        arn=await _queue_arn(sqs, url),
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        max_receive_count=max_receive_count,
        visibility_timeout=visibility_timeout,
    )


def handler_zip(source: str = HANDLER_SOURCE) -> bytes:
    """A deployment package with `source` as ``handler.py`` (handler ``handler.handler``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("handler.py", source)
    return buffer.getvalue()


async def create_function(iam: Any, lambda_: Any, name: str | None = None) -> str:
    """A python3.11 function (and its IAM role, which moto requires first); returns its name."""
    name = name or unique_name("fn")
    role = await iam.create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument=_ASSUME_LAMBDA, Path="/"
    )
    await lambda_.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": handler_zip()},
        Timeout=3,
        MemorySize=128,
    )
    return name


async def send_messages(
    sqs: Any, queue_url: str, count: int, *, body: str = "message-{i}"
) -> list[str]:
    """Send `count` messages (SendMessageBatch, 10 at a time); returns their MessageIds.

    `body` is formatted with ``i``, the message's index.
    """
    ids: list[str] = []
    for start in range(0, count, 10):
        entries = [
            {"Id": f"m{i}", "MessageBody": body.format(i=i)}
            for i in range(start, min(start + 10, count))
        ]
        response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise AssertionError(f"SendMessageBatch failed: {response['Failed']}")
        ids.extend(entry["MessageId"] for entry in response["Successful"])
    return ids


async def count_messages(sqs: Any, queue_url: str) -> int:
    """Messages left in the queue: visible plus in flight (not delayed)."""
    response = await sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attributes = response["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


@dataclass(frozen=True, slots=True)
class Emulator:
    """Where an end-to-end test runs: moto's server (SQS and Lambda, one endpoint), or fauxqs
    for SQS and a `LambdaServer` for Lambda (each reached through botocore's per-service
    ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which the fixture sets)."""

    name: str
    endpoint_url: str | None
    """The one endpoint for `AwsConfig` (moto), or None (the per-service variables)."""
    sqs: Any
    """A plain aiobotocore SQS client on the emulator, for setup and inspection."""
    make_queue: MakeQueue
    make_function: MakeFunction
    lambda_server: LambdaServer | None = None
    """fauxqs's Lambda endpoint, which records every invocation; None on moto."""

    @classmethod
    def on_moto(cls, endpoint_url: str, admin: AdminClients) -> Emulator:
        async def make_queue(name: str | None = None, **options: int) -> TestQueue:
            return await create_queue(admin.sqs, name, **options)

        async def make_function(name: str | None = None) -> str:
            return await create_function(admin.iam, admin.lambda_, name)

        return cls("moto", endpoint_url, admin.sqs, make_queue, make_function)

    @classmethod
    def on_fauxqs(cls, sqs: Any, server: LambdaServer) -> Emulator:
        async def make_queue(name: str | None = None, **options: int) -> TestQueue:
            return await create_queue(sqs, name, **options)

        async def make_function(name: str | None = None) -> str:
            name = name or unique_name("fn")
            server.add_function(name)
            return name

        return cls("fauxqs", None, sqs, make_queue, make_function, server)

    def aws(self, transport: Transport, **options: Any) -> AwsConfig:
        """The `AwsConfig` a consumer on this emulator uses, on `transport`."""
        return AwsConfig(
            region=REGION, endpoint_url=self.endpoint_url, transport=transport, **options
        )

    async def send_messages(
        self, queue_url: str, count: int, *, body: str = "message-{i}"
    ) -> list[str]:
        return await send_messages(self.sqs, queue_url, count, body=body)

    async def count_messages(self, queue_url: str) -> int:
        return await count_messages(self.sqs, queue_url)

    def invoked_bodies(self) -> list[str] | None:
        """The SQS bodies of every invocation the `LambdaServer` ran, or None on moto."""
        if self.lambda_server is None or self.lambda_server.recorded is None:
            return None
        return [i.decoded()["Records"][0]["sqs"]["Body"] for i in self.lambda_server.recorded]
