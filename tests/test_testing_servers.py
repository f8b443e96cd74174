"""The local HTTP servers in asyncloop.testing, seen through aioboto3 as the library sees AWS.

- LambdaServer: Invoke (Event, RequestResponse, throttle, function error) and GetFunction.
- FauxqsServer: an SQS round trip, and fauxqs's SQS-like strictness on batches.
- FaultProxy: each fault kind as a client without retries sees it, before and after
  forwarding; pass-through; and botocore's standard retries getting through a 30% fault run.

Retries are turned off with ``total_max_attempts=1``: botocore's ``max_attempts`` counts
retries, not attempts, so ``max_attempts=1`` still allows one retry.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import pytest
import pytest_asyncio
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from botocore.retries.standard import ExponentialBackoff

from asyncloop._exceptions import ClosedError, ConfigError
from asyncloop.testing._fault_proxy import FaultProxy, Faults
from asyncloop.testing._fauxqs import (
    FauxqsError,
    FauxqsServer,
    default_cache_dir,
    ensure_fauxqs,
    node_available,
)
from asyncloop.testing._lambda_server import LambdaServer

pytestmark = pytest.mark.asyncio

REGION = "us-east-1"
FUNCTION = "worker"


@pytest.fixture(autouse=True)
def isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No profile, config file, retry settings, proxy or instance metadata from the machine."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config-absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials-absent"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry at once: these tests check botocore's retry decisions, not its waits."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


@pytest.fixture(scope="module")
def fauxqs_server() -> Iterator[FauxqsServer]:
    """One fauxqs for the module (installed into the cache on first use)."""
    if not node_available():
        pytest.skip("fauxqs needs Node.js >= 20 and npm on PATH")
    with FauxqsServer() as server:
        yield server


def client(
    service: str, endpoint_url: str, *, attempts: int = 1, read_timeout: float = 5.0
) -> AbstractAsyncContextManager[Any]:
    """An aioboto3 client on `endpoint_url`; `attempts` counts the first try."""
    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    config = Config(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=2,
        read_timeout=read_timeout,
        max_pool_connections=50,
    )
    return session.client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[no-any-return]


async def invoke_named(lambda_client: Any, name: str) -> bytes:
    response = await lambda_client.invoke(FunctionName=name, Payload=b"{}")
    body: bytes = await response["Payload"].read()
    return body


async def invoke(lambda_client: Any, invocation_type: str, payload: bytes) -> tuple[Any, bytes]:
    """Invoke FUNCTION; returns the response and its read payload (always read: no leaks)."""
    response = await lambda_client.invoke(
        FunctionName=FUNCTION, InvocationType=invocation_type, Payload=payload
    )
    return response, await response["Payload"].read()


@pytest_asyncio.fixture
async def queue_url(fauxqs_server: FauxqsServer, request: pytest.FixtureRequest) -> str:
    """A fresh fauxqs queue named after the test."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:80]
    async with client("sqs", fauxqs_server.endpoint_url) as sqs:
        url: str = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    return url


