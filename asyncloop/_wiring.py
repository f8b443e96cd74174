"""The one wiring factory: AWS clients, queue, dispatch target and a ready `Consumer`.

The CLI (``asyncloop run``), the Lambda loop and Python users all wire a consumer here, so
the steps cannot drift apart between them::

    async with asyncloop.open_consumer(queue_url, function_name="worker") as consumer:
        stats = await consumer.run()

`open_wiring` does the work once and can build several consumers on the same clients (the
Lambda loop builds one per run): it opens the clients with a pool sized to the consumer
(receivers + max_in_flight + ack senders: requests beyond the pool wait silently), reads the
queue's ``VisibilityTimeout`` and ``RedrivePolicy`` (GetQueueAttributes: a missing queue
fails here, not as receive backoffs), checks the function exists when dispatching to
Lambda (GetFunction: emulators accept an Event invoke of a missing function), and builds the
data plane on `AwsConfig.transport` (aiobotocore, or the lean transport). Control-plane
calls stay on aiobotocore either way.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._config import AwsConfig, ConsumerConfig, LambdaConfig
from ._consumer import Consumer
from ._dispatch import CallableDispatcher, LambdaDispatcher
from ._exceptions import ConfigError
from ._protocols import Dispatcher, LambdaInvoker, Queue
from ._validate import validate_queue_url

if TYPE_CHECKING:
    from ._aws import AwsClients, SqsQueue

__all__ = ("Wiring", "open_consumer", "open_wiring", "pool_size")

logger = logging.getLogger("asyncloop")


def pool_size(config: ConsumerConfig) -> int:
    """HTTP connections per client a consumer with `config` can use at once: its long polls,
    its dispatches in flight and its delete/visibility senders."""
    return config.receivers + config.max_in_flight + config.ack_concurrency


@dataclass(frozen=True, slots=True, kw_only=True)
class Wiring:
    """What `open_wiring` opened and read; valid while its context is open."""

    queue_url: str
    config: ConsumerConfig
    clients: AwsClients
    """The aiobotocore clients (also for other services: ``await clients.client("kinesis")``)."""
    queue: Queue
    """The data-plane queue: `SqsQueue` or the lean transport's `LeanQueue`."""
    control: SqsQueue
    """The queue on aiobotocore, for control-plane calls (``get_attributes``)."""
    dispatcher: Dispatcher
    visibility_timeout: int | None
    """The queue's own VisibilityTimeout (seconds), which the heartbeat works from unless
    ``config.visibility_timeout`` is set."""
    redrive_policy: Mapping[str, Any] | None
    """The queue's RedrivePolicy (``deadLetterTargetArn``, ``maxReceiveCount``), or None."""

    def consumer(self, config: ConsumerConfig | None = None) -> Consumer:
        """A new `Consumer` on this wiring (`config` defaults to the one it was opened with;
        a different one should not need a bigger pool than that)."""
        return Consumer(
            queue=self.queue,
            dispatcher=self.dispatcher,
            config=config or self.config,
            visibility_timeout=self.visibility_timeout,
        )


def _target(
    function_name: str | None,
    handler: Callable[..., Any] | None,
    lambda_config: LambdaConfig | None,
) -> LambdaConfig | Callable[..., Any]:
    if (
        lambda_config is not None
        and function_name is not None
        and function_name != lambda_config.function_name
    ):
        raise ConfigError(
            f"function_name {function_name!r} differs from lambda_config's "
            f"{lambda_config.function_name!r}: give one",
            field="function_name",
        )
    if lambda_config is None and function_name is not None:
        lambda_config = LambdaConfig(function_name=function_name)
    if (lambda_config is None) == (handler is None):
        raise ConfigError(
            "give one dispatch target: function_name (or lambda_config) or handler",
            field="function_name",
        )
    return lambda_config if lambda_config is not None else handler  # type: ignore[return-value]


