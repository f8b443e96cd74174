"""The loop end to end against moto's server: Kinesis tokens, DynamoDB leases, SQS, Lambda.

A driver plays Lambda's Kinesis event source mapping: it reads the token stream in moto and
calls `loop_handler` in-process with real-shaped Kinesis events and a context whose remaining
time counts down. 500 messages drain through 2 loops; then a duplicated token, a crash right
after ``put_record`` and a lost ``put_record`` each leave exactly one current token per live
loop (the lost one re-seeded by the watchdog); then the kill switch (``asyncloop loop stop``)
ends both loops.

The handlers are synchronous and run their own event loop, so this test is a plain function;
setup and inspection go through plain boto3 clients, never through the code under test.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from _events import LambdaContext, kinesis_event, kinesis_record
from _moto import REGION, handler_zip, unique_name

from asyncloop import HandlerFailed
from asyncloop._cli import main
from asyncloop._loop.app import LoopApp
from asyncloop._loop.control import CONTROL_ID, LoopToken, parse_token
from asyncloop._loop.runner import LoopRuntime
from asyncloop._loop.settings import LoopSettings, build_aws_runtime

pytestmark = pytest.mark.integration

MESSAGES = 500
CHUNK = 100


class Crash(BaseException):
    """The invocation dies here, as a runtime crash would: no ``except Exception`` runs."""


@dataclass
class Faults:
    """Switches on the token sink the app uses; each fires once."""

    crash_after_put: bool = False
    lose_put: bool = False
    clock_offset: float = 0.0
    lost: list[LoopToken] = field(default_factory=list)


class FaultySink:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    async def put(self, token: LoopToken) -> None:
        if self._faults.lose_put:
            self._faults.lose_put = False
            self._faults.lost.append(token)
            return
        await self._inner.put(token)
        if self._faults.crash_after_put:
            self._faults.crash_after_put = False
            raise Crash


@dataclass
class Setup:
    endpoint: str
    queue_url: str
    table: str
    stream: str
    function: str
    env: dict[str, str]
    sqs: Any
    kinesis: Any
    dynamodb: Any


@pytest.fixture
def setup(moto_endpoint: str) -> Setup:
    """A queue, a one-shard token stream, the lease table and a worker function in moto."""

    def client(name: str) -> Any:
        return boto3.client(name, region_name=REGION, endpoint_url=moto_endpoint)

    sqs, kinesis, dynamodb, iam, lambda_ = (
        client(n) for n in ("sqs", "kinesis", "dynamodb", "iam", "lambda")
    )
    queue_url = sqs.create_queue(
        QueueName=unique_name("work"), Attributes={"VisibilityTimeout": "10"}
    )["QueueUrl"]
    stream = unique_name("tokens")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    table = unique_name("leases")
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "loop_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "loop_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    function = unique_name("worker")
    role = iam.create_role(
        RoleName=f"{function}-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )
    lambda_.create_function(
        FunctionName=function,
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": handler_zip()},
    )
    env = {
        "ASYNCLOOP_QUEUE_URL": queue_url,
        "ASYNCLOOP_FUNCTION_NAME": function,
        "ASYNCLOOP_LEASE_TABLE": table,
        "ASYNCLOOP_STREAM_NAME": stream,
        "ASYNCLOOP_ENDPOINT_URL": moto_endpoint,
        "ASYNCLOOP_REGION": REGION,
        "ASYNCLOOP_MAX_ATTEMPTS": "2",
        "ASYNCLOOP_READ_TIMEOUT": "10",
        # Short runs, short polls: moto really waits, and slows with its backlog
        "ASYNCLOOP_RUN_SECONDS": "1.0",
        "ASYNCLOOP_WAIT_TIME_SECONDS": "0",
        "ASYNCLOOP_RECEIVERS": "2",
        "ASYNCLOOP_MAX_IN_FLIGHT": "20",
        "ASYNCLOOP_SHUTDOWN_GRACE": "1",
        "ASYNCLOOP_ACK_FLUSH_TIMEOUT": "2",
        "ASYNCLOOP_PUT_ATTEMPTS": "3",
        "ASYNCLOOP_CONTROL_BUDGET": "0.5",
        # Exactly two loops: never scale out, never end for idling
        "ASYNCLOOP_MIN_LOOPS": "2",
        "ASYNCLOOP_MAX_LOOPS": "2",
        "ASYNCLOOP_IDLE_GENERATIONS": "100000",
        "ASYNCLOOP_HEARTBEAT_LIMIT": "30",
    }
    return Setup(moto_endpoint, queue_url, table, stream, function, env, sqs, kinesis, dynamodb)


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def app(setup: Setup, faults: Faults) -> Iterator[LoopApp]:
    async def factory(settings: LoopSettings, stack: AsyncExitStack) -> LoopRuntime:
        runtime = await build_aws_runtime(settings, stack)
        runtime.sink = FaultySink(runtime.sink, faults)
        runtime.clock = lambda: time.time() + faults.clock_offset
        runtime.write = lambda line: None
        return runtime

    app = LoopApp(environ=setup.env, runtime_factory=factory)
    yield app
    app.close()


class Driver:
    """Lambda's Kinesis event source mapping, played in-process: one record per invocation."""

    def __init__(self, setup: Setup, app: LoopApp) -> None:
        self.setup = setup
        self.app = app
        shard = setup.kinesis.describe_stream(StreamName=setup.stream)["StreamDescription"][
            "Shards"
        ][0]["ShardId"]
        self.iterator = setup.kinesis.get_shard_iterator(
            StreamName=setup.stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        self.pending: deque[dict[str, Any]] = deque()
        self.sent = 0
        self.deleted = 0
        self.invocations = 0

    def read(self) -> None:
        answer = self.setup.kinesis.get_records(ShardIterator=self.iterator, Limit=100)
        self.iterator = answer["NextShardIterator"]
        for record in answer["Records"]:
            self.pending.append(
                kinesis_record(
                    record["Data"],
                    partition_key=record["PartitionKey"],
                    sequence_number=record["SequenceNumber"],
                    stream=self.setup.stream,
                )
            )

    def feed(self) -> None:
        """Keep moto's queue small: send the next chunk when the backlog runs low."""
        if self.sent >= MESSAGES or self.backlog() > CHUNK // 2:
            return
        for start in range(self.sent, min(self.sent + CHUNK, MESSAGES), 10):
            entries = [
                {"Id": f"m{i}", "MessageBody": f"message-{i}"} for i in range(start, start + 10)
            ]
            self.setup.sqs.send_message_batch(QueueUrl=self.setup.queue_url, Entries=entries)
        self.sent = min(self.sent + CHUNK, MESSAGES)

    def backlog(self) -> int:
        attributes = self.setup.sqs.get_queue_attributes(
            QueueUrl=self.setup.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def invoke(self, record: dict[str, Any]) -> dict[str, Any]:
        self.invocations += 1
        # The function's timeout: its margin plus a few seconds to consume
        context = LambdaContext(remaining_s=LoopSettings.from_env(self.setup.env).margin + 3.0)
        result = self.app.loop_handler(kinesis_event(record), context)
        for run in result["runs"]:
            self.deleted += run["counts"].get("deleted", 0)
        return result

    def step(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Deliver the oldest pending record; answer it and its result."""
        if not self.pending:
            self.read()
        assert self.pending, "no token left on the stream: every loop died"
        record = self.pending.popleft()
        return record, self.invoke(record)

    def current_tokens(self) -> dict[str, int]:
        """Per loop, the pending tokens that would run (their generation is the lease's)."""
        self.read()
        leases = self.leases()
        counts: dict[str, int] = {}
        for record in self.pending:
            token = parse_token(_data(record))
            assert token is not None
            if leases.get(token.loop_id) == token.generation:
                counts[token.loop_id] = counts.get(token.loop_id, 0) + 1
        return counts

    def leases(self) -> dict[str, int]:
        items = self.setup.dynamodb.scan(TableName=self.setup.table, ConsistentRead=True)["Items"]
        return {
            item["loop_id"]["S"]: int(item["generation"]["N"])
            for item in items
            if item["loop_id"]["S"] != CONTROL_ID
        }

    def live_count(self) -> int:
        item = self.setup.dynamodb.get_item(
            TableName=self.setup.table, Key={"loop_id": {"S": CONTROL_ID}}, ConsistentRead=True
        )["Item"]
        return int(item["live"]["N"])

    def assert_loops_right(self, loops: int) -> None:
        """Exactly `loops` live loops, each with exactly one token that can run."""
        current = self.current_tokens()
        assert self.live_count() == loops
        assert set(current) == set(self.leases())
        assert len(current) == loops
        assert all(n == 1 for n in current.values()), current


def _data(record: dict[str, Any]) -> bytes:
    import base64

    return base64.b64decode(record["kinesis"]["data"])


def test_500_messages_drain_through_two_loops_that_neither_die_nor_multiply(
    setup: Setup, app: LoopApp, faults: Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two loops started by a direct invoke
    started = app.loop_handler({"action": "start", "loops": 2}, LambdaContext())
    assert len(started["started"]) == 2
    driver = Driver(setup, app)
    driver.assert_loops_right(2)

    # WHEN the driver runs their tokens while 500 messages arrive in chunks
    loops_seen: set[str] = set()
    while driver.sent < MESSAGES or driver.backlog() > 0:
        driver.feed()
        record, result = driver.step()
        assert result["batchItemFailures"] == []
        assert [run["action"] for run in result["runs"]] == ["ran"]
        loops_seen.add(record["kinesis"]["partitionKey"])
        assert driver.invocations < 200, "the queue does not drain"
    # THEN every message was deleted, by two loops, still two with one token each
    assert driver.deleted >= MESSAGES
    assert len(loops_seen) == 2
    driver.assert_loops_right(2)

    # WHEN a token is delivered twice
    record, first = driver.step()
    second = driver.invoke(record)
    assert [run["action"] for run in first["runs"]] == ["ran"]
    # THEN the copy exits without re-putting
    assert [run["action"] for run in second["runs"]] == ["stale"]
    driver.assert_loops_right(2)

    # WHEN an invocation crashes right after its put_record, and the mapping retries it
    faults.crash_after_put = True
    driver.read()
    record = driver.pending.popleft()
    with pytest.raises(Crash):
        driver.invoke(record)
    retry = driver.invoke(record)
    # THEN the retry exits (its successor is on the stream) and nothing multiplied
    assert [run["action"] for run in retry["runs"]] == ["stale"]
    driver.assert_loops_right(2)

    # WHEN a put_record is lost
    faults.lose_put = True
    record, result = driver.step()
    assert result["runs"][0]["tokens"] == 1
    (lost,) = faults.lost
    # THEN that loop has no runnable token...
    assert lost.loop_id not in driver.current_tokens()
    # ...until the watchdog, past the heartbeat limit, re-seeds it with a new generation
    assert app.watchdog_handler({}, LambdaContext())["reseeded"] == []
    faults.clock_offset = float(setup.env["ASYNCLOOP_HEARTBEAT_LIMIT"]) + 1.0
    # (the other loop runs once past the limit too, so only the silent one is stale)
    record, result = driver.step()
    assert record["kinesis"]["partitionKey"] != lost.loop_id
    report = app.watchdog_handler({}, LambdaContext())
    assert report["reseeded"] == [lost.loop_id]
    assert driver.leases()[lost.loop_id] == lost.generation + 1
    driver.assert_loops_right(2)
    # AND the re-seeded loop runs again (its token is behind the other loop's)
    for _ in range(2):
        record, result = driver.step()
        assert [run["action"] for run in result["runs"]] == ["ran"]
    assert driver.leases()[lost.loop_id] == lost.generation + 2
    driver.assert_loops_right(2)

    # WHEN the kill switch is turned off with the CLI
    cli = ("--table", setup.table, "--endpoint-url", setup.endpoint, "--region", REGION)
    assert main(["loop", "stop", *cli]) == 0
    # THEN each loop ends at its next run, without re-putting
    actions = []
    while driver.current_tokens():
        _, result = driver.step()
        actions += [(run["action"], run["reason"]) for run in result["runs"]]
    assert actions == [("ended", "killed"), ("ended", "killed")]
    driver.read()
    assert not driver.pending
    assert driver.live_count() == 0
    assert driver.leases() == {}
    capsys.readouterr()
    assert main(["loop", "status", *cli, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status == {"enabled": False, "live": 0, "backlog": None, "loops": []}


# -- the DynamoDB store keeps the in-memory store's rules -----------------------------------


async def script(store: Any) -> list[Any]:
    """Every lease operation, in the orders that matter; what each answered."""
    t0 = 1_000.0
    out: list[Any] = [await store.get_control()]
    await store.set_enabled(True)
    out.append(await store.spawn("a", now=t0, max_loops=2))
    out.append(await store.spawn("b", now=t0, max_loops=2))
    out.append(await store.spawn("c", now=t0, max_loops=2))  # over the cap
    out.append(await store.spawn("a", now=t0, max_loops=3))  # exists
    a0, b0 = LoopToken("a", 0), LoopToken("b", 0)
    await store.mark_put(a0)
    out.append((await store.claim(a0, now=t0 + 1, run_until=t0 + 61))[0])  # claimed
    out.append((await store.claim(a0, now=t0 + 2, run_until=t0 + 62))[0])  # stale: running
    out.append((await store.claim(a0, now=t0 + 70, run_until=t0 + 130))[0])  # takeover
    await store.mark_put(LoopToken("a", 1), empty_generations=2)
    out.append((await store.claim(a0, now=t0 + 200, run_until=t0 + 260))[0])  # stale: put
    out.append((await store.claim(b0, now=t0 + 3, run_until=t0 + 63))[0])  # claimed
    await store.release("b", 1)
    out.append((await store.claim(b0, now=t0 + 4, run_until=t0 + 64))[0])  # takeover
    out.append((await store.claim(LoopToken("zz", 0), now=t0, run_until=t0))[0])  # unknown
    items = {item.loop_id: item for item in await store.list_leases()}
    out.append(await store.reseed(items["a"], now=t0 + 500))
    out.append(await store.reseed(items["a"], now=t0 + 501))  # changed since read
    out.append(await store.end("a", 1, floor=0))  # wrong generation
    out.append(await store.end("a", 2, floor=1))
    out.append(await store.end("b", 1, floor=1))  # at the floor
    await store.set_enabled(False)
    out.append(await store.spawn("d", now=t0, max_loops=5))  # switched off
    out.append(await store.get_control())
    out.append(sorted(await store.list_leases(), key=lambda item: item.loop_id))
    return out


@pytest.mark.asyncio
async def test_dynamodb_lease_store_answers_as_the_in_memory_one(setup: Setup) -> None:
    from asyncloop._aws import AwsClients
    from asyncloop._config import AwsConfig
    from asyncloop._loop.lease import InMemoryLeaseStore
    from asyncloop._loop.lease_dynamodb import DynamoLeaseStore

    expected = await script(InMemoryLeaseStore())
    config = AwsConfig(region=REGION, endpoint_url=setup.endpoint, max_attempts=2)
    async with AwsClients(config, pool_size=4) as clients:
        store = DynamoLeaseStore(await clients.client("dynamodb"), unique_name("parity"))
        await store.create_table()
        got = await script(store)

    assert got == expected
    # And the script did reach every outcome
    assert {"claimed", "stale", "takeover", "unknown"} <= set(map(str, expected))


def test_cli_start_creates_the_table_and_seeds_loops(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    table = unique_name("fresh")
    cli = ("--table", table, "--endpoint-url", setup.endpoint, "--region", REGION)

    code = main(["loop", "start", *cli, "--stream", setup.stream, "--loops", "2", "--create-table"])

    assert code == 0
    assert "started 2 loop(s); 2 live" in capsys.readouterr().out
    setup.sqs.send_message(QueueUrl=setup.queue_url, MessageBody="waiting")
    assert main(["loop", "status", *cli, "--queue-url", setup.queue_url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["enabled"], status["live"], len(status["loops"])) == (True, 2, 2)
    assert status["backlog"] == 1
    assert main(["loop", "status", *cli, "--queue-url", setup.queue_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "switch on; 2 live loop(s); backlog 1"
    assert len(lines) == 3
    assert all("generation 0" in line for line in lines[1:])
    assert all(loop["generation"] == 0 for loop in status["loops"])


def test_cli_reports_a_missing_table_in_one_line(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = ("--table", "no-such-table", "--endpoint-url", setup.endpoint, "--region", REGION)

    code = main(["loop", "status", *cli])

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("asyncloop: error: ")
    assert err.count("\n") == 1


# -- the seed's worker against moto ---------------------------------------------------------


@pytest.fixture
def shared_handlers(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The module's shared loop and clients, pointed at moto, closed afterwards."""
    import asyncloop.lambda_handler as lh

    monkeypatch.setenv("ASYNCLOOP_ENDPOINT_URL", setup.endpoint)
    monkeypatch.setenv("ASYNCLOOP_REGION", REGION)
    lh._close_shared()
    yield
    lh._close_shared()


def test_the_worker_deletes_what_the_dispatcher_sent_and_keeps_what_failed(
    setup: Setup, shared_handlers: None
) -> None:
    import asyncloop.lambda_handler as lh
    from asyncloop._payload import build_payload
    from asyncloop._types import Message

    # GIVEN two messages received from moto, as the loop's dispatcher would send them
    setup.sqs.send_message(QueueUrl=setup.queue_url, MessageBody="good")
    setup.sqs.send_message(QueueUrl=setup.queue_url, MessageBody="bad")
    received = setup.sqs.receive_message(
        QueueUrl=setup.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    )["Messages"]
    assert len(received) == 2
    payloads = {
        m["Body"]: json.loads(
            build_payload(
                Message(
                    message_id=m["MessageId"],
                    receipt_handle=m["ReceiptHandle"],
                    body=m["Body"],
                    md5_of_body=m["MD5OfBody"],
                ),
                queue_url=setup.queue_url,
                payload="seed",
            )
        )
        for m in received
    }
    seen: list[str] = []

    def func(message: Message) -> None:
        seen.append(message.body)
        if message.body == "bad":
            raise ValueError("bad message")

    handler = lh.worker(func)
    # WHEN the worker handles each
    assert handler(payloads["good"], LambdaContext())["deleted"] == [
        next(m["MessageId"] for m in received if m["Body"] == "good")
    ]
    with pytest.raises(HandlerFailed):
        handler(payloads["bad"], LambdaContext())
    # THEN the good one is gone from the queue and the bad one is still there (in flight)
    assert seen == ["good", "bad"]
    attributes = setup.sqs.get_queue_attributes(
        QueueUrl=setup.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert int(attributes["ApproximateNumberOfMessages"]) == 0
    assert int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 1


@pytest.mark.asyncio
async def test_the_loops_consumer_is_wired_by_the_factory_with_the_queues_timeout(
    setup: Setup, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the loop's settings from its environment (the queue's VisibilityTimeout is 10 s,
    # nothing configures one) and a transport by ASYNCLOOP_TRANSPORT
    settings = LoopSettings.from_env({**setup.env, "ASYNCLOOP_TRANSPORT": transport})
    caplog.set_level(logging.INFO, logger="asyncloop")
    # WHEN its runtime is built and one short run consumes
    async with AsyncExitStack() as stack:
        runtime = await build_aws_runtime(settings, stack)
        await runtime.consume(0.2)
    # THEN the run's consumer started with its heartbeat on, the wiring having read the
    # queue's timeout, on the transport asked for
    assert "heartbeat=True" in caplog.text
    assert f"transport={transport} visibility_timeout=10" in caplog.text