async def visible_and_in_flight(sqs: Any, queue_url: str) -> tuple[int, int]:
    attributes = (
        await sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


# --- LambdaServer -------------------------------------------------------------------------


@pytest.mark.integration
async def test_lambda_event_invoke_answers_202_with_an_empty_body_and_runs_the_hook() -> None:
    # GIVEN a server whose function records what it was called with
    calls: list[tuple[str, bytes]] = []
    async with (
        LambdaServer(latency=0.0, on_invoke=lambda name, p: calls.append((name, p))) as s,
        client("lambda", s.endpoint_url) as lam,
    ):
        # WHEN the client invokes asynchronously
        response, body = await invoke(lam, "Event", b'{"n": 1}')

    # THEN Lambda's Event answer: 202, nothing in the body, no FunctionError
    assert response["StatusCode"] == 202
    assert body == b""
    assert "FunctionError" not in response
    assert calls == [(FUNCTION, b'{"n": 1}')]
    assert (s.requests, s.invocations, s.invocations_by_function[FUNCTION]) == (1, 1, 1)


@pytest.mark.integration
async def test_lambda_request_response_answers_200_with_the_function_result() -> None:
    # GIVEN a function that returns nothing, then one that returns a value
    async with LambdaServer(latency=0.0) as s, client("lambda", s.endpoint_url) as lam:
        # WHEN invoked synchronously, also by ARN
        plain, plain_body = await invoke(lam, "RequestResponse", b"{}")
        s.add_function(FUNCTION)
        by_arn = await lam.invoke(
            FunctionName=f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION}", Payload=b"{}"
        )
        by_arn_body = await by_arn["Payload"].read()

    async def double(name: str, payload: bytes) -> dict[str, int]:
        return {"doubled": json.loads(payload)["n"] * 2}

    async with (
        LambdaServer(latency=0.0, on_invoke=double) as s2,
        client("lambda", s2.endpoint_url) as lam,
    ):
        valued, valued_body = await invoke(lam, "RequestResponse", b'{"n": 21}')

    # THEN 200 with `null`, or the hook's value, and no FunctionError
    assert (plain["StatusCode"], plain_body) == (200, b"null")
    assert (by_arn["StatusCode"], by_arn_body) == (200, b"null")
    assert s.invocations_by_function == {FUNCTION: 2}
    assert (valued["StatusCode"], json.loads(valued_body)) == (200, {"doubled": 42})
    assert "FunctionError" not in plain
    assert "FunctionError" not in valued


@pytest.mark.integration
async def test_lambda_function_error_is_reported_in_the_response_not_raised() -> None:
    # GIVEN a server that fails every invoke, and one whose function raises
    def broken(name: str, payload: bytes) -> None:
        raise ValueError("bad payload")

    async with (
        LambdaServer(latency=0.0, failure_rate=1.0) as injected,
        client("lambda", injected.endpoint_url) as lam,
    ):
        # WHEN invoked synchronously and asynchronously
        failed, failed_body = await invoke(lam, "RequestResponse", b"{}")
        event, event_body = await invoke(lam, "Event", b"{}")
    async with (
        LambdaServer(latency=0.0, on_invoke=broken) as raising,
        client("lambda", raising.endpoint_url) as lam,
    ):
        raised, raised_body = await invoke(lam, "RequestResponse", b"{}")

    # THEN RequestResponse carries FunctionError=Unhandled and Lambda's error body
    assert (failed["StatusCode"], failed["FunctionError"]) == (200, "Unhandled")
    assert json.loads(failed_body)["errorType"] == "InjectedFailure"
    assert (raised["FunctionError"], json.loads(raised_body)["errorType"]) == (
        "Unhandled",
        "ValueError",
    )
    # AND an Event invoke's failure is invisible to the caller, as on Lambda
    assert (event["StatusCode"], event_body, "FunctionError" in event) == (202, b"", False)
    assert (injected.invocations, injected.failures) == (2, 2)
    assert raising.failures == 1


@pytest.mark.integration
async def test_lambda_throttle_raises_too_many_requests() -> None:
    # GIVEN a server that throttles everything, and a client without retries
    ran: list[str] = []
    async with (
        LambdaServer(
            latency=0.0, throttle_rate=1.0, on_invoke=lambda name, p: ran.append(name)
        ) as s,
        client("lambda", s.endpoint_url, attempts=1) as lam,
    ):
        # WHEN it invokes
        with pytest.raises(ClientError) as caught:
            await lam.invoke(FunctionName=FUNCTION, InvocationType="Event", Payload=b"{}")
        modeled = lam.exceptions.TooManyRequestsException

    # THEN botocore raises TooManyRequestsException from a 429, and the function never ran
    assert isinstance(caught.value, modeled)
    assert caught.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert (s.requests, s.throttled, s.invocations, ran) == (1, 1, 0, [])


