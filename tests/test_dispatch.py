"""Payload shapes and the dispatchers' success/failure contract, on FakeLambda."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from asyncloop import (
    CallableDispatcher,
    ConfigError,
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
from asyncloop.testing import FakeLambda, FaultPlan

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


def test_load_handler() -> None:
    import os

    assert load_handler("os:getcwd") is os.getcwd
    assert load_handler("os.path:join") is os.path.join
    for bad in ("os", ":x", "os:", "os:no_such_attr", "no_such_module_q:f", "os:sep"):
        with pytest.raises(ConfigError):
            load_handler(bad)
