"""The Lambda facade (`asyncloop.lambda_handler`) and the loop and watchdog handlers.

The worker and the SQS batch handler are tested in test_handlers.py.

The handlers are synchronous (Lambda calls them so) and run their work on the module's one
event loop, so these tests are plain functions, not coroutines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from typing import Any

import pytest
from _events import (
    LambdaContext,
    kinesis_event,
    kinesis_record,
)
from _fresh_imports import loaded_after

import asyncloop.lambda_handler as lh
from asyncloop import ConfigError, TransportError
from asyncloop._loop.app import LoopApp
from asyncloop._loop.control import LoopToken
from asyncloop._loop.lease import InMemoryLeaseStore
from asyncloop._loop.runner import LoopRuntime
from asyncloop._loop.settings import LoopSettings

LOOP_ENV = {
    "ASYNCLOOP_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/work",
    "ASYNCLOOP_FUNCTION_NAME": "worker",
    "ASYNCLOOP_LEASE_TABLE": "leases",
    "ASYNCLOOP_STREAM_NAME": "tokens",
}


pytestmark = pytest.mark.usefixtures("lambda_process")


# -- the module -----------------------------------------------------------------------------


def test_all_lists_exactly_the_public_entry_points() -> None:
    public = {
        name
        for name, value in vars(lh).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", "") in (lh.__name__, "asyncloop._handlers")
    }
    assert set(lh.__all__) == public | {"example_worker"}
    assert isinstance(lh.__all__, tuple)


def test_importing_the_entry_points_loads_no_aws_sdk_nor_the_loop() -> None:
    # GIVEN a fresh interpreter / WHEN it imports the entry points
    loaded = loaded_after(
        "import asyncloop.lambda_handler",
        (
            *("botocore", "aioboto3", "aiobotocore", "aiohttp"),
            *("asyncloop._loop", "asyncloop._deploy", "asyncloop._aws", "asyncloop.testing"),
        ),
    )
    # THEN no AWS SDK (most of a cold start), and not the Kinesis loop (the worker function
    # never runs it), packaging or the fakes: they load on the first invocation that needs them
    assert loaded == []


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
