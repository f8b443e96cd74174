"""The lean transport against the sdk path: the same assertions on both, over real HTTP.

`path` gives a queue factory and an invoker on the sdk path (`SqsQueue`, `AioLambdaInvoker`)
or the lean path (`LeanTransport`), as the conftest's `transport` fixture says, built from the
same aiobotocore clients; SQS is moto's server or fauxqs, Lambda is `LambdaServer`.
Everything listens on 127.0.0.1. The consumer's runs on both transports are in
test_consumer_moto.py and test_cli_moto.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
import anyio
import pytest
import pytest_asyncio
from _refusing import refusing_server
from aiobotocore.config import AioConfig
from aiohttp import web
from multidict import CIMultiDict

from asyncloop import (
    AioLambdaInvoker,
    CredentialsError,
    FunctionError,
    FunctionNotFound,
    QueueError,
    QueueNotFound,
    SqsQueue,
    TransportError,
)
from asyncloop._config import Transport
from asyncloop._lean import LeanTransport
from asyncloop.testing import FaultProxy, Faults, LambdaServer
from asyncloop.testing._loopback import serve_on_loopback
from asyncloop.testing._moto import MotoServer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

REGION = "us-east-1"
FUNCTION = "worker"


@pytest.fixture(params=["moto", "fauxqs"])
def emulator(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sqs_url(request: pytest.FixtureRequest, emulator: str, aws_credentials: None) -> str:
    if emulator == "moto":
        moto: MotoServer = request.getfixturevalue("moto_instance")
        moto.reset()
        return moto.endpoint_url
    url: str = request.getfixturevalue("fauxqs_url")
    return url


def _botocore_config(max_attempts: int) -> AioConfig:
    # As AwsClients builds it
    return AioConfig(
        max_pool_connections=64,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=70,
    )


@dataclass
class Path:
    name: str
    emulator: str
    admin: Any  # an aiobotocore SQS client for setup
    queue: Callable[[str], Any]
    invoker: Any
    lambda_server: LambdaServer


async def _open_path(
    stack: AsyncExitStack,
    name: Transport,
    sqs_url: str,
    lambda_url: str,
    *,
    max_attempts: int = 3,
) -> tuple[Callable[[str], Any], Any]:
    session = aioboto3.Session(region_name=REGION)
    config = _botocore_config(max_attempts)
    sqs = await stack.enter_async_context(
        session.client("sqs", endpoint_url=sqs_url, config=config)
    )
    lambda_ = await stack.enter_async_context(
        session.client("lambda", endpoint_url=lambda_url, config=config)
    )
    if name == "sdk":
        return (lambda url: SqsQueue(sqs, url)), AioLambdaInvoker(lambda_)
    lean = await stack.enter_async_context(LeanTransport(sqs_client=sqs, lambda_client=lambda_))
    return lean.queue, lean.invoker()


@pytest_asyncio.fixture
async def path(transport: Transport, emulator: str, sqs_url: str) -> AsyncIterator[Path]:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            LambdaServer(latency=0.0, functions=[FUNCTION], strict_functions=True)
        )
        session = aioboto3.Session(region_name=REGION)
        admin = await stack.enter_async_context(session.client("sqs", endpoint_url=sqs_url))
        queue, invoker = await _open_path(stack, transport, sqs_url, server.endpoint_url)
        yield Path(transport, emulator, admin, queue, invoker, server)


_counter = iter(range(1_000_000))


async def _make_queue(admin: Any, *, fifo: bool = False, visibility_timeout: int = 30) -> str:
    name = f"lean-{next(_counter)}-{id(admin) % 10_000}"
    attributes = {"VisibilityTimeout": str(visibility_timeout)}
    if fifo:
        name += ".fifo"
        attributes["FifoQueue"] = "true"
    response = await admin.create_queue(QueueName=name, Attributes=attributes)
    return str(response["QueueUrl"])


async def _receive_all(queue: Any, count: int) -> list[Any]:
    got: list[Any] = []
    with anyio.fail_after(30):
        while len(got) < count:
            got += await queue.receive(max_messages=10, wait_time_seconds=1)
    return got


# -- SQS ------------------------------------------------------------------------------------


async def test_receive_change_visibility_and_delete_round_trip(path: Path) -> None:
    # GIVEN a queue with 15 messages
    url = await _make_queue(path.admin)
    for i in range(15):
        await path.admin.send_message(QueueUrl=url, MessageBody=f"m-{i}")
    queue = path.queue(url)

    # WHEN all are received, their visibility extended, and deleted in batches of 10
    got = await _receive_all(queue, 15)
    failures = []
    for start in range(0, len(got), 10):
        chunk = got[start : start + 10]
        failures += await queue.change_visibility_batch(
            [(f"e{i}", m.receipt_handle, 60) for i, m in enumerate(chunk)]
        )
        failures += await queue.delete_batch(
            [(f"e{i}", m.receipt_handle) for i, m in enumerate(chunk)]
        )

    # THEN every body came once, no entry failed, and the queue is empty
    assert sorted(m.body for m in got) == sorted(f"m-{i}" for i in range(15))
    assert all(m.md5_of_body == hashlib.md5(m.body.encode()).hexdigest() for m in got)
    assert failures == []
    assert await queue.receive(max_messages=10, wait_time_seconds=0) == []


async def test_a_bad_receipt_handle_is_an_entry_failure(path: Path) -> None:
    # GIVEN a queue
    queue = path.queue(await _make_queue(path.admin))
    # WHEN a visibility change names a receipt handle SQS never gave
    failures = await queue.change_visibility_batch([("a", "not-a-receipt-handle", 10)])
    # THEN that entry is reported failed, not the call
    assert [f.id for f in failures] == ["a"]


async def test_batch_rules_are_enforced_before_sending(path: Path) -> None:
    queue = path.queue(await _make_queue(path.admin))
    # WHEN a batch has 11 entries or a repeated Id, or none
    # THEN it is refused locally, as SQS would refuse it
    with pytest.raises(ValueError, match="at most 10"):
        await queue.delete_batch([(f"e{i}", "h") for i in range(11)])
    with pytest.raises(ValueError, match="distinct"):
        await queue.change_visibility_batch([("a", "h", 0), ("a", "h", 0)])
    with pytest.raises(ValueError, match="none"):
        await queue.delete_batch([])


async def test_a_missing_queue_is_queue_not_found(path: Path) -> None:
    # GIVEN the URL of a queue that does not exist
    url = await _make_queue(path.admin)
    await path.admin.delete_queue(QueueUrl=url)
    missing = url.rsplit("/", 1)[0] + "/never-created-queue"
    # WHEN it is received from
    with pytest.raises(QueueNotFound) as caught:
        await path.queue(missing).receive(max_messages=1, wait_time_seconds=0)
    # THEN the error names the queue and is not retryable
    assert caught.value.queue_url == missing
    assert not caught.value.retryable


async def test_fifo_system_attributes(path: Path) -> None:
    # GIVEN a FIFO message with a group and a deduplication id
    url = await _make_queue(path.admin, fifo=True)
    await path.admin.send_message(
        QueueUrl=url, MessageBody="f", MessageGroupId="g-1", MessageDeduplicationId="d-1"
    )
    # WHEN it is received
    [message] = await _receive_all(path.queue(url), 1)
    # THEN the FIFO attributes are there, as strings
    assert message.group_id == "g-1"
    assert message.attributes["MessageDeduplicationId"] == "d-1"
    assert message.attributes["SequenceNumber"].isdigit()
    assert message.receive_count == 1


def _every_unicode_range(*, supplementary: bool = True) -> str:
    # SQS allows #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF
    ranges = [(0x9, 0x9), (0xA, 0xA), (0xD, 0xD), (0x20, 0xD7FF), (0xE000, 0xFFFD)]
    if supplementary:
        ranges.append((0x10000, 0x10FFFF))
    chars = []
    for low, high in ranges:
        step = max(1, (high - low) // 200)
        chars += [chr(c) for c in range(low, high + 1, step)]
        chars.append(chr(high))
    return "".join(chars)


@pytest.mark.parametrize("kind", ["unicode", "256KiB"])
async def test_bodies_come_back_unchanged(path: Path, kind: str) -> None:
    # GIVEN a message with every allowed Unicode range, or of SQS's maximum size
    # (fauxqs 1.9.2 refuses characters above U+FFFF, which SQS allows: moto covers them)
    if kind == "unicode":
        body = _every_unicode_range(supplementary=path.emulator == "moto")
    else:
        body = "x" * 262_144
    url = await _make_queue(path.admin)
    await path.admin.send_message(QueueUrl=url, MessageBody=body)
    # WHEN it is received
    [message] = await _receive_all(path.queue(url), 1)
    # THEN the body is exactly what was sent
    assert message.body == body


async def test_lean_messages_are_identical_to_the_sdks(sqs_url: str) -> None:
    # GIVEN messages with string, number and binary message attributes
    async with AsyncExitStack() as stack:
        session = aioboto3.Session(region_name=REGION)
        admin = await stack.enter_async_context(session.client("sqs", endpoint_url=sqs_url))
        url = await _make_queue(admin)
        for i in range(3):
            await admin.send_message(
                QueueUrl=url,
                MessageBody=f"body-{i} ✓",
                MessageAttributes={
                    "kind": {"DataType": "String", "StringValue": f"k{i} é"},
                    "n": {"DataType": "Number", "StringValue": str(i)},
                    "blob": {"DataType": "Binary", "BinaryValue": bytes([0, 255, i])},
                },
            )
        sdk_queue, _ = await _open_path(stack, "sdk", sqs_url, sqs_url)
        lean_queue, _ = await _open_path(stack, "lean", sqs_url, sqs_url)

        # WHEN the sdk path receives them, releases them, and the lean path receives them again
        first = await _receive_all(sdk_queue(url), 3)
        await sdk_queue(url).change_visibility_batch(
            [(f"e{i}", m.receipt_handle, 0) for i, m in enumerate(first)]
        )
        second = await _receive_all(lean_queue(url), 3)

    # THEN the messages are equal field by field, but for what a second receive changes
    def shape(message: Any) -> tuple[Any, ...]:
        volatile = {"ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp"}
        attributes = {k: v for k, v in message.attributes.items() if k not in volatile}
        return (
            message.message_id,
            message.body,
            message.md5_of_body,
            attributes,
            dict(message.message_attributes),
        )

    assert sorted(map(shape, second)) == sorted(map(shape, first))
    assert all(isinstance(m.message_attributes["blob"]["BinaryValue"], bytes) for m in second)
    assert {m.receive_count for m in second} == {2}


class _BodyAlteringProxy:
    """Forwards to `upstream` and changes one character of every received body."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.altered = 0

    async def handle(self, request: web.Request) -> web.Response:
        import aiohttp

        body = await request.read()
        headers = CIMultiDict(request.headers)
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as upstream,
        ):
            data = await upstream.read()
            status, reply_headers = upstream.status, upstream.headers
        if request.headers.get("X-Amz-Target", "").endswith("ReceiveMessage"):
            doc = json.loads(data)
            for message in doc.get("Messages", []):
                message["Body"] = "X" + message["Body"][1:]
                self.altered += 1
            data = json.dumps(doc).encode()
        keep = {"Content-Type", "x-amzn-RequestId"}
        return web.Response(
            status=status,
            body=data,
            headers={k: v for k, v in reply_headers.items() if k in keep},
        )


