"""The loop's settings from the Lambda environment, and its runtime wired on AWS clients.

`LoopSettings.from_env` reads every ``ASYNCLOOP_*`` variable the loop and watchdog functions
use, with Lambda-sized defaults; `build_aws_runtime` wires the consumer through the one
factory (`open_wiring`: clients, the queue's VisibilityTimeout and RedrivePolicy, the worker
function's existence, ``ASYNCLOOP_TRANSPORT``, lean unless set, as `AwsConfig`'s) and builds
the `LoopRuntime` the runner drives: the DynamoDB lease store, the Kinesis token sink and a
`Consumer` per run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from .._config import AwsConfig, ConsumerConfig, LambdaConfig
from .._emf import NAMESPACE
from .._exceptions import ConfigError
from .._validate import queue_name, validate_queue_url
from .control import LoopPolicy, LoopToken, safety_margin
from .runner import COUNTERS, LoopRuntime

__all__ = ("KinesisTokenSink", "LoopSettings", "RuntimeFactory", "build_aws_runtime")


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set ({what})", field=name)
    return value


# Lambda-sized defaults: the drain and the final flush come out of every invocation's time.
_LAMBDA_CONSUMER_DEFAULTS: Mapping[str, Any] = {"shutdown_grace": 5.0, "ack_flush_timeout": 5.0}
# And short client timeouts: a put or a lease write stuck for AwsConfig's default 70 s would
# outlive the margin. The read timeout stays above the long poll (set from it below).
_LAMBDA_AWS_DEFAULTS: Mapping[str, Any] = {"connect_timeout": 2.0, "max_attempts": 3}


def _unset(environ: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The `defaults` whose ``ASYNCLOOP_<FIELD>`` is not set: the environment wins."""
    return {k: v for k, v in defaults.items() if f"ASYNCLOOP_{k.upper()}" not in environ}


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopSettings:
    """Everything the Lambda entry points read from the environment.

    Defaults differ from the library's where an invocation's deadline demands it (each only
    when its variable is unset): ``shutdown_grace`` and ``ack_flush_timeout`` 5 s (they come
    out of every run's time), ``connect_timeout`` 2 s, ``max_attempts`` 3 and
    ``read_timeout`` the long poll plus 5 s (a stuck call must not outlive the margin).
    """

    queue_url: str
    lease_table: str
    stream_name: str
    lambda_config: LambdaConfig
    consumer: ConsumerConfig
    aws: AwsConfig
    policy: LoopPolicy
    metrics_namespace: str = NAMESPACE

    @property
    def margin(self) -> float:
        return safety_margin(
            shutdown_grace=self.consumer.shutdown_grace,
            ack_flush_timeout=self.consumer.ack_flush_timeout,
            policy=self.policy,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LoopSettings:
        """``ASYNCLOOP_QUEUE_URL``, ``ASYNCLOOP_LEASE_TABLE``, ``ASYNCLOOP_STREAM_NAME``,
        ``ASYNCLOOP_FUNCTION_NAME`` (the worker) are required; every config field is
        ``ASYNCLOOP_<FIELD>``. Raises `ConfigError` naming the variable."""
        queue_url = validate_queue_url(
            _required(environ, "ASYNCLOOP_QUEUE_URL", "the SQS queue the loop consumes"),
            field="ASYNCLOOP_QUEUE_URL",
        )
        _required(environ, "ASYNCLOOP_FUNCTION_NAME", "the worker function each message invokes")
        consumer = ConsumerConfig.from_env(environ, **_unset(environ, _LAMBDA_CONSUMER_DEFAULTS))
        aws_defaults = {
            **_LAMBDA_AWS_DEFAULTS,
            "read_timeout": float(consumer.wait_time_seconds + 5),
        }
        return cls(
            queue_url=queue_url,
            lease_table=_required(environ, "ASYNCLOOP_LEASE_TABLE", "the DynamoDB lease table"),
            stream_name=_required(
                environ, "ASYNCLOOP_STREAM_NAME", "the Kinesis stream of loop tokens"
            ),
            lambda_config=LambdaConfig.from_env(environ),
            consumer=consumer,
            aws=AwsConfig.from_env(environ, **_unset(environ, aws_defaults)),
            policy=LoopPolicy.from_env(environ),
            metrics_namespace=environ.get("ASYNCLOOP_METRICS_NAMESPACE", "").strip() or NAMESPACE,
        )


class KinesisTokenSink:
    """`TokenSink` on a Kinesis stream: one record per token, partition key = loop id."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self._client = client
        self.stream_name = stream_name

    async def put(self, token: LoopToken) -> None:
        from .._error_table import map_errors

        with map_errors("PutRecord"):
            await self._client.put_record(
                StreamName=self.stream_name, Data=token.encode(), PartitionKey=token.partition_key
            )


async def build_aws_runtime(settings: LoopSettings, stack: AsyncExitStack) -> LoopRuntime:
    """The runtime on real clients (kept open on `stack` for the life of the process)."""
    import anyio

    from .._wiring import open_wiring
    from .lease_dynamodb import DynamoLeaseStore

    consumer = settings.consumer
    wiring = await stack.enter_async_context(
        open_wiring(
            settings.queue_url,
            lambda_config=settings.lambda_config,
            config=consumer,
            aws=settings.aws,
        )
    )
    clients = wiring.clients

    async def consume(run_for: float) -> Mapping[str, int]:
        config = dataclasses.replace(consumer, deadline=anyio.current_time() + run_for)
        stats = await wiring.consumer(config).run()
        return {name: int(getattr(stats, name)) for name in COUNTERS}

    async def backlog() -> int:
        attributes = await wiring.control.get_attributes(["ApproximateNumberOfMessages"])
        return int(attributes.get("ApproximateNumberOfMessages", "0"))

    return LoopRuntime(
        lease=DynamoLeaseStore(await clients.client("dynamodb"), settings.lease_table),
        sink=KinesisTokenSink(await clients.client("kinesis"), settings.stream_name),
        consume=consume,
        backlog=backlog,
        policy=settings.policy,
        margin=settings.margin,
        dimensions={"Queue": queue_name(settings.queue_url)},
        namespace=settings.metrics_namespace,
    )


RuntimeFactory = Callable[[LoopSettings, AsyncExitStack], Awaitable[LoopRuntime]]
