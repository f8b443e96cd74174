"""Payload shapes and the dispatchers' success/failure contract, on FakeLambda."""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from _consumer_helpers import consumer_of

from asyncloop import (
    CallableDispatcher,
    ConfigError,
    Consumer,
    ConsumerConfig,
    DispatchError,
    DispatchThrottled,
    HandlerFailed,
    InvokeResult,
    LambdaConfig,
    LambdaDispatcher,
    Message,
    PayloadTooLarge,
)
from asyncloop._dispatch import load_handler
from asyncloop._payload import build_payload, parse_seed_payload, queue_arn
from asyncloop.testing import FakeLambda, FakeQueue, FaultPlan

URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
MakeMessage = Callable[..., Message]


def test_seed_payload_is_exactly_the_seeds_shape(make_message: MakeMessage) -> None:
    message = make_message("body ü")
    payload = json.loads(build_payload(message, queue_url=URL, payload="seed"))
    assert payload == {
        "Records": [
            {
                "sqs": {
                    "QueueUrl": URL,
                    "MessageId": message.message_id,
                    "ReceiptHandle": message.receipt_handle,
                    "MD5OfBody": message.md5_of_body,
                    "Body": "body ü",
                }
            }
        ]
    }
    assert parse_seed_payload(payload)[0]["Body"] == "body ü"