async def test_lean_detects_a_body_altered_in_transit(sqs_url: str) -> None:
    # GIVEN a message, and a proxy that alters bodies between SQS and the client
    proxy = _BodyAlteringProxy(sqs_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner, proxy_url = await serve_on_loopback(app)
    try:
        async with AsyncExitStack() as stack:
            session = aioboto3.Session(region_name=REGION)
            admin = await stack.enter_async_context(session.client("sqs", endpoint_url=sqs_url))
            # Visibility 0: a failed receive leaves the message visible for the next one
            url = await _make_queue(admin, visibility_timeout=0)
            await admin.send_message(QueueUrl=url, MessageBody="hello")
            lean_queue, _ = await _open_path(stack, "lean", proxy_url, proxy_url)
            sdk_queue, _ = await _open_path(stack, "sdk", proxy_url, proxy_url)

            # WHEN the lean path receives it through the proxy
            with anyio.fail_after(30), pytest.raises(TransportError) as caught:
                await lean_queue(url).receive(max_messages=1, wait_time_seconds=2)
            # THEN the receive fails, retryable, naming the mismatch
            assert caught.value.code == "MD5OfBodyMismatch"
            assert caught.value.retryable
            # (botocore checks no MD5: the sdk path hands the altered body on)
            [altered] = await _receive_all(sdk_queue(url), 1)
            assert altered.body == "Xello"
    finally:
        await runner.cleanup()
    assert proxy.altered >= 1


# -- Lambda ---------------------------------------------------------------------------------


@pytest.mark.parametrize("invocation_type", ["Event", "RequestResponse"])
async def test_invoke_answers_as_the_sdk(path: Path, invocation_type: Any) -> None:
    # WHEN the function is invoked by name and by ARN (whose ':' need URL-quoting)
    arn = f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION}"
    results = [
        await path.invoker.invoke(
            function_name=name, payload=b'{"x": 1}', invocation_type=invocation_type
        )
        for name in (FUNCTION, arn)
    ]
    # THEN both ran, with the status of the invocation type and no function error
    expected = 202 if invocation_type == "Event" else 200
    assert [r.status_code for r in results] == [expected, expected]
    assert [r.function_error for r in results] == [None, None]
    assert path.lambda_server.invocations == 2