@pytest.mark.integration
async def test_lambda_get_function_finds_registered_functions_only() -> None:
    # GIVEN one registered function
    async with (
        LambdaServer(latency=0.0, functions=["known"]) as s,
        client("lambda", s.endpoint_url) as lam,
    ):
        # WHEN the client asks for it and for an unknown one
        found = await lam.get_function(FunctionName="known")
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as missing:
            await lam.get_function(FunctionName="unknown")
        s.remove_function("known")
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            await lam.get_function(FunctionName="known")

    # THEN GetFunction parses, and unknown names are Lambda's 404
    assert found["Configuration"]["FunctionName"] == "known"
    assert found["Configuration"]["FunctionArn"].endswith(":function:known")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.mark.integration
async def test_lambda_strict_functions_refuses_invokes_of_unknown_names() -> None:
    async with (
        LambdaServer(latency=0.0, strict_functions=True) as s,
        client("lambda", s.endpoint_url) as lam,
    ):
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            await lam.invoke(FunctionName="ghost", Payload=b"{}")
        s.add_function("ghost")
        await invoke_named(lam, "ghost")
    assert (s.not_found, s.invocations) == (1, 1)


@pytest.mark.integration
async def test_lambda_latency_callable_and_wait_for_invocations() -> None:
    # GIVEN a latency model that counts its draws, and recorded payloads
    draws: list[float] = []

    def latency() -> float:
        draws.append(0.0)
        return 0.0

    async with (
        LambdaServer(latency=latency, record_payloads=True) as s,
        client("lambda", s.endpoint_url) as lam,
        anyio.create_task_group() as tg,
    ):
        # WHEN five invokes run concurrently
        for n in range(5):
            tg.start_soon(invoke, lam, "Event", json.dumps({"n": n}).encode())
        # THEN a test can wait for them by count, not by sleeping
        with anyio.fail_after(5):
            await s.wait_for_invocations(5)

    assert len(draws) == 5
    assert s.recorded is not None
    assert sorted(r.decoded()["n"] for r in s.recorded) == [0, 1, 2, 3, 4]


async def test_lambda_server_keeps_no_payloads_unless_asked_and_checks_its_rates() -> None:
    assert LambdaServer().recorded is None
    with pytest.raises(ConfigError, match=r"failure_rate must be in 0\.\.1, got 1\.5"):
        LambdaServer(failure_rate=1.5)
    with pytest.raises(ConfigError, match="at most 1"):
        LambdaServer(failure_rate=0.6, throttle_rate=0.6)
    with pytest.raises(ClosedError):
        _ = LambdaServer().endpoint_url


# --- FauxqsServer -------------------------------------------------------------------------


@pytest.mark.integration
async def test_fauxqs_round_trip_send_receive_delete(
    fauxqs_server: FauxqsServer, queue_url: str
) -> None:
    async with client("sqs", fauxqs_server.endpoint_url) as sqs:
        # GIVEN ten messages sent in one batch
        sent = await sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": f"m{i}", "MessageBody": f"body-{i}"} for i in range(10)],
        )
        # WHEN they are received ten at a time and deleted in one batch
        received = (
            await sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        )["Messages"]
        deleted = await sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)
            ],
        )
        remaining = await visible_and_in_flight(sqs, queue_url)

    # THEN all ten arrive once and the queue is empty
    assert len(sent["Successful"]) == 10
    assert sorted(m["Body"] for m in received) == sorted(f"body-{i}" for i in range(10))
    assert (len(deleted["Successful"]), deleted["Failed"]) == (10, [])
    assert remaining == (0, 0)


