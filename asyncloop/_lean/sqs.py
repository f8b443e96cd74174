"""`LeanQueue`: the `Queue` protocol over SQS's JSON protocol (AWS JSON 1.0), without botocore.

Why: aiobotocore spends about 1,100 us of CPU per SQS call here (serialising through the
service model, the event hooks, the parser walking the output shape); the consumer makes
about 0.2 SQS calls a message. This module writes the three hot calls (ReceiveMessage,
DeleteMessageBatch, ChangeMessageVisibilityBatch) as JSON bodies with the API's field names,
``POST /`` with ``X-Amz-Target: AmazonSQS.<Operation>``,
``Content-Type: application/x-amz-json-1.0`` and ``x-amzn-query-mode: true`` (botocore's
headers for SQS, signed alike), and reads the answers as botocore's parser
would shape them: the same `Message` fields, system attributes as strings, message
attributes with binary values base64-decoded to bytes, only the modeled keys kept. A test
compares the two paths' `Message`s for the same messages on moto and fauxqs.

Where it differs from the sdk path, on purpose: each message's ``MD5OfBody`` is checked
against its body (and ``MD5OfMessageAttributes`` against its attributes, by SQS's documented
encoding), as the Java and .NET SDKs do; botocore 1.40 checks neither. A mismatch fails the
whole receive with a retryable `TransportError` (code ``MD5OfBodyMismatch`` /
``MD5OfMessageAttributesMismatch``): nothing is handed on or deleted, so the messages come
back after their visibility timeout (and go to the DLQ if the corruption persists).
Batch rules are enforced before sending exactly as `SqsQueue` enforces them. A receive's
body depends only on its parameters: it is checked and encoded once per parameter set.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

import anyio

from .._aws import batch_failures as _failures
from .._aws import receive_request
from .._exceptions import TransportError
from .._limits import MAX_VISIBILITY
from .._types import BatchEntryFailure, Message
from .._validate import check_entries as _check_entries
from .._validate import check_int as _check_int
from .._validate import validate_queue_url
from .service import Prepared, ServiceChannel

__all__ = ("LeanQueue", "message_attributes_md5")

_CONTENT_TYPE: Final = "application/x-amz-json-1.0"
_ATTRIBUTE_VALUE_KEYS: Final = (
    "StringValue",
    "BinaryValue",
    "StringListValues",
    "BinaryListValues",
    "DataType",
)
# A long poll's read timeout: its wait plus this margin, when the client's is shorter
_LONG_POLL_MARGIN: Final = 10.0
# One encoder: json.dumps with any option builds a new JSONEncoder per call (0.6 us)
_ENCODE: Final = json.JSONEncoder(separators=(",", ":")).encode
_OPERATIONS: Final = ("ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch")
# A consumer receives with a few parameter sets (the batch it has room for, its wait)
_MAX_CACHED_BODIES: Final = 64


def _headers(operation: str) -> dict[str, str]:
    # x-amzn-query-mode: what botocore sends (and signs) for SQS, an awsQueryCompatible service
    # (its serializer's _handle_query_compatible_trait): the client reads the query-protocol
    # error codes of x-amzn-query-error, so SQS may answer with them as it does the sdk path
    return {
        "X-Amz-Target": f"AmazonSQS.{operation}",
        "Content-Type": _CONTENT_TYPE,
        "x-amzn-query-mode": "true",
    }


def _message_attributes(raw: Mapping[str, Any]) -> dict[str, Any]:
    # botocore's shape: only modeled keys, blobs base64-decoded to bytes
    result: dict[str, Any] = {}
    for name, value in raw.items():
        shaped: dict[str, Any] = {}
        for key in _ATTRIBUTE_VALUE_KEYS:
            if key not in value:
                continue
            item = value[key]
            if key == "BinaryValue":
                item = base64.b64decode(item)
            elif key == "BinaryListValues":
                item = [base64.b64decode(v) for v in item]
            shaped[key] = item
        result[name] = shaped
    return result


def _length_prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def message_attributes_md5(attributes: Mapping[str, Any]) -> str:
    """SQS's MD5 of message attributes (botocore's shape: binary values as bytes).

    Names sorted; for each: the name, the data type, a transport byte (1 string, 2 binary) and
    the value, each length-prefixed (4 bytes, big-endian), per SQS's documentation.
    """
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        data_type = str(value.get("DataType", ""))
        digest.update(_length_prefixed(name.encode()))
        digest.update(_length_prefixed(data_type.encode()))
        if "StringValue" in value:
            digest.update(b"\x01" + _length_prefixed(str(value["StringValue"]).encode()))
        elif "BinaryValue" in value:
            digest.update(b"\x02" + _length_prefixed(bytes(value["BinaryValue"])))
    return digest.hexdigest()


class LeanQueue:
    """The `Queue` protocol for one queue over a `ServiceChannel` (the transport owns it)."""

    def __init__(self, channel: ServiceChannel, queue_url: str) -> None:
        self._channel = channel
        self._queue_url = validate_queue_url(queue_url)
        self._prepared: dict[str, Prepared] = {
            operation: channel.prepare("/", _headers(operation)) for operation in _OPERATIONS
        }
        # (max_messages, wait_time_seconds, visibility_timeout) -> the encoded request
        self._receive_bodies: dict[tuple[int, int, int | None], bytes] = {}

    @property
    def queue_url(self) -> str:
        return self._queue_url

    def __repr__(self) -> str:
        return f"LeanQueue(queue_url={self._queue_url!r})"

    def _poll_timeout(self, wait_time_seconds: int) -> float | None:
        # A long poll's read lasts its wait: give it that plus a margin when the client's is
        # shorter
        if self._channel.settings.read_timeout > wait_time_seconds + _LONG_POLL_MARGIN:
            return None
        return wait_time_seconds + _LONG_POLL_MARGIN

    async def _call(self, operation: str, body: bytes, read_timeout: float | None = None) -> Any:
        reply = await self._channel.call(
            operation,
            self._prepared[operation],
            body,
            read_timeout=read_timeout,
            queue_url=self._queue_url,
        )
        return json.loads(reply.body) if reply.body else {}

    def _receive_body(
        self, max_messages: int, wait_time_seconds: int, visibility_timeout: int | None
    ) -> bytes:
        key = (max_messages, wait_time_seconds, visibility_timeout)
        body = self._receive_bodies.get(key)
        if body is None:
            # Checked (and encoded) once per parameter set
            request = receive_request(
                self._queue_url,
                max_messages=max_messages,
                wait_time_seconds=wait_time_seconds,
                visibility_timeout=visibility_timeout,
            )
            if len(self._receive_bodies) >= _MAX_CACHED_BODIES:
                self._receive_bodies.clear()
            body = self._receive_bodies[key] = _ENCODE(request).encode()
        return body

    async def receive(
        self,
        *,
        max_messages: int,
        wait_time_seconds: int,
        visibility_timeout: int | None = None,
    ) -> list[Message]:
        """ReceiveMessage with every system and message attribute, MD5s checked."""
        body = self._receive_body(max_messages, wait_time_seconds, visibility_timeout)
        response = await self._call("ReceiveMessage", body, self._poll_timeout(wait_time_seconds))
        received_at = anyio.current_time()
        messages = []
        for m in response.get("Messages") or ():
            body = m.get("Body", "")
            md5_of_body = m.get("MD5OfBody", "")
            attributes = _message_attributes(m.get("MessageAttributes") or {})
            self._check_md5(m, body, md5_of_body, attributes)
            messages.append(
                Message(
                    message_id=m["MessageId"],
                    receipt_handle=m["ReceiptHandle"],
                    body=body,
                    md5_of_body=md5_of_body,
                    attributes=m.get("Attributes") or {},
                    message_attributes=attributes,
                    received_at=received_at,
                )
            )
        return messages

    def _check_md5(
        self, raw: Mapping[str, Any], body: str, md5_of_body: str, attributes: Mapping[str, Any]
    ) -> None:
        problem = None
        if md5_of_body and hashlib.md5(body.encode(), usedforsecurity=False).hexdigest() != (
            md5_of_body
        ):
            problem = "MD5OfBodyMismatch"
        expected = raw.get("MD5OfMessageAttributes")
        if (
            problem is None
            and attributes
            and expected
            and message_attributes_md5(attributes) != expected
        ):
            problem = "MD5OfMessageAttributesMismatch"
        if problem is not None:
            raise TransportError(
                f"ReceiveMessage on {self._queue_url} failed: {problem} for message "
                f"{raw.get('MessageId')!r}: the answer was altered in transit",
                operation="ReceiveMessage",
                code=problem,
                retryable=True,
            )

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> list[BatchEntryFailure]:
        """DeleteMessageBatch of ``(entry_id, receipt_handle)``; returns the entries that failed."""
        _check_entries("DeleteMessageBatch", [entry_id for entry_id, _ in entries])
        request = {
            "QueueUrl": self._queue_url,
            "Entries": [{"Id": i, "ReceiptHandle": handle} for i, handle in entries],
        }
        response = await self._call("DeleteMessageBatch", _ENCODE(request).encode())
        return _failures(response)

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> list[BatchEntryFailure]:
        """ChangeMessageVisibilityBatch of ``(entry_id, receipt_handle, timeout_s)`` (0..43200)."""
        _check_entries("ChangeMessageVisibilityBatch", [entry_id for entry_id, _, _ in entries])
        for _, _, timeout in entries:
            _check_int("visibility timeout", timeout, 0, MAX_VISIBILITY)
        request = {
            "QueueUrl": self._queue_url,
            "Entries": [
                {"Id": i, "ReceiptHandle": handle, "VisibilityTimeout": timeout}
                for i, handle, timeout in entries
            ],
        }
        response = await self._call("ChangeMessageVisibilityBatch", _ENCODE(request).encode())
        return _failures(response)
