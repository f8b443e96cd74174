"""The Lambda entry points: the worker, the SQS batch handler, the loop and watchdog handlers.

The handlers are synchronous (Lambda calls them so) and run their work on the module's one
event loop, so these tests are plain functions, not coroutines.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _events import (
    LambdaContext,
    kinesis_event,
    kinesis_record,
    seed_payload,
    sqs_event,
    sqs_record,
)

import asyncloop.lambda_handler as lh
from asyncloop import ConfigError, HandlerFailed, Message, TransportError
from asyncloop._lease import InMemoryLeaseStore
from asyncloop._loop_control import LoopToken
from asyncloop._loop_runner import LoopApp, LoopRuntime, LoopSettings

LOOP_ENV = {
    "ASYNCLOOP_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/work",
    "ASYNCLOOP_FUNCTION_NAME": "worker",
    "ASYNCLOOP_LEASE_TABLE": "leases",
    "ASYNCLOOP_STREAM_NAME": "tokens",
}


@pytest.fixture(autouse=True, scope="module")
def _shared_loop_closed_after() -> Iterator[None]:
    """The handlers keep one event loop for the process; close it when these tests are done."""
    yield
    lh._close_shared()


@pytest.fixture
def context() -> Callable[..., LambdaContext]:
    """``context(remaining_s=60.0)``: a Lambda context counting down from `remaining_s`."""
    return LambdaContext


# -- the module -----------------------------------------------------------------------------


def test_all_lists_exactly_the_public_entry_points() -> None:
    public = {
        name
        for name, value in vars(lh).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", "") == lh.__name__
    }
    assert set(lh.__all__) == public | {"example_worker"}
    assert isinstance(lh.__all__, tuple)


def test_importing_the_entry_points_loads_no_aws_sdk() -> None:
    # Cold start: botocore and aioboto3 load on the first invocation, not at import
    code = (
        "import sys, asyncloop.lambda_handler; "
        "print(sorted(m for m in ('botocore', 'aioboto3', 'aiobotocore', 'aiohttp') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# -- worker ---------------------------------------------------------------------------------


class Deletes:
    def __init__(self, *, succeed: bool = True) -> None:
        self.calls: list[tuple[str, str]] = []
        self.succeed = succeed

    async def __call__(self, queue_url: str, receipt_handle: str) -> bool:
        self.calls.append((queue_url, receipt_handle))
        return self.succeed


def test_worker_deletes_the_message_when_the_function_returns(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN a worker around a function that records its messages
    seen: list[Message] = []
    deletes = Deletes()
    handler = lh.worker(seen.append, delete=deletes)
    event = seed_payload("hello", message_id="m-1", receipt_handle="rh-1")
    # WHEN Lambda invokes it with the seed's payload
    result = handler(event, context())
    # THEN the function got the message and the message was deleted with its receipt handle
    assert [(m.message_id, m.body) for m in seen] == [("m-1", "hello")]
    assert deletes.calls == [(event["Records"][0]["sqs"]["QueueUrl"], "rh-1")]
    assert result == {"deleted": ["m-1"], "delete_failed": []}


def test_worker_leaves_the_message_and_raises_when_the_function_fails(
    context: Callable[..., LambdaContext],
) -> None:
    def fail(message: Message) -> None:
        raise RuntimeError("boom")

    deletes = Deletes()
    handler = lh.worker(fail, delete=deletes)

    with pytest.raises(HandlerFailed, match="1 of 1 messages failed") as caught:
        handler(seed_payload("x", message_id="m-2"), context())

    assert caught.value.message_id == "m-2"
    assert deletes.calls == []


def test_worker_awaits_a_coroutine_returned_by_a_sync_wrapper(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN a worker around a lambda whose async function fails
    async def fail(message: Message) -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("boom")

    deletes = Deletes()
    handler = lh.worker(lambda m: fail(m), delete=deletes)
    # WHEN it runs, THEN the failure counts and the message is not deleted
    with pytest.raises(HandlerFailed, match="1 of 1 messages failed"):
        handler(seed_payload("x", message_id="m-5"), context())
    assert deletes.calls == []


def test_worker_refuses_a_body_that_does_not_match_its_md5(
    context: Callable[..., LambdaContext],
) -> None:
    seen: list[Message] = []
    deletes = Deletes()
    handler = lh.worker(seen.append, delete=deletes)

    with pytest.raises(HandlerFailed):
        handler(seed_payload("x", md5="0" * 32), context())

    assert seen == []
    assert deletes.calls == []


def test_worker_reports_a_failed_delete_without_running_the_function_again(
    context: Callable[..., LambdaContext],
) -> None:
    handler = lh.worker(lambda m: None, delete=Deletes(succeed=False))

    result = handler(seed_payload("x", message_id="m-3"), context())

    assert result == {"deleted": [], "delete_failed": ["m-3"]}


def test_worker_rejects_a_payload_that_is_not_the_seeds(
    context: Callable[..., LambdaContext],
) -> None:
    handler = lh.worker(lambda m: None, delete=Deletes())

    with pytest.raises(ValueError, match="Records"):
        handler({"hello": "world"}, context())


def test_warm_invocations_share_one_event_loop(context: Callable[..., LambdaContext]) -> None:
    # GIVEN an async function that notes the running loop
    loops: list[asyncio.AbstractEventLoop] = []

    async def note(message: Message) -> None:
        loops.append(asyncio.get_running_loop())

    handler = lh.worker(note, delete=Deletes())
    # WHEN the handler is invoked twice
    handler(seed_payload("a"), context())
    handler(seed_payload("b"), context())
    # THEN both ran on the same, still open, loop (asyncio.run would have closed the first)
    assert len(loops) == 2
    assert loops[0] is loops[1]
    assert not loops[0].is_closed()


def test_example_worker_logs_ids_not_bodies(
    context: Callable[..., LambdaContext], capsys: pytest.CaptureFixture[str]
) -> None:
    handler = lh.worker(lh._log_message, delete=Deletes())

    handler(seed_payload("TOP-SECRET", message_id="m-4"), context())

    out = capsys.readouterr().out
    assert "m-4" in out
    assert "TOP-SECRET" not in out


# -- sqs_batch_handler ----------------------------------------------------------------------


def test_batch_concurrency_is_bounded(context: Callable[..., LambdaContext]) -> None:
    # GIVEN 20 records and a function that yields while it runs
    running = 0
    peak = 0

    async def work(message: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        running -= 1

    handler = lh.sqs_batch_handler(work, max_concurrency=3)
    # WHEN the batch runs
    result = handler(sqs_event([sqs_record(f"b{i}") for i in range(20)]), context())
    # THEN at most (and here exactly) 3 ran at once, and none failed
    assert peak == 3
    assert result == {"batchItemFailures": []}


def test_batch_reports_exactly_the_failed_records(context: Callable[..., LambdaContext]) -> None:
    records = [sqs_record(body, message_id=body) for body in ("ok-1", "bad-1", "ok-2", "bad-2")]

    def work(message: Message) -> None:
        if message.body.startswith("bad"):
            raise ValueError(message.body)

    result = lh.sqs_batch_handler(work, max_concurrency=2)(sqs_event(records), context())

    assert result == {
        "batchItemFailures": [{"itemIdentifier": "bad-1"}, {"itemIdentifier": "bad-2"}]
    }


def test_batch_awaits_a_coroutine_returned_by_a_sync_function(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN a lambda around an async function that fails on one record and notes the others
    ran: list[str] = []

    async def work(message: Message) -> None:
        await anyio.lowlevel.checkpoint()
        if message.body == "bad":
            raise ValueError("bad")
        ran.append(message.body)

    records = [sqs_record(b, message_id=b) for b in ("ok", "bad")]
    # WHEN the batch runs
    result = lh.sqs_batch_handler(lambda m: work(m))(sqs_event(records), context())
    # THEN the coroutines ran, and the failed one is reported for redelivery
    assert ran == ["ok"]
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}]}


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ([], "must be a JSON object"),
        ({"Records": "x"}, "must have a 'Records' list"),
        ({"Records": [{}]}, r"Records\[0\].messageId must be a non-empty string"),
        ({"Records": ["x"]}, r"Records\[0\] must be an object"),
    ],
)
def test_batch_rejects_a_malformed_event_with_a_clear_error(
    event: Any, error: str, context: Callable[..., LambdaContext]
) -> None:
    handler = lh.sqs_batch_handler(lambda message: None)
    with pytest.raises(ValueError, match=error):
        handler(event, context())


def test_batch_reports_malformed_records_as_failures_and_runs_the_rest(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN one good record and one whose body is missing
    good = sqs_record("fine", message_id="good")
    broken = {**sqs_record("x", message_id="broken"), "body": None}
    seen: list[str] = []
    # WHEN the batch runs
    result = lh.sqs_batch_handler(lambda m: seen.append(m.message_id))(
        sqs_event([good, broken]), context()
    )
    # THEN the good one ran and the broken one goes back to SQS
    assert seen == ["good"]
    assert result == {"batchItemFailures": [{"itemIdentifier": "broken"}]}


def test_fifo_fails_the_rest_of_a_group_after_its_first_failure(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN a FIFO batch of two groups, the first failing on its second record
    records = [
        sqs_record("a1", message_id="a1", group_id="A", queue="work.fifo"),
        sqs_record("b1", message_id="b1", group_id="B", queue="work.fifo"),
        sqs_record("a2", message_id="a2", group_id="A", queue="work.fifo"),
        sqs_record("b2", message_id="b2", group_id="B", queue="work.fifo"),
        sqs_record("a3", message_id="a3", group_id="A", queue="work.fifo"),
    ]
    calls: list[str] = []

    async def work(message: Message) -> None:
        calls.append(message.body)
        await anyio.lowlevel.checkpoint()
        if message.body == "a2":
            raise RuntimeError("a2 failed")

    # WHEN it runs
    result = lh.sqs_batch_handler(work, max_concurrency=4)(sqs_event(records), context())
    # THEN a2 and the unstarted a3 are reported; group B is untouched; each group kept its order
    assert result == {"batchItemFailures": [{"itemIdentifier": "a2"}, {"itemIdentifier": "a3"}]}
    assert "a3" not in calls
    assert [c for c in calls if c.startswith("a")] == ["a1", "a2"]
    assert [c for c in calls if c.startswith("b")] == ["b1", "b2"]


def test_message_groups_on_a_standard_queue_keep_no_order_and_fail_alone(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN a standard queue's batch whose records carry a group id (fair queues)
    records = [sqs_record(b, message_id=b, group_id="A") for b in ("x1", "bad", "x2")]

    def work(message: Message) -> None:
        if message.body == "bad":
            raise ValueError("bad")

    result = lh.sqs_batch_handler(work)(sqs_event(records), context())

    # THEN only the failed record is reported
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}]}


def test_records_not_started_before_the_deadline_are_failures(
    context: Callable[..., LambdaContext],
) -> None:
    calls: list[str] = []
    handler = lh.sqs_batch_handler(lambda m: calls.append(m.body), start_margin=2.0)

    result = handler(sqs_event([sqs_record("x", message_id="x")]), context(remaining_s=2.0))

    assert result == {"batchItemFailures": [{"itemIdentifier": "x"}]}
    assert calls == []


def test_a_record_still_running_at_the_deadline_is_cancelled_and_reported(
    context: Callable[..., LambdaContext],
) -> None:
    # GIVEN one lane: a quick record, one that never finishes, one behind it
    records = [sqs_record(b, message_id=b) for b in ("quick", "stuck", "behind")]
    cancelled: list[str] = []

    async def work(message: Message) -> None:
        if message.body == "stuck":
            try:
                await anyio.Event().wait()
            finally:
                cancelled.append(message.body)

    handler = lh.sqs_batch_handler(work, max_concurrency=1, start_margin=0.2, cancel_margin=0.1)
    # WHEN the invocation's time runs out
    result = handler(sqs_event(records), context(remaining_s=0.3))
    # THEN the stuck one was cancelled; it and the unstarted one are failures, the quick one not
    assert cancelled == ["stuck"]
    assert result == {
        "batchItemFailures": [{"itemIdentifier": "stuck"}, {"itemIdentifier": "behind"}]
    }


def test_batch_handler_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"max_concurrency must be in 1\.\.10000, got 0"):
        lh.sqs_batch_handler(lambda m: None, max_concurrency=0)


# -- loop_handler and watchdog_handler ------------------------------------------------------


class Stream:
    """A token stream that records puts and can fail them."""

    def __init__(self) -> None:
        self.tokens: list[LoopToken] = []
        self.failing = False

    async def put(self, token: LoopToken) -> None:
        if self.failing:
            raise TransportError("stream down", operation="PutRecord", retryable=True)
        self.tokens.append(token)


class Fakes:
    def __init__(self) -> None:
        self.store = InMemoryLeaseStore()
        self.stream = Stream()
        self.builds = 0
        self.closed = 0
        self.consumed: list[float] = []

    async def factory(self, settings: LoopSettings, stack: AsyncExitStack) -> LoopRuntime:
        self.builds += 1
        stack.callback(self._closed)

        async def consume(run_for: float) -> Mapping[str, int]:
            self.consumed.append(run_for)
            return {"received": 1, "succeeded": 1, "deleted": 1}

        async def backlog() -> int:
            return 0

        async def no_wait(seconds: float) -> None:
            pass

        return LoopRuntime(
            lease=self.store,
            sink=self.stream,
            consume=consume,
            backlog=backlog,
            policy=settings.policy,
            margin=settings.margin,
            sleep=no_wait,
            write=lambda line: None,
        )

    def _closed(self) -> None:
        self.closed += 1


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def app(fakes: Fakes) -> Iterator[LoopApp]:
    app = LoopApp(environ=LOOP_ENV, runtime_factory=fakes.factory)
    yield app
    app.close()


def token_event(*tokens: LoopToken) -> dict[str, Any]:
    return kinesis_event(
        *(kinesis_record(t.encode(), partition_key=t.partition_key) for t in tokens)
    )


def test_loop_handler_runs_a_token_and_re_triggers(
    app: LoopApp, fakes: Fakes, context: Callable[..., LambdaContext]
) -> None:
    # GIVEN a started loop
    started = app.loop_handler({"action": "start", "loops": 1}, context())
    (loop_id,) = started["started"]
    first = fakes.stream.tokens.pop()
    # WHEN its token arrives as a Kinesis record, with 60 s left
    result = app.loop_handler(token_event(first), context(remaining_s=60.0))
    # THEN it consumed for the time less the margin and put the next generation
    assert result["batchItemFailures"] == []
    assert fakes.stream.tokens == [LoopToken(loop_id, 1)]
    margin = LoopSettings.from_env(LOOP_ENV).margin
    assert fakes.consumed[0] == pytest.approx(60.0 - margin, abs=0.5)
    # AND the runtime was built once and kept for the next invocation
    app.loop_handler(token_event(LoopToken(loop_id, 1)), context())
    assert fakes.builds == 1
    assert fakes.stream.tokens == [LoopToken(loop_id, 1), LoopToken(loop_id, 2)]


def test_loop_handler_ignores_duplicates_and_stray_records(
    app: LoopApp, fakes: Fakes, context: Callable[..., LambdaContext]
) -> None:
    app.loop_handler({"action": "start", "loops": 1}, context())
    first = fakes.stream.tokens.pop()
    app.loop_handler(token_event(first), context())
    fakes.stream.tokens.clear()
    stray = kinesis_record(b"hello", partition_key="x")

    result = app.loop_handler(kinesis_event(stray, *token_event(first)["Records"]), context())

    assert result["batchItemFailures"] == []
    assert [run["action"] for run in result["runs"]] == ["stale"]
    assert fakes.stream.tokens == []


def test_loop_handler_fails_the_record_when_it_cannot_re_trigger(
    app: LoopApp, fakes: Fakes, context: Callable[..., LambdaContext]
) -> None:
    app.loop_handler({"action": "start", "loops": 1}, context())
    first = fakes.stream.tokens.pop()
    fakes.stream.failing = True
    # WHEN every put fails, the mapping must retry the record: the handler raises
    with pytest.raises(Exception, match="failed to re-trigger"):
        app.loop_handler(token_event(first), context())
    # THEN the retry, once the stream is back, takes over and re-triggers
    fakes.stream.failing = False
    result = app.loop_handler(token_event(first), context())
    assert result["runs"][0]["claim"] == "takeover"
    assert fakes.stream.tokens == [LoopToken(first.loop_id, 1)]


def test_a_direct_invoke_with_a_token_runs_it(
    app: LoopApp, fakes: Fakes, context: Callable[..., LambdaContext]
) -> None:
    app.loop_handler({"action": "start", "loops": 1}, context())
    first = fakes.stream.tokens.pop()

    result = app.loop_handler(json.loads(first.encode()), context())

    assert result["runs"][0]["action"] == "ran"


def test_watchdog_handler_starts_min_loops(
    app: LoopApp, fakes: Fakes, context: Callable[..., LambdaContext]
) -> None:
    fakes.store.enabled = True

    report = app.watchdog_handler({"source": "aws.events"}, context())

    assert len(report["spawned"]) == 1
    assert fakes.store.live == 1


def test_close_releases_the_runtime(fakes: Fakes, context: Callable[..., LambdaContext]) -> None:
    app = LoopApp(environ=LOOP_ENV, runtime_factory=fakes.factory)
    app.watchdog_handler({}, context())

    app.close()

    assert fakes.closed == 1


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("ASYNCLOOP_QUEUE_URL", "ASYNCLOOP_QUEUE_URL is not set"),
        ("ASYNCLOOP_LEASE_TABLE", "ASYNCLOOP_LEASE_TABLE is not set"),
        ("ASYNCLOOP_STREAM_NAME", "ASYNCLOOP_STREAM_NAME is not set"),
        ("ASYNCLOOP_FUNCTION_NAME", "ASYNCLOOP_FUNCTION_NAME is not set"),
    ],
)
def test_a_missing_variable_is_named(
    missing: str, message: str, fakes: Fakes, context: Callable[..., LambdaContext]
) -> None:
    env = {k: v for k, v in LOOP_ENV.items() if k != missing}
    app = LoopApp(environ=env, runtime_factory=fakes.factory)
    try:
        with pytest.raises(ConfigError, match=message):
            app.watchdog_handler({}, context())
        assert fakes.builds == 0
    finally:
        app.close()


def test_a_bad_value_is_named(fakes: Fakes, context: Callable[..., LambdaContext]) -> None:
    env = {**LOOP_ENV, "ASYNCLOOP_MAX_LOOPS": "0"}
    app = LoopApp(environ=env, runtime_factory=fakes.factory)
    try:
        with pytest.raises(ConfigError, match=r"ASYNCLOOP_MAX_LOOPS must be in 1\.\.1000, got 0"):
            app.watchdog_handler({}, context())
    finally:
        app.close()


def test_metrics_go_to_the_namespace_the_template_names() -> None:
    settings = LoopSettings.from_env({**LOOP_ENV, "ASYNCLOOP_METRICS_NAMESPACE": "orders"})

    assert settings.metrics_namespace == "orders"
    assert LoopSettings.from_env(LOOP_ENV).metrics_namespace == "asyncloop"


def test_lambda_sized_defaults_unless_set() -> None:
    settings = LoopSettings.from_env({**LOOP_ENV, "ASYNCLOOP_WAIT_TIME_SECONDS": "10"})
    assert settings.consumer.shutdown_grace == 5.0
    assert (settings.aws.connect_timeout, settings.aws.read_timeout) == (2.0, 15.0)
    env = {**LOOP_ENV, "ASYNCLOOP_SHUTDOWN_GRACE": "1.5", "ASYNCLOOP_READ_TIMEOUT": "40"}
    settings = LoopSettings.from_env(env)
    assert (settings.consumer.shutdown_grace, settings.aws.read_timeout) == (1.5, 40.0)


def test_module_loop_handler_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, context: Callable[..., LambdaContext]
) -> None:
    monkeypatch.setattr(lh, "_app", None)
    monkeypatch.delenv("ASYNCLOOP_QUEUE_URL", raising=False)

    with pytest.raises(ConfigError, match="ASYNCLOOP_QUEUE_URL is not set"):
        lh.loop_handler(token_event(LoopToken("L", 0)), context())