@pytest.mark.integration
@pytest.mark.parametrize("operation", ["send_message_batch", "delete_message_batch"])
async def test_fauxqs_rejects_repeated_ids_and_long_batches_like_sqs(
    fauxqs_server: FauxqsServer, queue_url: str, operation: str
) -> None:
    async with client("sqs", fauxqs_server.endpoint_url) as sqs:
        await sqs.send_message(QueueUrl=queue_url, MessageBody="x")
        message = (await sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0))["Messages"][0]

        def entry(entry_id: str) -> dict[str, str]:
            if operation == "send_message_batch":
                return {"Id": entry_id, "MessageBody": "x"}
            return {"Id": entry_id, "ReceiptHandle": message["ReceiptHandle"]}

        call = getattr(sqs, operation)
        # WHEN a batch repeats an Id, or holds eleven entries
        with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct) as repeated:
            await call(QueueUrl=queue_url, Entries=[entry("a"), entry("a")])
        with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest) as too_many:
            await call(QueueUrl=queue_url, Entries=[entry(f"e{i}") for i in range(11)])
        # AND nothing of the rejected calls happened
        remaining = await visible_and_in_flight(sqs, queue_url)

    # THEN the whole call fails with SQS's codes (query-compatible: legacy Code, JSON type)
    assert repeated.value.response["Error"]["Code"] == (
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    )
    assert repeated.value.response["Error"]["QueryErrorCode"] == "BatchEntryIdsNotDistinct"
    assert too_many.value.response["Error"]["QueryErrorCode"] == "TooManyEntriesInBatchRequest"
    assert too_many.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert remaining == (0, 1)


@pytest.mark.integration
async def test_fauxqs_sync_context_manager_binds_loopback_and_stops() -> None:
    if not node_available():
        pytest.skip("fauxqs needs Node.js >= 20 and npm on PATH")
    # GIVEN a server started and stopped with the sync context manager
    with FauxqsServer() as server:
        endpoint, port, pid = server.endpoint_url, server.port, server.pid
        # THEN it answers on 127.0.0.1, from a Node process of its own
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        assert pid is not None
        command = await anyio.Path(f"/proc/{pid}/cmdline").read_bytes()
        assert command.split(b"\0")[0].endswith(b"node")
    # AND after exit it no longer listens and has no endpoint
    assert endpoint == f"http://127.0.0.1:{port}"
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass
    with pytest.raises(ClosedError):
        _ = server.endpoint_url
    assert server.pid is None


async def test_fauxqs_without_node_names_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a machine without node or npm, and nothing installed yet
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    # THEN callers can skip, and installing or starting says how to get Node
    assert node_available() is False
    with pytest.raises(FauxqsError, match=r"Node\.js >= 20.*nodejs\.org"):
        ensure_fauxqs(tmp_path / "cache")
    with pytest.raises(FauxqsError, match=r"nodejs\.org"):
        async with FauxqsServer(cache_dir=tmp_path / "cache"):
            pass
    assert not (tmp_path / "cache").exists()


async def test_fauxqs_cache_dir_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ASYNCLOOP_FAUXQS_DIR", str(tmp_path / "fq"))
    assert default_cache_dir() == tmp_path / "fq"
    monkeypatch.delenv("ASYNCLOOP_FAUXQS_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "asyncloop" / "fauxqs"


@pytest.mark.integration
async def test_lambda_hook_can_delete_the_message_like_a_worker(
    fauxqs_server: FauxqsServer, queue_url: str
) -> None:
    # GIVEN a "worker" function that deletes the message whose receipt handle it is given
    async with client("sqs", fauxqs_server.endpoint_url) as sqs:

        async def worker(name: str, payload: bytes) -> None:
            await sqs.delete_message(
                QueueUrl=queue_url, ReceiptHandle=json.loads(payload)["receipt_handle"]
            )

        await sqs.send_message(QueueUrl=queue_url, MessageBody="job")
        message = (await sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0))["Messages"][0]
        async with (
            LambdaServer(latency=0.0, on_invoke=worker) as s,
            client("lambda", s.endpoint_url) as lam,
        ):
            # WHEN the consumer invokes it asynchronously with the seed's payload
            payload = json.dumps({"receipt_handle": message["ReceiptHandle"]}).encode()
            response, _ = await invoke(lam, "Event", payload)
        # THEN the message is gone once the invoke was accepted
        assert response["StatusCode"] == 202
        assert await visible_and_in_flight(sqs, queue_url) == (0, 0)


