"""Redrive on an in-memory SQS client: nothing is deleted from the DLQ before its send succeeded.

`FakeSqs` answers the few calls redrive makes with SQS's shapes (per-entry ``Failed`` lists,
``ClientError`` for whole-call failures) and keeps visibility, so a test can check that every
message is in the DLQ or the destination afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from asyncloop import AwsError, ConfigError
from asyncloop._cli import main
from asyncloop._redrive import CopyOptions, redrive

BASE = "https://sqs.us-east-1.amazonaws.com/123456789012/"
DLQ, SRC = BASE + "orders-dlq", BASE + "orders"


def client_error(code: str, operation: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


@dataclass
class Stored:
    message_id: str
    body: str
    attributes: dict[str, Any]
    message_attributes: dict[str, Any]
    hidden: bool = False
    handle: str = ""


@dataclass
class FakeSqs:
    """An aiobotocore-shaped SQS client over in-memory queues.

    `fail_send(entry) -> code | None` fails one send entry; `send_errors` raises for the n-th
    SendMessageBatch calls (1-based); `fail_delete(body)` fails one delete entry.
    """

    queues: dict[str, list[Stored]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    move_task: str | None = "unsupported"
    fail_send: Callable[[dict[str, Any]], str | None] = lambda entry: None
    send_errors: set[int] = field(default_factory=set)
    fail_delete: Callable[[str], bool] = lambda body: False
    sends: list[list[dict[str, Any]]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def put(self, url: str, body: str, **attributes: Any) -> None:
        self.queues.setdefault(url, []).append(
            Stored(f"id-{next(self._ids)}", body, dict(attributes.pop("system", {})), attributes)
        )

    def bodies(self, url: str) -> list[str]:
        return sorted(m.body for m in self.queues.get(url, []))

    async def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> Any:
        if QueueUrl not in self.queues:
            raise client_error("AWS.SimpleQueueService.NonExistentQueue", "GetQueueAttributes")
        return {
            "Attributes": {
                "QueueArn": "arn:aws:sqs:us-east-1:123456789012:" + QueueUrl.rsplit("/", 1)[1]
            }
        }

    async def list_dead_letter_source_queues(self, QueueUrl: str) -> Any:
        return {"queueUrls": self.sources.get(QueueUrl, [])}

    async def start_message_move_task(self, **kwargs: Any) -> Any:
        self.calls.append("StartMessageMoveTask")
        if self.move_task == "unsupported":
            raise client_error("InvalidAction", "StartMessageMoveTask")
        return {"TaskHandle": self.move_task}

    async def receive_message(self, *, QueueUrl: str, MaxNumberOfMessages: int, **_: Any) -> Any:
        self.calls.append("ReceiveMessage")
        out = []
        for stored in self.queues[QueueUrl]:
            if len(out) == MaxNumberOfMessages:
                break
            if not stored.hidden:
                stored.hidden = True
                stored.handle = f"rh-{stored.message_id}-{next(self._ids)}"
                out.append(
                    {
                        "MessageId": stored.message_id,
                        "ReceiptHandle": stored.handle,
                        "Body": stored.body,
                        "Attributes": stored.attributes,
                        "MessageAttributes": stored.message_attributes,
                    }
                )
        return {"Messages": out} if out else {}

    async def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        self.sends.append(Entries)
        if len(self.sends) in self.send_errors:
            raise client_error("InternalError", "SendMessageBatch", 500)
        ok, failed = [], []
        for entry in Entries:
            code = self.fail_send(entry)
            if code:
                failed.append({"Id": entry["Id"], "Code": code, "SenderFault": True})
                continue
            system = {
                k: entry[k] for k in ("MessageGroupId", "MessageDeduplicationId") if k in entry
            }
            self.put(
                QueueUrl, entry["MessageBody"], system=system, **entry.get("MessageAttributes", {})
            )
            ok.append({"Id": entry["Id"], "MessageId": "x", "MD5OfMessageBody": "x"})
        return {"Successful": ok, "Failed": failed}

    async def delete_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        ok, failed = [], []
        for entry in Entries:
            (stored,) = [m for m in self.queues[QueueUrl] if m.handle == entry["ReceiptHandle"]]
            if self.fail_delete(stored.body):
                failed.append({"Id": entry["Id"], "Code": "InternalError", "SenderFault": False})
            else:
                self.queues[QueueUrl].remove(stored)
                ok.append({"Id": entry["Id"]})
        return {"Successful": ok, "Failed": failed}

    async def change_message_visibility_batch(
        self, *, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> Any:
        for entry in Entries:
            for stored in self.queues[QueueUrl]:
                if stored.handle == entry["ReceiptHandle"] and entry["VisibilityTimeout"] == 0:
                    stored.hidden = False
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def fake_with(n: int, *, dlq: str = DLQ, src: str = SRC, **kwargs: Any) -> FakeSqs:
    sqs = FakeSqs(**kwargs)
    sqs.queues[src] = []
    sqs.sources[dlq] = [src]
    for i in range(n):
        sqs.put(dlq, f"m{i:02d}", color={"DataType": "String", "StringValue": f"c{i}"})
    return sqs


FAST = CopyOptions(wait_time_seconds=0)


@pytest.mark.asyncio
async def test_copy_moves_every_message_with_its_attributes_to_the_source() -> None:
    # GIVEN 23 messages in a DLQ whose one source is SRC, on an endpoint without move tasks
    sqs = fake_with(23)
    # WHEN redriven with the default method
    result = await redrive(sqs, source_url=DLQ, options=FAST)
    # THEN the move task was tried, then the copy moved all 23 in batches of at most 10,
    assert sqs.calls[0] == "StartMessageMoveTask"
    assert (result.method, result.moved, result.failed, result.ok) == ("copy", 23, 0, True)
    assert all(len(batch) <= 10 for batch in sqs.sends)
    # with their bodies and attributes, and the DLQ is empty
    assert sqs.bodies(SRC) == [f"m{i:02d}" for i in range(23)]
    colors = {m.body: m.message_attributes["color"]["StringValue"] for m in sqs.queues[SRC]}
    assert colors["m07"] == "c7"
    assert sqs.queues[DLQ] == []


@pytest.mark.asyncio
async def test_entries_the_send_batch_failed_stay_in_the_dlq() -> None:
    # GIVEN 15 messages, and a destination that refuses every third one per entry
    sqs = fake_with(
        15,
        fail_send=lambda e: (
            "InvalidMessageContents" if int(e["MessageBody"][1:]) % 3 == 0 else None
        ),
    )
    # WHEN redriven
    result = await redrive(sqs, source_url=DLQ, method="copy", options=FAST)
    # THEN only the sent ones were deleted; the refused ones are still in the DLQ: none lost
    refused = [f"m{i:02d}" for i in range(15) if i % 3 == 0]
    assert (result.moved, result.failed, result.ok) == (10, 5, False)
    assert sqs.bodies(DLQ) == refused
    assert sorted(sqs.bodies(DLQ) + sqs.bodies(SRC)) == [f"m{i:02d}" for i in range(15)]


@pytest.mark.asyncio
async def test_a_failed_send_call_stops_the_copy_and_loses_nothing() -> None:
    # GIVEN 25 messages, and a SendMessageBatch call (the second) that fails as a whole
    sqs = fake_with(25, send_errors={2})
    # WHEN redriven
    result = await redrive(sqs, source_url=DLQ, method="copy", options=FAST)
    # THEN the first batch moved, the copy stopped with the error,
    assert result.moved == 10
    assert result.failed == 10
    assert result.error is not None
    assert "SendMessageBatch" in result.error
    assert not result.ok
    # every message is in the DLQ or the destination, exactly once,
    assert sorted(sqs.bodies(DLQ) + sqs.bodies(SRC)) == [f"m{i:02d}" for i in range(25)]
    assert len(sqs.bodies(SRC)) == 10
    # and the unsent ones were made visible again at once
    assert all(not m.hidden for m in sqs.queues[DLQ] if m.handle)


@pytest.mark.asyncio
async def test_a_failed_delete_leaves_a_duplicate_never_a_loss() -> None:
    # GIVEN 5 messages whose delete from the DLQ fails for m02
    sqs = fake_with(5, fail_delete=lambda body: body == "m02")
    # WHEN redriven
    result = await redrive(sqs, source_url=DLQ, method="copy", options=FAST)
    # THEN m02 is in both queues (a duplicate for later), counted, and the rest moved
    assert (result.moved, result.delete_failed, result.ok) == (4, 1, False)
    assert sqs.bodies(DLQ) == ["m02"]
    assert sqs.bodies(SRC) == [f"m{i:02d}" for i in range(5)]


@pytest.mark.asyncio
async def test_fifo_keeps_the_group_and_takes_a_new_deduplication_id() -> None:
    # GIVEN a FIFO DLQ whose messages carry their group and deduplication ids
    dlq, src = BASE + "jobs-dlq.fifo", BASE + "jobs.fifo"
    sqs = FakeSqs()
    sqs.queues[src] = []
    for i in range(4):
        system = {"MessageGroupId": f"g{i % 2}", "MessageDeduplicationId": f"d{i}"}
        sqs.put(dlq, f"m{i}", system=system)
    # WHEN redriven to the FIFO destination
    result = await redrive(sqs, source_url=dlq, destination_url=src, method="copy", options=FAST)
    # THEN each kept its group, and got a deduplication id that is not the one the destination
    # saw when it was first sent (reusing it within 5 minutes would make SQS drop the copy)
    assert result.moved == 4
    sent = {e["MessageBody"]: e for batch in sqs.sends for e in batch}
    assert [sent[f"m{i}"]["MessageGroupId"] for i in range(4)] == ["g0", "g1", "g0", "g1"]
    dedup = [sent[f"m{i}"]["MessageDeduplicationId"] for i in range(4)]
    assert len(set(dedup)) == 4
    assert not {"d0", "d1", "d2", "d3"} & set(dedup)
    assert all(1 <= len(d) <= 128 for d in dedup)


@pytest.mark.asyncio
async def test_large_messages_are_split_into_sends_under_256_kib() -> None:
    # GIVEN 6 messages of 100 KB each
    sqs = FakeSqs()
    sqs.queues[SRC] = []
    sqs.sources[DLQ] = [SRC]
    for i in range(6):
        sqs.put(DLQ, f"{i}" + "x" * 100_000)
    # WHEN redriven
    result = await redrive(sqs, source_url=DLQ, method="copy", options=FAST)
    # THEN every send stayed within SQS's 256 KiB per call, and all moved
    assert result.moved == 6
    assert all(sum(len(e["MessageBody"]) for e in batch) <= 262_144 for batch in sqs.sends)
    assert len(sqs.sends) == 3


@pytest.mark.asyncio
async def test_native_move_task_is_used_where_the_endpoint_has_it() -> None:
    # GIVEN an endpoint that runs move tasks
    sqs = fake_with(3, move_task="task-1")
    # WHEN redriven
    result = await redrive(sqs, source_url=DLQ)
    # THEN the task was started and nothing was copied by hand
    assert (result.method, result.task_handle) == ("native", "task-1")
    assert "ReceiveMessage" not in sqs.calls
    assert len(sqs.bodies(DLQ)) == 3


@pytest.mark.asyncio
async def test_native_only_fails_where_the_endpoint_lacks_move_tasks() -> None:
    sqs = fake_with(3)
    with pytest.raises(AwsError, match="InvalidAction"):
        await redrive(sqs, source_url=DLQ, method="native")
    assert sqs.bodies(DLQ) == ["m00", "m01", "m02"]


@pytest.mark.parametrize(
    ("destination", "sources", "expected"),
    [
        (DLQ, [SRC], "must differ from the dead-letter queue"),
        (BASE + "x.fifo", [SRC], "both be FIFO or both standard"),
        (None, [], "found none: give --destination-url"),
        (None, [SRC, BASE + "other"], "give --destination-url"),
    ],
)
@pytest.mark.asyncio
async def test_bad_destinations_are_config_errors(
    destination: str | None, sources: list[str], expected: str
) -> None:
    sqs = fake_with(2)
    sqs.sources[DLQ] = sources
    with pytest.raises(ConfigError, match=expected):
        await redrive(sqs, source_url=DLQ, destination_url=destination, method="copy", options=FAST)
    assert sqs.bodies(DLQ) == ["m00", "m01"]


@pytest.mark.parametrize("rate", [0, 501])
def test_max_per_second_is_checked(rate: float) -> None:
    with pytest.raises(ConfigError, match=f"max_per_second must be in 1..500, got {rate}"):
        CopyOptions(max_per_second=rate)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["redrive"], "one of --dlq-url or --source-arn is required"),
        (
            ["redrive", "--dlq-url", DLQ, "--source-arn", "arn:aws:sqs:us-east-1:1:x"],
            "not allowed with",
        ),
        (
            ["redrive", "--dlq-url", DLQ, "--method", "teleport"],
            "--method must be one of auto, native, copy",
        ),
        (
            ["redrive", "--dlq-url", DLQ, "--max-per-second", "0"],
            "--max-per-second must be in 1..500",
        ),
        (["redrive", "--dlq-url", DLQ, "--status", "--cancel"], "not allowed with"),
        (["redrive", "--source-arn", "orders-dlq"], "--source-arn must be arn:"),
    ],
)
def test_redrive_usage_errors_exit_2(
    argv: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # An unreachable endpoint: a usage error must be found before any call is made
    monkeypatch.setenv("ASYNCLOOP_ENDPOINT_URL", "http://127.0.0.1:9")
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors exit from inside parse_args
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1