async def test_a_function_error_is_a_result_not_an_exception(sqs_url: str) -> None:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            LambdaServer(latency=0.0, failure_rate=1.0, functions=[FUNCTION])
        )
        for name in ("sdk", "lean"):
            _, invoker = await _open_path(stack, name, sqs_url, server.endpoint_url)
            # WHEN a RequestResponse invoke's function raises
            result = await invoker.invoke(
                function_name=FUNCTION, payload=b"{}", invocation_type="RequestResponse"
            )
            # THEN it is the result's FunctionError, on both paths
            assert (name, result.status_code, result.function_error) == (name, 200, "Unhandled")
            assert result.payload


async def test_a_missing_function_is_function_not_found(path: Path) -> None:
    # WHEN a function the endpoint does not know is invoked
    with pytest.raises(FunctionNotFound) as caught:
        await path.invoker.invoke(function_name="absent", payload=b"{}", invocation_type="Event")
    # THEN the error names it
    assert caught.value.function_name == "absent"


async def test_lambda_429_is_throttled(sqs_url: str) -> None:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            LambdaServer(latency=0.0, throttle_rate=1.0, functions=[FUNCTION])
        )
        for name in ("sdk", "lean"):
            _, invoker = await _open_path(stack, name, sqs_url, server.endpoint_url, max_attempts=2)
            before = server.requests
            # WHEN every invoke is answered 429 TooManyRequestsException
            with pytest.raises(FunctionError) as caught:
                await invoker.invoke(function_name=FUNCTION, payload=b"{}", invocation_type="Event")
            # THEN it was retried as botocore retries (2 attempts) and is reported throttled
            assert (name, caught.value.throttled, caught.value.retryable) == (name, True, True)
            assert caught.value.code == "TooManyRequestsException"
            assert server.requests - before == 2


