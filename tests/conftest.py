"""Shared fixtures: factories for real-shaped SQS messages and events."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from _events import LambdaContext

from asyncloop import Message

_ids = itertools.count(1)


@pytest.fixture
def make_message() -> Callable[..., Message]:
    """Build a `Message` as SQS would return it (attributes as strings)."""

    def make(
        body: str = "hello",
        *,
        message_id: str | None = None,
        receive_count: int = 1,
        sent_ms: int = 1_700_000_000_000,
        group_id: str | None = None,
    ) -> Message:
        n = next(_ids)
        attributes = {
            "SentTimestamp": str(sent_ms),
            "ApproximateReceiveCount": str(receive_count),
        }
        if group_id is not None:
            attributes["MessageGroupId"] = group_id
        return Message(
            message_id=message_id or f"00000000-0000-0000-0000-{n:012d}",
            receipt_handle=f"AQEB-receipt-{n}",
            body=body,
            md5_of_body="5d41402abc4b2a76b9719d911017c592",
            attributes=attributes,
        )

    return make


@pytest.fixture
def context() -> Callable[..., LambdaContext]:
    """``context(remaining_s=60.0)``: a Lambda context counting down from `remaining_s`."""
    return LambdaContext


@pytest.fixture(scope="module")
def lambda_process() -> Iterator[None]:
    """The Lambda handlers keep one event loop for the process: close it after the module
    (``pytestmark = pytest.mark.usefixtures("lambda_process")``)."""
    yield
    import asyncloop.lambda_handler

    asyncloop.lambda_handler._close_shared()
