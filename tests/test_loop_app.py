"""The loop's Lambda app (`asyncloop._loop.app`), its event parsing: whatever a loop event
holds, a record without a token is skipped, logged and counted, and the records that carry
tokens still run."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack
from typing import Any

import pytest
from _events import LambdaContext, kinesis_event, kinesis_record

from asyncloop._loop.app import LoopApp, kinesis_records
from asyncloop._loop.control import LoopToken
from asyncloop._loop.lease import InMemoryLeaseStore
from asyncloop._loop.runner import LoopRuntime
from asyncloop._loop.settings import LoopSettings

ENV = {
    "ASYNCLOOP_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/work",
    "ASYNCLOOP_FUNCTION_NAME": "worker",
    "ASYNCLOOP_LEASE_TABLE": "leases",
    "ASYNCLOOP_STREAM_NAME": "tokens",
}


class Fakes:
    def __init__(self) -> None:
        self.store = InMemoryLeaseStore()
        self.tokens: list[LoopToken] = []
        self.lines: list[str] = []

    async def factory(self, settings: LoopSettings, stack: AsyncExitStack) -> LoopRuntime:
        async def consume(run_for: float) -> Mapping[str, int]:
            return {"received": 1, "succeeded": 1, "deleted": 1}

        async def backlog() -> int:
            return 0

        async def no_wait(seconds: float) -> None:
            pass

        fakes = self

        class Sink:
            async def put(self, token: LoopToken) -> None:
                fakes.tokens.append(token)

        return LoopRuntime(
            lease=self.store,
            sink=Sink(),
            consume=consume,
            backlog=backlog,
            policy=settings.policy,
            margin=settings.margin,
            sleep=no_wait,
            write=self.lines.append,
        )

    def invalid_lines(self) -> list[dict[str, Any]]:
        docs = [json.loads(line) for line in self.lines]
        return [doc for doc in docs if doc.get("event") == "invalid_token"]


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def app(fakes: Fakes) -> Iterator[LoopApp]:
    app = LoopApp(environ=ENV, runtime_factory=fakes.factory)
    yield app
    app.close()


def raw_record(data: object, sequence: object = "1") -> dict[str, Any]:
    record = kinesis_record(b"", partition_key="x")
    record["kinesis"]["data"] = data
    record["kinesis"]["sequenceNumber"] = sequence
    return record


def token_record(token: LoopToken) -> dict[str, Any]:
    return kinesis_record(token.encode(), partition_key=token.partition_key)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (raw_record(None), "data_not_a_string"),
        (raw_record(12345), "data_not_a_string"),
        (raw_record(["a"]), "data_not_a_string"),
        (raw_record("%%%not base64"), "data_not_base64"),
        (raw_record(base64.b64encode(b"hello").decode()), "not_a_token"),
        ({"kinesis": None}, "not_a_kinesis_record"),
        ({"kinesis": 7}, "not_a_kinesis_record"),
        ("a string", "not_a_kinesis_record"),
        (None, "not_a_kinesis_record"),
    ],
)
def test_a_malformed_record_is_skipped_logged_and_counted_and_the_rest_run(
    app: LoopApp, fakes: Fakes, record: object, problem: str
) -> None:
    # GIVEN a live loop whose token arrives beside a malformed record
    app.loop_handler({"action": "start", "loops": 1}, LambdaContext())
    first = fakes.tokens.pop()
    event = kinesis_event(record, token_record(first))  # type: ignore[arg-type]
    # WHEN the batch runs
    result = app.loop_handler(event, LambdaContext())
    # THEN the malformed record is skipped and counted, with a log line naming the problem
    assert result["invalid"] == 1
    assert [line["problem"] for line in fakes.invalid_lines()] == [problem]
    # AND the token beside it ran and re-triggered, and no record is reported failed
    assert result["batchItemFailures"] == []
    assert [run["action"] for run in result["runs"]] == ["ran"]
    assert fakes.tokens == [LoopToken(first.loop_id, 1)]


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ([{"kinesis": {"data": "e30="}}], "event_not_an_object"),
        ("hello", "event_not_an_object"),
        (None, "event_not_an_object"),
        (42, "event_not_an_object"),
        ({"something": "else"}, "not_a_token"),
        ({"Records": [None]}, "not_a_kinesis_record"),
    ],
)
def test_a_malformed_event_is_skipped_logged_and_counted(
    app: LoopApp, fakes: Fakes, event: object, problem: str
) -> None:
    # WHEN the loop function is invoked with something that is not a loop event
    result = app.loop_handler(event, LambdaContext())
    # THEN nothing runs, nothing fails, and the log line says why
    assert result == {"batchItemFailures": [], "runs": [], "invalid": 1}
    assert [line["problem"] for line in fakes.invalid_lines()] == [problem]
    assert fakes.tokens == []


def test_a_sequence_number_that_is_not_a_string_names_no_record() -> None:
    token = LoopToken("L", 3)
    record = raw_record(base64.b64encode(token.encode()).decode(), sequence=17)

    (parsed,) = kinesis_records(kinesis_event(record))

    assert (parsed.sequence, parsed.token, parsed.problem) == (None, token, "")
