"""Fixtures for tests against emulators over real HTTP on 127.0.0.1 (moto's server, fauxqs).

- `transport` (parametrized ``sdk``, ``lean``): the data-plane transport; every end-to-end
  test takes it, so it runs on both (the parity suite).
- `moto_instance` / `moto_server` (session): one `MotoServer` for the run, and its endpoint URL.
- `moto_endpoint` (function): the endpoint URL, with moto's state reset and fake credentials set.
- `aws_admin` (function): plain aioboto3 clients (sqs, lambda, iam) on the endpoint, for setup.
- Factories: `make_queue`, `make_function`, `send_messages`, `count_messages`
  (helpers in `_moto.py`).
- `fauxqs_url` (session): one fauxqs for the run (skips without Node >= 20).
- `aws_emulator` (parametrized ``moto``, ``fauxqs``): an `Emulator`, the same factories on
  moto's server (SQS and Lambda) or on fauxqs with a `LambdaServer`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Final

import _moto
import pytest
import pytest_asyncio
from _moto import (
    REGION,
    AdminClients,
    CountMessages,
    Emulator,
    MakeFunction,
    MakeQueue,
    SendMessages,
    TestQueue,
)

from asyncloop._config import Transport
from asyncloop.testing import FauxqsServer, LambdaServer, node_available
from asyncloop.testing._moto import MotoServer

TRANSPORTS: Final[tuple[Transport, ...]] = ("sdk", "lean")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    """``sdk`` (aiobotocore) or ``lean`` (`asyncloop._lean`): a test that takes it runs on both."""
    value: Transport = request.param
    return value


@pytest.fixture(scope="session")
def moto_instance() -> Iterator[MotoServer]:
    """moto's server for the whole run, on 127.0.0.1, Lambda without Docker."""
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def moto_server(moto_instance: MotoServer) -> str:
    """The session server's endpoint URL, ``http://127.0.0.1:<port>``."""
    return moto_instance.endpoint_url


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and region; no profile, config file, proxy or instance metadata."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        # Never read the developer's files, never ask 169.254.169.254
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config-absent"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials-absent"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def moto_endpoint(moto_instance: MotoServer, aws_credentials: None) -> str:
    """The endpoint URL, after clearing every queue, function and role of earlier tests."""
    moto_instance.reset()
    return moto_instance.endpoint_url


@pytest_asyncio.fixture
async def aws_admin(moto_endpoint: str) -> AsyncIterator[AdminClients]:
    import aioboto3

    session = aioboto3.Session(region_name=REGION)
    async with (
        session.client("sqs", endpoint_url=moto_endpoint) as sqs,
        session.client("lambda", endpoint_url=moto_endpoint) as lambda_,
        session.client("iam", endpoint_url=moto_endpoint) as iam,
    ):
        yield AdminClients(sqs=sqs, lambda_=lambda_, iam=iam)


@pytest.fixture
def make_queue(aws_admin: AdminClients) -> MakeQueue:
    """``await make_queue(name=None, *, visibility_timeout=30, max_receive_count=3)``."""

    async def make(
        name: str | None = None, *, visibility_timeout: int = 30, max_receive_count: int = 3
    ) -> TestQueue:
        return await _moto.create_queue(
            aws_admin.sqs,
            name,
            visibility_timeout=visibility_timeout,
            max_receive_count=max_receive_count,
        )

    return make


@pytest.fixture
def make_function(aws_admin: AdminClients) -> MakeFunction:
    """``await make_function(name=None)``: a python3.11 function; returns its name."""

    async def make(name: str | None = None) -> str:
        return await _moto.create_function(aws_admin.iam, aws_admin.lambda_, name)

    return make


@pytest.fixture
def send_messages(aws_admin: AdminClients) -> SendMessages:
    """``await send_messages(queue_url, count, *, body="message-{i}")``: the MessageIds."""

    async def send_(queue_url: str, count: int, *, body: str = "message-{i}") -> list[str]:
        return await _moto.send_messages(aws_admin.sqs, queue_url, count, body=body)

    return send_


@pytest.fixture
def count_messages(aws_admin: AdminClients) -> CountMessages:
    """``await count_messages(queue_url)``: ApproximateNumberOfMessages + NotVisible."""

    async def count_(queue_url: str) -> int:
        return await _moto.count_messages(aws_admin.sqs, queue_url)

    return count_


@pytest.fixture(scope="session")
def fauxqs_url() -> Iterator[str]:
    """One fauxqs for the run (queues are named uniquely, never reset), on 127.0.0.1."""
    if not node_available():
        pytest.skip("fauxqs needs Node.js >= 20 and npm on PATH")
    with FauxqsServer() as server:
        yield server.endpoint_url


@pytest_asyncio.fixture(params=["moto", "fauxqs"])
async def aws_emulator(
    request: pytest.FixtureRequest, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Emulator]:
    """moto's server for SQS and Lambda, or fauxqs for SQS and a `LambdaServer` for Lambda
    (reached through ``AWS_ENDPOINT_URL_SQS`` / ``AWS_ENDPOINT_URL_LAMBDA``)."""
    import aioboto3

    session = aioboto3.Session(region_name=REGION)
    async with AsyncExitStack() as stack:
        if request.param == "moto":
            endpoint: str = request.getfixturevalue("moto_endpoint")
            sqs = await stack.enter_async_context(session.client("sqs", endpoint_url=endpoint))
            lambda_ = await stack.enter_async_context(
                session.client("lambda", endpoint_url=endpoint)
            )
            iam = await stack.enter_async_context(session.client("iam", endpoint_url=endpoint))
            yield Emulator.on_moto(endpoint, AdminClients(sqs=sqs, lambda_=lambda_, iam=iam))
            return
        fauxqs: str = request.getfixturevalue("fauxqs_url")
        server = await stack.enter_async_context(
            LambdaServer(latency=0.0, strict_functions=True, record_payloads=True)
        )
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", fauxqs)
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.endpoint_url)
        sqs = await stack.enter_async_context(session.client("sqs", endpoint_url=fauxqs))
        yield Emulator.on_fauxqs(sqs, server)