# -- credentials and faults -----------------------------------------------------------------


async def test_refused_credentials_are_credentials_error(
    transport: Transport, aws_credentials: None
) -> None:
    # GIVEN endpoints that refuse the access key, as AWS does
    runner, url = await refusing_server()
    try:
        async with AsyncExitStack() as stack:
            queue, invoker = await _open_path(stack, transport, url, url)
            # WHEN SQS and Lambda are called
            # THEN both fail with CredentialsError, the code being what botocore reports
            with pytest.raises(CredentialsError) as sqs_error:
                await queue(url + "/123456789012/q").receive(max_messages=1, wait_time_seconds=0)
            with pytest.raises(CredentialsError) as lambda_error:
                await invoker.invoke(function_name=FUNCTION, payload=b"{}", invocation_type="Event")
    finally:
        await runner.cleanup()
    assert sqs_error.value.code == "InvalidClientTokenId"
    assert lambda_error.value.code == "UnrecognizedClientException"


async def test_no_credentials_is_credentials_error(
    transport: Transport, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no credentials anywhere
    for variable in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(variable)
    runner, url = await refusing_server()
    try:
        async with AsyncExitStack() as stack:
            queue, _ = await _open_path(stack, transport, url, url)
            # WHEN SQS is called THEN it is a CredentialsError
            with pytest.raises(CredentialsError):
                await queue(url + "/123456789012/q").receive(max_messages=1, wait_time_seconds=0)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("faults", "error", "code"),
    [
        (Faults(internal_error=1.0), QueueError, "InternalError"),
        (Faults(reset=1.0), TransportError, "ConnectionClosedError"),
    ],
    ids=["500", "reset"],
)
async def test_faults_after_retries(
    transport: Transport,
    faults: Faults,
    error: type[Exception],
    code: str,
    fauxqs_url: str,
    aws_credentials: None,
) -> None:
    # GIVEN fauxqs behind a proxy that fails every request
    async with AsyncExitStack() as stack:
        session = aioboto3.Session(region_name=REGION)
        admin = await stack.enter_async_context(session.client("sqs", endpoint_url=fauxqs_url))
        url = await _make_queue(admin)
        proxy = await stack.enter_async_context(FaultProxy(fauxqs_url, faults=faults, seed=1))
        queue, _ = await _open_path(
            stack, transport, proxy.endpoint_url, proxy.endpoint_url, max_attempts=2
        )
        # WHEN a receive is attempted
        with pytest.raises(error) as caught:
            await queue(url).receive(max_messages=1, wait_time_seconds=0)
    # THEN it was attempted twice, and fails retryable with the code botocore reports
    assert sum(proxy.injected.values()) == 2
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert caught.value.retryable  # type: ignore[attr-defined]
