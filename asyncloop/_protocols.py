"""The seams: what the consumer needs from a queue, a dispatch target and a Lambda client.

The aioboto3 implementations are the defaults; `asyncloop.testing` has in-memory fakes with
the same semantics. Anything that satisfies these Protocols can be injected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ._limits import InvocationType
from ._types import BatchEntryFailure, InvokeResult, Message

__all__ = ("Dispatcher", "LambdaInvoker", "Queue")


class Queue(Protocol):
    """An SQS queue as the consumer uses it.

    Batch methods take at most 10 entries with Ids unique within the call, and answer only
    the entries that failed; an empty answer means every entry succeeded. Errors that fail
    the whole call raise `asyncloop.AwsError` subclasses.
    """

    @property
    def queue_url(self) -> str: ...

    async def receive(
        self,
        *,
        max_messages: int,
        wait_time_seconds: int,
        visibility_timeout: int | None = None,
    ) -> Sequence[Message]:
        """ReceiveMessage: up to `max_messages` (1..10), long-polling up to `wait_time_seconds`."""
        ...

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> Sequence[BatchEntryFailure]:
        """DeleteMessageBatch of ``(entry_id, receipt_handle)`` pairs."""
        ...

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> Sequence[BatchEntryFailure]:
        """ChangeMessageVisibilityBatch of ``(entry_id, receipt_handle, timeout_s)``."""
        ...


class Dispatcher(Protocol):
    """Where a message's work happens.

    `dispatch` returns when the work was accepted (an Event invoke) or done (a RequestResponse
    invoke, a callable), and raises `asyncloop.DispatchError` when it failed: the message is
    then not deleted. `operation` names the API call a dispatch makes ("Invoke"), or is None
    for in-process work; the consumer counts it.
    """

    @property
    def operation(self) -> str | None: ...

    async def dispatch(self, message: Message) -> None: ...


class LambdaInvoker(Protocol):
    """The one Lambda call the dispatcher makes; raises `asyncloop.AwsError` subclasses."""

    async def invoke(
        self, *, function_name: str, payload: bytes, invocation_type: InvocationType
    ) -> InvokeResult: ...