@asynccontextmanager
async def open_wiring(
    queue_url: str,
    *,
    function_name: str | None = None,
    handler: Callable[..., Any] | None = None,
    config: ConsumerConfig | None = None,
    lambda_config: LambdaConfig | None = None,
    aws: AwsConfig | None = None,
) -> AsyncIterator[Wiring]:
    """Open the clients (and the lean transport when ``aws.transport == "lean"``), read the
    queue's attributes, check the function, and yield the `Wiring`; close everything on exit.

    Raises `ConfigError` for a bad argument, `QueueNotFound` / `FunctionNotFound` when the
    queue or function is missing, `CredentialsError` when AWS refuses the credentials.
    """
    from ._aws import AioLambdaInvoker, AwsClients, SqsQueue

    queue_url = validate_queue_url(queue_url)
    target = _target(function_name, handler, lambda_config)
    config = config if config is not None else ConsumerConfig()
    aws = aws if aws is not None else AwsConfig()
    async with AsyncExitStack() as stack:
        clients = await stack.enter_async_context(AwsClients(aws, pool_size=pool_size(config)))
        control = SqsQueue(clients.sqs, queue_url)
        attributes = await control.get_attributes(["VisibilityTimeout", "RedrivePolicy"])
        sdk_invoker = AioLambdaInvoker(clients.lambda_)
        if isinstance(target, LambdaConfig):
            await sdk_invoker.get_function(target.function_name)
        queue: Queue = control
        invoker: LambdaInvoker = sdk_invoker
        if aws.transport == "lean":
            # Imported here: a run on the sdk transport never loads the lean modules
            from ._lean.transport import LeanTransport

            lean = await stack.enter_async_context(LeanTransport.from_clients(clients))
            queue = lean.queue(queue_url)
            invoker = lean.invoker()
        dispatcher: Dispatcher
        if isinstance(target, LambdaConfig):
            dispatcher = LambdaDispatcher(
                invoker=invoker, config=target, queue_url=queue_url, region=aws.region
            )
        else:
            dispatcher = CallableDispatcher(target)
        # What is alive now (botocore's loaded models, the clients: about 80,000 objects)
        # lives as long as the run: frozen, the cyclic collector's full passes stop walking
        # it (measured on the sdk transport: a third of their time). Unfrozen when the block
        # ends, so nothing stays frozen; left alone if the program froze objects itself
        if gc.get_freeze_count() == 0:
            gc.freeze()
            stack.callback(gc.unfreeze)
        visibility = attributes.get("VisibilityTimeout")
        redrive = _redrive_policy(attributes.get("RedrivePolicy"))
        logger.info(
            "wired: queue=%s transport=%s visibility_timeout=%s max_receive_count=%s",
            queue_url,
            aws.transport,
            visibility,
            redrive.get("maxReceiveCount") if redrive else None,
        )
        yield Wiring(
            queue_url=queue_url,
            config=config,
            clients=clients,
            queue=queue,
            control=control,
            dispatcher=dispatcher,
            visibility_timeout=int(visibility) if visibility else None,
            redrive_policy=redrive,
        )


def _redrive_policy(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        policy = json.loads(raw)
    except ValueError:
        return None
    return policy if isinstance(policy, dict) else None


@asynccontextmanager
async def open_consumer(
    queue_url: str,
    *,
    function_name: str | None = None,
    handler: Callable[..., Any] | None = None,
    config: ConsumerConfig | None = None,
    lambda_config: LambdaConfig | None = None,
    aws: AwsConfig | None = None,
) -> AsyncIterator[Consumer]:
    """A ready `Consumer` on `queue_url`, its clients open for the block::

        async with open_consumer(url, function_name="worker",
                                 config=ConsumerConfig(until_empty=True)) as consumer:
            stats = await consumer.run()

    Give one target: `function_name` (or `lambda_config`, for the invocation type and
    payload format) to invoke a Lambda function per message, or `handler` (a callable taking
    a `Message`, async or sync) to run in-process. `config` defaults to ``ConsumerConfig()``,
    `aws` to ``AwsConfig()`` (region and credentials from the environment; its `transport`
    picks aiobotocore or the lean transport).

    The factory sizes the connection pool to `config`, reads the queue's VisibilityTimeout (the
    heartbeat works from it) and RedrivePolicy, and checks the function exists, so a wrong
    name or a missing queue fails here (`QueueNotFound`, `FunctionNotFound`) before anything
    is received. The clients close when the block ends.
    """
    async with open_wiring(
        queue_url,
        function_name=function_name,
        handler=handler,
        config=config,
        lambda_config=lambda_config,
        aws=aws,
    ) as wiring:
        yield wiring.consumer()
