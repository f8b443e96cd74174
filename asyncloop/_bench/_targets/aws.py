"""The aws target: real AWS (or any endpoint given with ``--endpoint-url``). It creates a queue
per run, a DLQ, a tiny no-op function and its role, all named with a unique prefix, and
deletes them all on the way out, even when interrupted; `aws_plan` is what it tells the user
before it starts."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from .._config import BenchConfig
from .http import HttpTarget, logger

__all__ = ("AwsTarget", "aws_plan")


class AwsTarget(HttpTarget):
    """Real AWS, or `--endpoint-url` (moto in the tests). Everything it creates is deleted
    in `__aexit__`, shielded, even when the run is cancelled."""

    name = "aws"

    def __init__(self, config: BenchConfig) -> None:
        super().__init__(config)
        self.sqs_endpoint = self.lambda_endpoint = config.endpoint_url
        self.left_behind: list[str] = []

    async def _setup(self) -> None:
        response = await self.sqs.create_queue(QueueName=f"{self.prefix}-dlq")
        dlq_url = str(response["QueueUrl"])
        self.created.append(("queue", dlq_url))
        attributes = await self.sqs.get_queue_attributes(
            QueueUrl=dlq_url, AttributeNames=["QueueArn"]
        )
        self.dlq_arn = attributes["Attributes"]["QueueArn"]
        await self._create_function(wait_for_role=90)

    async def _create_queue(self) -> str:
        url = await super()._create_queue()
        self.created.append(("queue", url))
        return url

    async def _delete_queue(self, url: str) -> None:
        await super()._delete_queue(url)
        with contextlib.suppress(ValueError):
            self.created.remove(("queue", url))

    async def _teardown(self) -> None:
        if self._sqs_clients is None:
            return
        self.left_behind = await self._delete_created()
        if self.left_behind:
            logger.error("left behind (delete by hand): %s", ", ".join(self.left_behind))

    async def calibrate(self) -> dict[str, Any]:
        # Real AWS scales past one client: no ceiling to measure, and calls cost money.
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "endpoint_url": self.config.endpoint_url,
            "region": self.region,
            "prefix": self.prefix,
        }


def aws_plan(config: BenchConfig, prefix: str = "asyncloop-bench-<id>") -> str:
    """What the aws target will create, and what it will cost, for the confirmation prompt."""
    cfg = config.resolved()
    runs = (len(cfg.settings()) + len(cfg.baselines or ())) * cfg.repeats + 1
    messages = cfg.n * runs + cfg.warmup_messages
    # Per message: one Invoke, about 0.1 send, 0.1 receive, 0.1 delete (+ empty receives).
    sqs_requests = messages * 0.5
    lambda_requests = messages
    # us-east-1 list prices: SQS $0.40 per million requests; Lambda $0.20 per million
    # requests + 128 MB x about 1 ms billed each ($0.0000166667 per GB-s).
    cost = sqs_requests * 0.40e-6 + lambda_requests * (0.20e-6 + 0.125 * 0.001 * 0.0000166667)
    return (
        f"The aws target will create, in region "
        f"{config.region or os.environ.get('AWS_REGION') or 'us-east-1'}"
        f" (endpoint {config.endpoint_url or 'AWS'}):\n"
        f"  - an SQS dead-letter queue and one SQS queue per run ({runs} runs), "
        f"named {prefix}-*\n"
        f"  - an IAM role {prefix}-role and a no-op Lambda function {prefix}-fn "
        "(python3.12, 128 MB)\n"
        f"It sends and consumes about {messages:,} messages ({lambda_requests:,} invokes, about "
        f"{sqs_requests:,.0f} SQS requests): about ${cost:.4f} at us-east-1 list prices, "
        "excluding any free tier.\nEverything is deleted at the end, even on Ctrl-C."
    )