def test_sqs_event_payload_matches_lambdas_record_shape(make_message: MakeMessage) -> None:
    message = make_message("x")
    message.message_attributes = {
        "kind": {"StringValue": "order", "DataType": "String"},
        "blob": {"BinaryValue": b"\x00\x01", "DataType": "Binary"},
    }
    record = json.loads(build_payload(message, queue_url=URL, payload="sqs-event"))["Records"][0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:eu-west-1:123456789012:orders"
    assert record["awsRegion"] == "eu-west-1"
    assert record["messageId"] == message.message_id
    assert record["receiptHandle"] == message.receipt_handle
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["kind"]["stringValue"] == "order"
    assert base64.b64decode(record["messageAttributes"]["blob"]["binaryValue"]) == b"\x00\x01"


def test_queue_arn_for_emulator_urls_uses_the_given_region() -> None:
    assert queue_arn("http://127.0.0.1:5000/000000000000/q", "ap-south-1") == (
        "arn:aws:sqs:ap-south-1:000000000000:q"
    )


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ([], "must be a JSON object"),
        ({}, "non-empty 'Records'"),
        ({"Records": [{}]}, "must have an 'sqs' object"),
        ({"Records": [{"sqs": {"QueueUrl": URL}}]}, "MessageId must be a string"),
    ],
)
def test_parse_seed_payload_rejects_malformed_events(event: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_seed_payload(event)


def _dispatcher(fake: FakeLambda, **config: Any) -> LambdaDispatcher:
    return LambdaDispatcher(
        invoker=fake, config=LambdaConfig(function_name="worker", **config), queue_url=URL
    )


@pytest.mark.asyncio
async def test_event_invoke_sends_one_seed_record(make_message: MakeMessage) -> None:
    received: list[Any] = []
    fake = FakeLambda()
    fake.add_function("worker", received.append)
    await _dispatcher(fake).dispatch(make_message("hello"))
    assert fake.invocations["worker"] == 1
    assert received[0]["Records"][0]["sqs"]["Body"] == "hello"


@pytest.mark.asyncio
async def test_function_error_is_a_handler_failure(make_message: MakeMessage) -> None:
    def boom(event: Any) -> None:
        raise RuntimeError("x")

    fake = FakeLambda()
    fake.add_function("worker", boom)
    with pytest.raises(HandlerFailed, match="Unhandled"):
        await _dispatcher(fake, invocation_type="RequestResponse").dispatch(make_message())


@pytest.mark.asyncio
async def test_throttle_is_dispatch_throttled(make_message: MakeMessage) -> None:
    fake = FakeLambda(faults=FaultPlan(throttles={"Invoke": 1.0}))
    fake.add_function("worker")
    message = make_message()
    with pytest.raises(DispatchThrottled) as raised:
        await _dispatcher(fake).dispatch(message)
    assert raised.value.message_id == message.message_id
    assert raised.value.__cause__ is not None


@pytest.mark.asyncio
async def test_unexpected_status_is_a_failure(make_message: MakeMessage) -> None:
    class OddInvoker:
        async def invoke(self, **kwargs: Any) -> InvokeResult:
            return InvokeResult(200)

    dispatcher = LambdaDispatcher(
        invoker=OddInvoker(), config=LambdaConfig(function_name="f"), queue_url=URL
    )
    with pytest.raises(DispatchError, match="answered 200, expected 202"):
        await dispatcher.dispatch(make_message())


@pytest.mark.asyncio
async def test_payload_over_the_limit_is_refused_before_invoking(
    make_message: MakeMessage,
) -> None:
    fake = FakeLambda()
    fake.add_function("worker")
    dispatcher = LambdaDispatcher(
        invoker=fake,
        config=LambdaConfig(function_name="worker"),
        queue_url=URL,
        event_payload_limit=1000,
    )
    with pytest.raises(PayloadTooLarge):
        await dispatcher.dispatch(make_message("x" * 2000))
    assert fake.invocations["worker"] == 0


@pytest.mark.asyncio
async def test_sync_callable_runs_in_a_worker_thread(make_message: MakeMessage) -> None:
    threads: list[int] = []
    dispatcher = CallableDispatcher(lambda m: threads.append(threading.get_ident()))
    await dispatcher.dispatch(make_message())
    assert threads
    assert threads[0] != threading.get_ident()
    assert dispatcher.operation is None


@pytest.mark.asyncio
async def test_callable_exception_becomes_handler_failed(make_message: MakeMessage) -> None:
    async def fail(message: Message) -> None:
        raise KeyError("k")

    with pytest.raises(HandlerFailed) as raised:
        await CallableDispatcher(fail).dispatch(make_message())
    assert isinstance(raised.value.__cause__, KeyError)


# -- a sync handler that returns an awaitable: awaited, never dropped ----------------------


def _sync_wrapper(func: Callable[[Message], Any]) -> Callable[[Message], Any]:
    """A decorator as users write them: sync, `functools.wraps`, returns what `func` returns."""

    @functools.wraps(func)
    def wrapper(message: Message) -> Any:
        return func(message)

    return wrapper


@pytest.mark.asyncio
async def test_a_coroutine_returned_by_a_sync_handler_is_awaited(
    make_message: MakeMessage,
) -> None:
    # GIVEN a lambda around an async function (sync to inspect, so it runs in a thread)
    ran: list[str] = []

    async def work(message: Message) -> None:
        await anyio.lowlevel.checkpoint()
        ran.append(message.message_id)

    message = make_message()
    dispatcher = CallableDispatcher(lambda m: work(m))
    # WHEN a message is dispatched
    await dispatcher.dispatch(message)
    # THEN the async function's body ran before the dispatch returned
    assert ran == [message.message_id]


@pytest.mark.asyncio
async def test_a_failing_coroutine_returned_by_a_sync_wrapper_leaves_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a functools.wraps wrapper around an async function that fails
    @_sync_wrapper
    async def work(message: Message) -> None:
        raise RuntimeError("the work failed")

    queue = FakeQueue(visibility_timeout=30)
    message_id = queue.send("x")
    caplog.set_level(logging.INFO, logger="asyncloop")
    # WHEN the consumer runs it until the queue answers empty
    stats = await Consumer(
        queue=queue,
        dispatcher=CallableDispatcher(work),
        config=ConsumerConfig(wait_time_seconds=0, receivers=1, until_empty=True),
    ).run()
    # THEN the dispatch failed and the message is still in the queue (not deleted)
    assert (stats.failed, stats.succeeded, stats.deleted) == (1, 0, 0)
    assert queue.message_ids() == {message_id}
    # AND the log says once how the handler is run (no body in it)
    notes = [r for r in caplog.records if "returned an awaitable" in r.getMessage()]
    assert len(notes) == 1
    assert "work" in notes[0].getMessage()


def test_load_handler() -> None:
    import os

    assert load_handler("os:getcwd") is os.getcwd
    assert load_handler("os.path:join") is os.path.join
    for bad in ("os", ":x", "os:", "os:no_such_attr", "no_such_module_q:f", "os:sep"):
        with pytest.raises(ConfigError):
            load_handler(bad)


# -- a sync handler that blocks: abandoned on cancel, its message released -----------------


class Blocker:
    """A sync handler that blocks on messages whose body is "block" until `gate` is set;
    other messages it records in `done`. `finished` is set when a blocked call returns."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.gate = threading.Event()
        self.finished = threading.Event()
        self.done: list[str] = []

    def __call__(self, message: Message) -> None:
        if message.body != "block":
            self.done.append(message.body)
            return
        self.started.set()
        self.gate.wait()
        self.finished.set()


@pytest.fixture
def blocker() -> Iterator[Blocker]:
    """A `Blocker` whose events are all set at teardown, so a failing (or timed-out) test
    never leaves a thread blocked for ever."""
    handler = Blocker()
    yield handler
    handler.started.set()
    handler.gate.set()


def _one_blocking_message() -> tuple[FakeQueue, str]:
    queue = FakeQueue(visibility_timeout=30)
    return queue, queue.send("block")


@pytest.mark.asyncio
async def test_stop_abandons_a_blocked_sync_handler_after_the_grace(blocker: Blocker) -> None:
    # GIVEN a sync handler blocked until the test lets it go, which it does only once run()
    # returned (so a stop that waits for the thread hangs instead of passing)
    queue, message_id = _one_blocking_message()
    consumer = consumer_of(queue, blocker, receivers=1, shutdown_grace=0.05)

    async def stop_once_started() -> None:
        await anyio.to_thread.run_sync(blocker.started.wait)
        consumer.stop()

    # WHEN stop() is called while the handler runs
    async with anyio.create_task_group() as group:
        group.start_soon(stop_once_started)
        stats = await consumer.run()
    # THEN run() returned with the thread still blocked, and the message is back in the
    # queue, visible at once, not deleted
    assert not blocker.finished.is_set()
    assert (stats.succeeded, stats.deleted) == (0, 0)
    assert queue.message_ids() == {message_id}
    assert queue.visible_count == 1
    # AND when the abandoned thread returns later, nothing deletes its message
    blocker.gate.set()
    await anyio.to_thread.run_sync(blocker.finished.wait)
    await anyio.lowlevel.checkpoint()
    assert queue.message_ids() == {message_id}


@pytest.mark.asyncio
async def test_cancelling_run_abandons_a_blocked_sync_handler(blocker: Blocker) -> None:
    # GIVEN a blocked sync handler and a grace period far longer than the test
    queue, message_id = _one_blocking_message()
    consumer = consumer_of(queue, blocker, receivers=1, shutdown_grace=3600.0)
    # WHEN run() is cancelled while the handler runs (the CLI's second signal)
    async with anyio.create_task_group() as group:
        group.start_soon(consumer.run)
        await anyio.to_thread.run_sync(blocker.started.wait)
        group.cancel_scope.cancel()
    # THEN run() ended with the thread still blocked, and the message was released
    assert not blocker.finished.is_set()
    assert consumer.stats.deleted == 0
    assert queue.message_ids() == {message_id}
    assert queue.visible_count == 1


@pytest.mark.asyncio
async def test_an_abandoned_thread_does_not_keep_its_thread_limit_slot(blocker: Blocker) -> None:
    # GIVEN a dispatcher with one thread, whose thread was abandoned by a stopped run and is
    # still blocked
    dispatcher = CallableDispatcher(blocker, thread_limit=1)
    queue, _ = _one_blocking_message()
    first = Consumer(
        queue=queue,
        dispatcher=dispatcher,
        config=ConsumerConfig(wait_time_seconds=0, receivers=1, shutdown_grace=0.0),
    )
    async with anyio.create_task_group() as group:
        group.start_soon(first.run)
        await anyio.to_thread.run_sync(blocker.started.wait)
        first.stop()
    # WHEN the next run uses the same dispatcher
    second_queue = FakeQueue()
    second_queue.send("next")
    stats = await Consumer(
        queue=second_queue,
        dispatcher=dispatcher,
        config=ConsumerConfig(wait_time_seconds=0, receivers=1, until_empty=True),
    ).run()
    # THEN it runs its message (a leaked slot would starve it: the test would hang)
    assert blocker.done == ["next"]
    assert stats.deleted == 1
    assert not blocker.finished.is_set()


# -- load_handler and the current directory ---------------------------------------------


@pytest.fixture
def cwd_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """``cwd_module(source)``: write a module of that source in a fresh current directory
    that is not on `sys.path` (as under the ``asyncloop`` console script) and return its
    name. `sys.path` and `sys.modules` are restored after the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "path", [p for p in sys.path if os.path.abspath(p or os.curdir) != str(tmp_path)]
    )

    def write(source: str) -> str:
        name = f"handler_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return write


