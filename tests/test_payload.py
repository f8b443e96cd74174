"""build_payload's JSON is byte for byte what ``json`` writes for the record as a dict.

The builder joins escaped strings around fixed key text (faster than encoding the dict); the
reference here is the dict form itself, encoded the way the payload always was (compact, no
ASCII escaping), over bodies and ids that exercise the escaper.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from asyncloop import Message
from asyncloop._exceptions import DispatchError
from asyncloop._payload import _event_attributes, build_payload, queue_arn

URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"

_reference_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

BODIES = [
    "",
    "hello",
    '{"job": 1, "quote": "\\"", "slash": "/\\\\"}',
    "line\nbreak\ttab\r\x00\x01\x1f\x7f",
    "é 漢字 🙂 \u2028\u2029 \ufeff",
    "\U0010ffff" * 3,
    "x" * 262_144,
]


def _reference(message: Message, payload: str, source_arn: str | None = None) -> bytes:
    return _reference_text(message, payload, source_arn).encode("utf-8")


def _reference_text(message: Message, payload: str, source_arn: str | None = None) -> str:
    """The record as a dict, encoded: the payload's shape as documented in _payload."""
    if payload == "seed":
        sqs: dict[str, Any] = {
            "QueueUrl": URL,
            "MessageId": message.message_id,
            "ReceiptHandle": message.receipt_handle,
            "MD5OfBody": message.md5_of_body,
            "Body": message.body,
        }
        group = message.attributes.get("MessageGroupId")
        if group is not None:
            sqs["MessageGroupId"] = group
            dedup = message.attributes.get("MessageDeduplicationId")
            if dedup is not None:
                sqs["MessageDeduplicationId"] = dedup
        record: dict[str, Any] = {"sqs": sqs}
    else:
        arn = source_arn or queue_arn(URL)
        # The attribute conversion itself is not what the joined form changed: reuse it.
        attributes = _event_attributes(message.message_attributes)
        record = {
            "messageId": message.message_id,
            "receiptHandle": message.receipt_handle,
            "body": message.body,
            "attributes": dict(message.attributes),
            "messageAttributes": attributes,
            "md5OfBody": message.md5_of_body,
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": arn.split(":")[3],
        }
    return _reference_dumps({"Records": [record]})


def _message(body: str, *, fifo: bool = False, dedup: bool = True) -> Message:
    attributes = {"SentTimestamp": "1700000000000", "ApproximateReceiveCount": "2"}
    if fifo:
        attributes["MessageGroupId"] = 'group "one" é'
        if dedup:
            attributes["MessageDeduplicationId"] = "dedup\\1"
    return Message(
        message_id='id-"1"-é',
        receipt_handle="AQEB+/=\n" + "r" * 300,
        body=body,
        md5_of_body="d41d8cd98f00b204e9800998ecf8427e",
        attributes=attributes,
        message_attributes={
            "trace": {"DataType": "String", "StringValue": 'abc "q" é'},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
            "n": {"DataType": "Number", "StringValue": "42"},
        },
    )


@pytest.mark.parametrize("payload", ["seed", "sqs-event"])
@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_payload_is_the_dict_form_byte_for_byte(payload: Any, body: str) -> None:
    message = _message(body)
    assert build_payload(message, queue_url=URL, payload=payload) == _reference(message, payload)


@pytest.mark.parametrize("dedup", [True, False])
def test_fifo_ids_travel_in_the_seed_record_as_in_the_dict_form(dedup: bool) -> None:
    message = _message("fifo body", fifo=True, dedup=dedup)
    built = build_payload(message, queue_url=URL, payload="seed")
    assert built == _reference(message, "seed")
    sqs = json.loads(built)["Records"][0]["sqs"]
    assert sqs["MessageGroupId"] == 'group "one" é'
    assert ("MessageDeduplicationId" in sqs) is dedup


def test_an_explicit_source_arn_is_the_records_arn_and_region() -> None:
    message = _message("b")
    arn = "arn:aws:sqs:ap-south-1:000000000000:other"
    built = build_payload(message, queue_url=URL, payload="sqs-event", source_arn=arn)
    assert built == _reference(message, "sqs-event", source_arn=arn)
    assert json.loads(built)["Records"][0]["awsRegion"] == "ap-south-1"


@pytest.mark.parametrize("payload", ["seed", "sqs-event"])
def test_a_lone_surrogate_is_a_dispatch_error_naming_the_offset_not_the_body(
    payload: Any,
) -> None:
    message = _message("secret\ud800tail")
    with pytest.raises(DispatchError) as caught:
        build_payload(message, queue_url=URL, payload=payload)
    text = str(caught.value)
    assert "lone surrogate at payload offset" in text
    assert "secret" not in text
    offset = int(text.split("payload offset ")[1].split(")")[0])
    # The offset is the surrogate's place in the payload's JSON text.
    assert offset == _reference_text(message, payload).index("\ud800")


def test_attributes_of_other_types_and_no_message_attributes_match_the_dict_form() -> None:
    # A custom Queue may hand over attributes that are not all strings, and most messages
    # have no message attributes at all.
    message = Message(
        message_id="m",
        receipt_handle="r",
        body="b",
        attributes={"SentTimestamp": 1700000000000, "Flag": None},  # type: ignore[dict-item]
    )
    built = build_payload(message, queue_url=URL, payload="sqs-event")
    assert built == _reference(message, "sqs-event")
    record = json.loads(built)["Records"][0]
    assert record["attributes"] == {"SentTimestamp": 1700000000000, "Flag": None}
    assert record["messageAttributes"] == {}
