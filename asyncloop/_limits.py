"""AWS's limits and literals, defined once: every module that checks or uses one imports it here.

SQS: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html
Lambda: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = (
    "EVENT_PAYLOAD_LIMIT",
    "INVOCATION_TYPES",
    "MAX_BATCH",
    "MAX_SEND_BATCH_BYTES",
    "MAX_VISIBILITY",
    "MAX_WAIT_TIME",
    "REQUEST_RESPONSE_PAYLOAD_LIMIT",
    "InvocationType",
)

# -- SQS -------------------------------------------------------------------------------------

MAX_VISIBILITY: Final = 43_200
"""Longest visibility timeout, seconds (12 hours), and the most a message can stay invisible
from its receive however often it is extended."""

MAX_WAIT_TIME: Final = 20
"""Longest ReceiveMessage long poll, whole seconds."""

MAX_BATCH: Final = 10
"""Most messages per ReceiveMessage and entries per batch call (delete, visibility, send)."""

MAX_SEND_BATCH_BYTES: Final = 262_144
"""Most bytes in one message and in a whole SendMessageBatch (256 KiB)."""

# -- Lambda ----------------------------------------------------------------------------------

InvocationType = Literal["Event", "RequestResponse"]
"""The invocation types a dispatch uses: Event (asynchronous) or RequestResponse."""

INVOCATION_TYPES: Final[tuple[str, ...]] = get_args(InvocationType)

REQUEST_RESPONSE_PAYLOAD_LIMIT: Final = 6 * 1024 * 1024
"""Largest synchronous (RequestResponse) invoke payload, bytes (6 MB)."""

EVENT_PAYLOAD_LIMIT: Final = 1024 * 1024
"""Largest asynchronous (Event) invoke payload, bytes: 1 MB since 2025 (256 KB before; set
`LambdaDispatcher`'s ``event_payload_limit`` lower where an account still has the old one)."""
