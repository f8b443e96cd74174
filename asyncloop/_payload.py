"""Lambda payloads built from a received message, and parsed back by the worker side.

Two shapes:

- ``seed``: exactly what the seed's consumer.js sends, one record per invoke::

      {"Records": [{"sqs": {"QueueUrl", "MessageId", "ReceiptHandle", "MD5OfBody", "Body"}}]}

- ``sqs-event``: one record in the shape of Lambda's own SQS event source mapping, so an
  existing SQS-triggered function can be invoked unchanged.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from ._config import PayloadFormat
from ._exceptions import ConfigError, DispatchError
from ._types import Message

__all__ = ("build_payload", "parse_seed_payload", "parse_sqs_event", "queue_arn")

_SQS_HOST = re.compile(r"^https?://sqs[.-](?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# A JSON string literal, quotes included, escaped exactly as `_dumps` escapes one.
_string = json.encoder.encode_basestring


def queue_arn(queue_url: str, region: str | None = None) -> str:
    """The queue's ARN from its URL (region from the host, else `region`, else us-east-1)."""
    match = _SQS_HOST.match(queue_url)
    found_region = match.group("region") if match else (region or "us-east-1")
    parts = queue_url.rstrip("/").split("/")
    return f"arn:aws:sqs:{found_region}:{parts[-2]}:{parts[-1]}"


def build_payload(
    message: Message, *, queue_url: str, payload: PayloadFormat, source_arn: str | None = None
) -> bytes:
    """The invoke payload for `message`, UTF-8 encoded JSON: what `LambdaDispatcher` sends.

    `payload` is ``"seed"`` or ``"sqs-event"`` (module docstring); `queue_url` goes into the
    record, and the ``sqs-event`` shape's ``eventSourceARN`` is `source_arn`, else derived from
    `queue_url`. Public so a worker's tests can build the exact event it will receive.

    The JSON is the compact form ``json`` writes for the record as a dict (same keys, same
    order, no ASCII escaping), put together from json's own string escaper around fixed
    key text: one payload a message makes this the dispatch path's largest single cost, and
    the joined form takes about half the time of encoding the dict.
    """
    if payload == "seed":
        attributes = message.attributes
        group = attributes.get("MessageGroupId")
        # FIFO ids travel with the record so a worker can see ordering context.
        fifo = ""
        if group is not None:
            fifo = ',"MessageGroupId":' + _string(group)
            dedup = attributes.get("MessageDeduplicationId")
            if dedup is not None:
                fifo += ',"MessageDeduplicationId":' + _string(dedup)
        text = (
            '{"Records":[{"sqs":{"QueueUrl":'
            + _string(queue_url)
            + ',"MessageId":'
            + _string(message.message_id)
            + ',"ReceiptHandle":'
            + _string(message.receipt_handle)
            + ',"MD5OfBody":'
            + _string(message.md5_of_body)
            + ',"Body":'
            + _string(message.body)
            + fifo
            + "}}]}"
        )
    elif payload == "sqs-event":
        arn = source_arn or queue_arn(queue_url)
        text = (
            '{"Records":[{"messageId":'
            + _string(message.message_id)
            + ',"receiptHandle":'
            + _string(message.receipt_handle)
            + ',"body":'
            + _string(message.body)
            + ',"attributes":'
            + _string_map(message.attributes)
            + ',"messageAttributes":'
            + (
                _dumps(_event_attributes(message.message_attributes))
                if message.message_attributes
                else "{}"
            )
            + ',"md5OfBody":'
            + _string(message.md5_of_body)
            + ',"eventSource":"aws:sqs","eventSourceARN":'
            + _string(arn)
            + ',"awsRegion":'
            + _string(arn.split(":")[3])
            + "}]}"
        )
    else:
        raise ConfigError(
            f"payload must be one of seed, sqs-event, got {payload!r}", field="payload"
        )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate: no UTF-8 form, so no JSON payload Lambda would accept. Say where,
        # never what (the body is not logged).
        raise DispatchError(
            f"message {message.message_id} cannot be encoded as UTF-8 (a lone surrogate at "
            f"payload offset {exc.start}); it fails until the queue's redrive policy moves it",
            message_id=message.message_id,
        ) from None


def _string_map(mapping: Mapping[str, str]) -> str:
    """A JSON object of string values, as `_dumps` writes it (anything else goes to it)."""
    try:
        return "{" + ",".join([_string(k) + ":" + _string(v) for k, v in mapping.items()]) + "}"
    except TypeError:  # a value that is not a string
        return _dumps(dict(mapping))


def _event_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """ReceiveMessage's MessageAttributes in the Lambda SQS event's camelCase shape."""
    out: dict[str, Any] = {}
    for name, value in attributes.items():
        binary = value.get("BinaryValue")
        out[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode("ascii") if binary else None,
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": [
                base64.b64encode(b).decode("ascii") for b in value.get("BinaryListValues", [])
            ],
            "dataType": value.get("DataType", "String"),
        }
    return out


def parse_seed_payload(event: Mapping[str, Any]) -> list[dict[str, str]]:
    """The ``sqs`` records of a seed payload; raises ValueError naming what is wrong."""
    if not isinstance(event, Mapping):
        raise ValueError(f"seed payload must be a JSON object, got {type(event).__name__}")
    records = event.get("Records")
    if not isinstance(records, list) or not records:
        raise ValueError("seed payload must have a non-empty 'Records' list")
    out = []
    for index, record in enumerate(records):
        sqs = record.get("sqs") if isinstance(record, Mapping) else None
        if not isinstance(sqs, Mapping):
            raise ValueError(f"Records[{index}] must have an 'sqs' object")
        for key in ("QueueUrl", "MessageId", "ReceiptHandle", "Body"):
            if not isinstance(sqs.get(key), str):
                raise ValueError(f"Records[{index}].sqs.{key} must be a string")
        out.append(dict(sqs))
    return out


def parse_sqs_event(event: object) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The records of a Lambda SQS event, split into usable ones and the ``messageId`` of
    each malformed record (reported as failures, so SQS redelivers them and, after
    maxReceiveCount, moves them to the DLQ). Raises ValueError naming what is wrong when the
    event itself is malformed, or a record has no usable ``messageId`` to report."""
    if not isinstance(event, Mapping):
        raise ValueError(f"SQS event must be a JSON object, got {type(event).__name__}")
    records = event.get("Records")
    if not isinstance(records, list):
        raise ValueError("SQS event must have a 'Records' list")
    usable: list[Mapping[str, Any]] = []
    malformed: list[str] = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValueError(f"Records[{index}] must be an object")
        message_id = record.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            raise ValueError(f"Records[{index}].messageId must be a non-empty string")
        attributes = record.get("attributes", {})
        if (
            not isinstance(record.get("body"), str)
            or not isinstance(record.get("receiptHandle"), str)
            or not isinstance(attributes, Mapping)
        ):
            malformed.append(message_id)
            continue
        usable.append(record)
    return usable, malformed