# --- FaultProxy ---------------------------------------------------------------------------


def always(kind: str, **options: Any) -> Faults:
    """Faults that inject `kind` into every request."""
    options[kind] = 1.0
    return Faults(**options)


@pytest_asyncio.fixture
async def lambda_server() -> AsyncIterator[LambdaServer]:
    async with LambdaServer(latency=0.0, functions=[FUNCTION]) as server:
        yield server


@pytest.mark.integration
async def test_proxy_passes_everything_through_when_rates_are_zero(
    lambda_server: LambdaServer,
) -> None:
    async with (
        FaultProxy(lambda_server.endpoint_url, seed=1) as proxy,
        client("lambda", proxy.endpoint_url) as lam,
    ):
        event, event_body = await invoke(lam, "Event", b'{"a": 1}')
        sync, sync_body = await invoke(lam, "RequestResponse", b'{"a": 2}')
        found = await lam.get_function(FunctionName=FUNCTION)
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            await lam.get_function(FunctionName="missing")

    assert (event["StatusCode"], event_body) == (202, b"")
    assert (sync["StatusCode"], sync_body) == (200, b"null")
    assert found["Configuration"]["FunctionName"] == FUNCTION
    assert (proxy.requests, proxy.forwarded) == (4, 4)
    assert sum(proxy.injected.values()) == 0
    assert lambda_server.invocations == 2


LAMBDA_FAULTS = [
    ("internal_error", "InternalError", 500),
    ("service_unavailable", "ServiceUnavailable", 503),
    ("throttle", "TooManyRequestsException", 429),
]


@pytest.mark.integration
@pytest.mark.parametrize("after", [False, True], ids=["before-forward", "after-forward"])
@pytest.mark.parametrize(("kind", "code", "status"), LAMBDA_FAULTS)
async def test_proxy_error_faults_reach_a_client_without_retries(
    lambda_server: LambdaServer, kind: str, code: str, status: int, after: bool
) -> None:
    # GIVEN a proxy that always injects this fault, before or after forwarding
    faults = always(kind, after_forward=1.0 if after else 0.0)
    async with (
        FaultProxy(lambda_server.endpoint_url, faults=faults, seed=1) as proxy,
        client("lambda", proxy.endpoint_url, attempts=1) as lam,
    ):
        # WHEN a client without retries invokes
        with pytest.raises(ClientError) as caught:
            await lam.invoke(FunctionName=FUNCTION, Payload=b"{}")

    # THEN it sees the error's code and status once
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert proxy.injected[kind] == 1
    # AND only the after-forward fault let the function run: the duplicate-making case
    assert lambda_server.invocations == (1 if after else 0)
    assert proxy.injected_after_forward[kind] == (1 if after else 0)


@pytest.mark.integration
@pytest.mark.parametrize("after", [False, True], ids=["before-forward", "after-forward"])
async def test_proxy_reset_closes_the_connection(lambda_server: LambdaServer, after: bool) -> None:
    faults = Faults(reset=1.0, after_forward=1.0 if after else 0.0)
    async with (
        FaultProxy(lambda_server.endpoint_url, faults=faults) as proxy,
        client("lambda", proxy.endpoint_url, attempts=1) as lam,
    ):
        with pytest.raises(ConnectionClosedError):
            await lam.invoke(FunctionName=FUNCTION, InvocationType="Event", Payload=b"{}")
    assert proxy.injected["reset"] == 1
    assert lambda_server.invocations == (1 if after else 0)


