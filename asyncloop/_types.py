"""The values that cross the seams: a message, a batch entry's failure, an invoke result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ("BatchEntryFailure", "InvokeResult", "Message")


@dataclass(slots=True, eq=False)
class Message:
    """One received SQS message.

    `attributes` holds SQS's system attributes as strings (``SentTimestamp``,
    ``ApproximateReceiveCount``, ``MessageGroupId``, ...); `message_attributes` the sender's
    own, in ReceiveMessage's shape. `received_at` is the event loop's clock
    (``anyio.current_time()``) when the receive returned. Identity, not value, is equality:
    a standard queue can deliver the same `message_id` twice, each with its own receipt handle.
    """

    message_id: str
    receipt_handle: str
    body: str
    md5_of_body: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    message_attributes: Mapping[str, Any] = field(default_factory=dict)
    received_at: float = 0.0

    @property
    def receive_count(self) -> int:
        """``ApproximateReceiveCount``, or 1 when the queue did not report it."""
        return int(self.attributes.get("ApproximateReceiveCount", "1"))

    @property
    def sent_timestamp(self) -> float | None:
        """When the message was sent, in epoch seconds, from ``SentTimestamp`` (ms)."""
        sent = self.attributes.get("SentTimestamp")
        return int(sent) / 1000.0 if sent is not None else None

    @property
    def group_id(self) -> str | None:
        """The FIFO ``MessageGroupId``, or None on a standard queue."""
        return self.attributes.get("MessageGroupId")

    def __repr__(self) -> str:
        # Never the body or the receipt handle: reprs end up in logs.
        return f"Message(message_id={self.message_id!r}, receive_count={self.receive_count})"


@dataclass(frozen=True, slots=True)
class BatchEntryFailure:
    """One entry of a batch call (DeleteMessageBatch, ChangeMessageVisibilityBatch) that failed."""

    id: str
    code: str
    message: str = ""
    sender_fault: bool = False


@dataclass(frozen=True, slots=True)
class InvokeResult:
    """What a Lambda ``Invoke`` answered: the status, ``FunctionError`` if any, the payload."""

    status_code: int
    function_error: str | None = None
    payload: bytes = b""
