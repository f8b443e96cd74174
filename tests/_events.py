"""Real-shaped Lambda events and a Lambda context whose remaining time counts down.

The shapes follow what Lambda delivers (Kinesis and SQS event source mappings) and what the
seed's consumer.js sends its worker; the tests' fixtures wrap these builders.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = (
    "ACCOUNT",
    "REGION",
    "LambdaContext",
    "kinesis_event",
    "kinesis_record",
    "seed_payload",
    "sqs_event",
    "sqs_record",
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
_sequence = itertools.count(
    49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
)


@dataclass
class LambdaContext:
    """The parts of Lambda's context object handlers use; the deadline follows `clock`."""

    remaining_s: float = 60.0
    function_name: str = "asyncloop-loop"
    clock: Callable[[], float] = time.monotonic
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = self.clock() + self.remaining_s

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self.clock()) * 1000))


def kinesis_record(
    data: bytes,
    *,
    partition_key: str,
    sequence_number: str | None = None,
    stream: str = "asyncloop-tokens",
    shard: str = "shardId-000000000000",
) -> dict[str, Any]:
    """One record of a Kinesis event, as the event source mapping delivers it."""
    seq = sequence_number or str(next(_sequence))
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": seq,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": time.time(),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/asyncloop-loop",
        "awsRegion": REGION,
        "eventSourceARN": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}",
    }


def kinesis_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def sqs_record(
    body: str,
    *,
    queue: str = "asyncloop-work",
    message_id: str | None = None,
    group_id: str | None = None,
    receive_count: int = 1,
) -> dict[str, Any]:
    """One record of an SQS event (Lambda's SQS event source mapping)."""
    attributes = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": str(int(time.time() * 1000)),
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
    }
    if group_id is not None:
        attributes["MessageGroupId"] = group_id
        attributes["SequenceNumber"] = str(next(_sequence))
        attributes["MessageDeduplicationId"] = hashlib.sha256(body.encode()).hexdigest()
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": f"AQEB{uuid.uuid4().hex}",
        "body": body,
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
        "awsRegion": REGION,
    }


def sqs_event(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}


def seed_payload(
    body: str,
    *,
    queue_url: str = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/asyncloop-work",
    message_id: str | None = None,
    receipt_handle: str | None = None,
    md5: str | None = None,
) -> dict[str, Any]:
    """What the seed's consumer sends its worker: ``{"Records": [{"sqs": {...}}]}``."""
    return {
        "Records": [
            {
                "sqs": {
                    "QueueUrl": queue_url,
                    "MessageId": message_id or str(uuid.uuid4()),
                    "ReceiptHandle": receipt_handle or f"AQEB{uuid.uuid4().hex}",
                    "MD5OfBody": md5 if md5 is not None else hashlib.md5(body.encode()).hexdigest(),
                    "Body": body,
                }
            }
        ]
    }