def test_load_handler_imports_a_module_from_the_current_directory(
    cwd_module: Callable[[str], str],
) -> None:
    # GIVEN mymod.py in the current directory, which is not on sys.path
    name = cwd_module("def handle(message):\n    return None\n")
    # WHEN the handler is loaded as --handler mymod:handle
    handler = load_handler(f"{name}:handle")
    # THEN it is mymod's function, and the directory now leads sys.path (for its neighbours)
    assert handler is sys.modules[name].handle
    assert sys.path[0] == os.getcwd()


def test_load_handler_imports_a_package_module_from_the_current_directory(
    cwd_module: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the README's layout: myapp/jobs.py (a package) in the current directory
    package = cwd_module("")
    os.remove(f"{package}.py")
    os.mkdir(package)
    Path(package, "__init__.py").write_text("")
    Path(package, "jobs.py").write_text("async def handle(message):\n    return None\n")
    monkeypatch.delitem(sys.modules, f"{package}.jobs", raising=False)
    # WHEN the handler is loaded as --handler myapp.jobs:handle
    handler = load_handler(f"{package}.jobs:handle")
    # THEN it is that function
    assert handler is sys.modules[f"{package}.jobs"].handle


def test_load_handler_leaves_sys_path_alone_when_the_module_is_nowhere(
    cwd_module: Callable[[str], str],
) -> None:
    # GIVEN a current directory without the module
    before = list(sys.path)
    # WHEN loading it fails
    with pytest.raises(ConfigError, match="no_such_module_q"):
        load_handler("no_such_module_q:f")
    # THEN sys.path is as it was
    assert sys.path == before


def test_load_handler_reports_a_missing_import_of_the_module_itself(
    cwd_module: Callable[[str], str],
) -> None:
    # GIVEN a module in the current directory whose own import is missing
    name = cwd_module("import no_such_dependency_q\n")
    before = list(sys.path)
    # WHEN it is loaded, THEN the error names the missing dependency, and sys.path is restored
    with pytest.raises(ConfigError, match="no_such_dependency_q"):
        load_handler(f"{name}:handle")
    assert sys.path == before