@pytest.mark.integration
async def test_proxy_slow_answer_times_the_client_out(lambda_server: LambdaServer) -> None:
    # GIVEN answers held far longer than the client's read timeout (cut short on close)
    faults = Faults(slow=1.0, slow_delay=60.0)
    async with (
        FaultProxy(lambda_server.endpoint_url, faults=faults) as proxy,
        client("lambda", proxy.endpoint_url, attempts=1, read_timeout=0.2) as lam,
    ):
        with pytest.raises(ReadTimeoutError):
            await lam.invoke(FunctionName=FUNCTION, Payload=b"{}")
    # THEN the held request never reached the function
    assert proxy.injected["slow"] == 1
    assert lambda_server.invocations == 0


@pytest.mark.integration
@pytest.mark.parametrize("throttle_status", [400, 429])
async def test_proxy_sqs_faults_use_the_json_protocol_shape(
    fauxqs_server: FauxqsServer, queue_url: str, throttle_status: int
) -> None:
    # GIVEN throttling only on ReceiveMessage
    faults = Faults(throttle=1.0, throttle_status=throttle_status, operations={"ReceiveMessage"})
    async with (
        FaultProxy(fauxqs_server.endpoint_url, faults=faults) as proxy,
        client("sqs", proxy.endpoint_url, attempts=1) as sqs,
    ):
        # WHEN a message is sent (not restricted) and then received (throttled)
        await sqs.send_message(QueueUrl=queue_url, MessageBody="x")
        with pytest.raises(ClientError) as throttled:
            await sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)
        # AND an internal error on every operation
        proxy.faults = Faults(internal_error=1.0)
        with pytest.raises(ClientError) as internal:
            await sqs.get_queue_attributes(QueueUrl=queue_url)

    # THEN botocore reads SQS-shaped codes from them
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == throttle_status
    assert internal.value.response["Error"]["Code"] == "InternalError"
    assert internal.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert (proxy.injected["throttle"], proxy.injected["internal_error"]) == (1, 1)
    assert proxy.forwarded == 1


@pytest.mark.integration
async def test_proxy_query_protocol_faults_use_the_xml_shape(
    fauxqs_server: FauxqsServer,
) -> None:
    # GIVEN SNS, which botocore speaks in the query protocol, through the proxy
    async with (
        FaultProxy(fauxqs_server.endpoint_url) as proxy,
        client("sns", proxy.endpoint_url, attempts=1) as sns,
    ):
        created = await sns.create_topic(Name="proxy-query-shape")
        proxy.faults = Faults(throttle=1.0, operations={"ListTopics"})
        with pytest.raises(ClientError) as throttled:
            await sns.list_topics()

    assert created["TopicArn"].endswith(":proxy-query-shape")
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert throttled.value.response["Error"]["Type"] == "Sender"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.integration
async def test_proxy_after_forward_fault_on_delete_deletes_anyway(
    fauxqs_server: FauxqsServer, queue_url: str
) -> None:
    # GIVEN a received message and a proxy failing DeleteMessageBatch after forwarding
    faults = Faults(internal_error=1.0, after_forward=1.0, operations={"DeleteMessageBatch"})
    async with client("sqs", fauxqs_server.endpoint_url) as direct:
        await direct.send_message(QueueUrl=queue_url, MessageBody="x")
        message = (await direct.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0))["Messages"][
            0
        ]
        async with (
            FaultProxy(fauxqs_server.endpoint_url, faults=faults) as proxy,
            client("sqs", proxy.endpoint_url, attempts=1) as sqs,
        ):
            # WHEN the client deletes it
            with pytest.raises(ClientError, match="InternalError"):
                await sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": "0", "ReceiptHandle": message["ReceiptHandle"]}],
                )
        # THEN the client saw a failure although the message is gone
        assert await visible_and_in_flight(direct, queue_url) == (0, 0)
    assert proxy.injected_after_forward["internal_error"] == 1


@pytest.mark.integration
@pytest.mark.usefixtures("no_backoff")
@pytest.mark.parametrize("kind", ["internal_error", "service_unavailable", "throttle", "reset"])
async def test_standard_retries_retry_each_fault(lambda_server: LambdaServer, kind: str) -> None:
    # GIVEN a proxy that always faults, and a client allowed three attempts
    async with (
        FaultProxy(lambda_server.endpoint_url, faults=always(kind)) as proxy,
        client("lambda", proxy.endpoint_url, attempts=3) as lam,
    ):
        # WHEN it invokes
        with pytest.raises((ClientError, ConnectionClosedError)) as caught:
            await lam.invoke(FunctionName=FUNCTION, Payload=b"{}")
    # THEN botocore tried three times before giving up
    assert proxy.requests == 3
    assert proxy.injected[kind] == 3
    if isinstance(caught.value, ClientError):
        assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 2


FAULTS_30_PERCENT = Faults(
    internal_error=0.075,
    service_unavailable=0.075,
    throttle=0.075,
    reset=0.075,
    after_forward=0.5,
)


@pytest.mark.integration
@pytest.mark.usefixtures("no_backoff")
async def test_standard_retries_get_a_lambda_run_through_30_percent_faults(
    lambda_server: LambdaServer,
) -> None:
    # GIVEN 30% faults, half of them after the function ran, and ten attempts per call
    async with (
        FaultProxy(lambda_server.endpoint_url, faults=FAULTS_30_PERCENT, seed=7) as proxy,
        client("lambda", proxy.endpoint_url, attempts=10) as lam,
    ):
        # WHEN 60 invokes run, 20 at a time
        results: list[int] = []

        async def one(n: int) -> None:
            response, _ = await invoke(lam, "RequestResponse", json.dumps({"n": n}).encode())
            results.append(response["StatusCode"])

        limiter = anyio.CapacityLimiter(20)

        async def limited(n: int) -> None:
            async with limiter:
                await one(n)

        async with anyio.create_task_group() as tg:
            for n in range(60):
                tg.start_soon(limited, n)

    # THEN every call succeeded, faults happened, and each after-forward fault ran it twice
    assert results == [200] * 60
    assert sum(proxy.injected.values()) > 0
    duplicates = sum(proxy.injected_after_forward.values())
    assert duplicates > 0
    assert lambda_server.invocations == 60 + duplicates


@pytest.mark.integration
@pytest.mark.usefixtures("no_backoff")
async def test_standard_retries_get_sqs_sends_through_30_percent_faults(
    fauxqs_server: FauxqsServer, queue_url: str
) -> None:
    async with (
        FaultProxy(fauxqs_server.endpoint_url, faults=FAULTS_30_PERCENT, seed=3) as proxy,
        client("sqs", proxy.endpoint_url, attempts=10) as sqs,
    ):
        for n in range(30):
            await sqs.send_message(QueueUrl=queue_url, MessageBody=str(n))
    async with client("sqs", fauxqs_server.endpoint_url) as direct:
        visible, _ = await visible_and_in_flight(direct, queue_url)
    # Every send landed; each after-forward fault landed one more copy (a duplicate).
    assert sum(proxy.injected.values()) > 0
    assert visible == 30 + sum(proxy.injected_after_forward.values())


async def test_faults_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"throttle must be in 0\.\.1, got 2"):
        Faults(throttle=2)
    with pytest.raises(ConfigError, match="add up to at most 1"):
        Faults(throttle=0.6, reset=0.6)
    with pytest.raises(ConfigError, match="throttle_status"):
        Faults(throttle_status=503)
    with pytest.raises(ConfigError, match="upstream_url"):
        FaultProxy("127.0.0.1:4566")
    assert Faults(operations=["ReceiveMessage"]).applies_to("ReceiveMessage", "/")
    assert not Faults(operations=["ReceiveMessage"]).applies_to("SendMessage", "/")
    assert Faults(path_prefixes=["/2015-03-31/"]).applies_to(None, "/2015-03-31/functions/f")
