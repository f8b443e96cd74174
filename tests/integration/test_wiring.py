"""The wiring factory (`open_consumer`, `open_wiring`) over real HTTP: moto's server for the
control plane checks, fauxqs + `LambdaServer` for a run on the lean transport."""

from __future__ import annotations

import json

import aioboto3
import anyio
import pytest
from _moto import REGION, CountMessages, MakeFunction, MakeQueue, SendMessages

import asyncloop
from asyncloop import (
    AwsConfig,
    ConfigError,
    ConsumerConfig,
    FunctionNotFound,
    LambdaConfig,
    LambdaDispatcher,
    Message,
    QueueNotFound,
    SqsQueue,
)
from asyncloop._lean.lambda_ import LeanInvoker
from asyncloop._lean.sqs import LeanQueue
from asyncloop._wiring import open_wiring
from asyncloop.testing import LambdaServer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

FUNCTION = "worker"


def _aws(endpoint: str, **overrides: object) -> AwsConfig:
    return AwsConfig(region=REGION, endpoint_url=endpoint, max_attempts=2, **overrides)  # type: ignore[arg-type]


async def test_open_consumer_reads_the_queues_visibility_timeout_and_checks_the_function(
    moto_endpoint: str, make_queue: MakeQueue, make_function: MakeFunction
) -> None:
    # GIVEN a queue with a 7 s visibility timeout and a DLQ, and a function, in moto
    queue = await make_queue(visibility_timeout=7, max_receive_count=4)
    function = await make_function()
    # WHEN a consumer is opened on them by the factory, with the default (lean) transport
    async with open_wiring(queue.url, function_name=function, aws=_aws(moto_endpoint)) as wiring:
        consumer = wiring.consumer()
        # THEN it works from the queue's timeout, on the lean queue and invoker (the control
        # plane on the SDK's)
        assert consumer.visibility_timeout == 7
        assert wiring.redrive_policy is not None
        assert int(wiring.redrive_policy["maxReceiveCount"]) == 4
        assert isinstance(consumer.queue, LeanQueue)
        assert isinstance(wiring.control, SqsQueue)
        assert isinstance(consumer.dispatcher, LambdaDispatcher)
        assert isinstance(consumer.dispatcher.invoker, LeanInvoker)
        # and the pool covers receivers + in-flight + ack senders
        config = ConsumerConfig()
        assert wiring.clients.pool_size == (
            config.receivers + config.max_in_flight + config.ack_concurrency
        )


async def test_open_consumer_fails_on_a_missing_function_or_queue(
    moto_endpoint: str, make_queue: MakeQueue
) -> None:
    # GIVEN a queue but no function
    queue = await make_queue()
    # WHEN / THEN a consumer on a missing function fails before receiving anything
    with pytest.raises(FunctionNotFound):
        async with asyncloop.open_consumer(
            queue.url, function_name="missing", aws=_aws(moto_endpoint)
        ):
            pass
    # WHEN / THEN and one on a missing queue too
    missing = queue.url.rsplit("/", 1)[0] + "/missing"
    with pytest.raises(QueueNotFound):
        async with asyncloop.open_consumer(
            missing, handler=lambda message: None, aws=_aws(moto_endpoint)
        ):
            pass


async def test_open_consumer_wants_exactly_one_target(moto_endpoint: str) -> None:
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
    # GIVEN / WHEN neither or both targets / THEN a ConfigError before any call
    with pytest.raises(ConfigError, match="one dispatch target"):
        async with asyncloop.open_consumer(url, aws=_aws(moto_endpoint)):
            pass
    with pytest.raises(ConfigError, match="one dispatch target"):
        async with asyncloop.open_consumer(
            url, function_name="f", handler=lambda message: None, aws=_aws(moto_endpoint)
        ):
            pass
    with pytest.raises(ConfigError, match="differs from lambda_config"):
        async with asyncloop.open_consumer(
            url,
            function_name="f",
            lambda_config=LambdaConfig(function_name="g"),
            aws=_aws(moto_endpoint),
        ):
            pass


async def test_a_handler_consumer_drains_a_queue_over_moto(
    moto_endpoint: str, make_queue: MakeQueue, send_messages: SendMessages,
    count_messages: CountMessages,
) -> None:  # fmt: skip
    # GIVEN 20 messages and an in-process handler
    queue = await make_queue()
    await send_messages(queue.url, 20)
    seen: list[str] = []

    async def handler(message: Message) -> None:
        seen.append(message.message_id)

    # WHEN the factory's consumer runs until empty
    async with asyncloop.open_consumer(
        queue.url,
        handler=handler,
        config=ConsumerConfig(until_empty=True, wait_time_seconds=0),
        aws=_aws(moto_endpoint),
    ) as consumer:
        with anyio.fail_after(60):
            stats = await consumer.run()
    # THEN every message was handled once and deleted
    assert len(set(seen)) == 20
    assert stats.deleted == 20
    assert await count_messages(queue.url) == 0


# -- the lean transport, chosen by AwsConfig.transport ---------------------------------------


async def test_transport_lean_builds_lean_objects_and_drains_50_messages(
    fauxqs_url: str, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN fauxqs for SQS and a LambdaServer for Lambda (one endpoint each, by botocore's
    # per-service variables), a queue with 50 messages
    async with LambdaServer(latency=0.0, functions=[FUNCTION], strict_functions=True) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", fauxqs_url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.endpoint_url)
        session = aioboto3.Session(region_name=REGION)
        async with session.client("sqs") as sqs:
            name = f"wiring-lean-{anyio.current_time():.0f}".replace(".", "-")
            url = (await sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30"}))[
                "QueueUrl"
            ]
            for start in range(0, 50, 10):
                await sqs.send_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "MessageBody": json.dumps({"n": i})}
                        for i in range(start, start + 10)
                    ],
                )
            # WHEN the factory builds a consumer with transport="lean" and runs it until empty
            aws = AwsConfig(region=REGION, transport="lean", max_attempts=2)
            async with asyncloop.open_consumer(
                url,
                lambda_config=LambdaConfig(
                    function_name=FUNCTION, invocation_type="RequestResponse"
                ),
                config=ConsumerConfig(until_empty=True, wait_time_seconds=1, max_in_flight=16),
                aws=aws,
            ) as consumer:
                # THEN the data plane is the lean transport's
                assert isinstance(consumer.queue, LeanQueue)
                assert isinstance(consumer.dispatcher, LambdaDispatcher)
                assert isinstance(consumer.dispatcher.invoker, LeanInvoker)
                assert consumer.visibility_timeout == 30
                with anyio.fail_after(60):
                    stats = await consumer.run()
            # and every message went through it: invoked, deleted, the queue empty
            assert stats.deleted == 50
            assert server.invocations_by_function[FUNCTION] == 50
            attributes = await sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
            assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
            assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


async def test_the_wiring_freezes_what_it_loaded_for_the_block_only(
    moto_endpoint: str, make_queue: MakeQueue
) -> None:
    import gc

    queue = await make_queue()
    assert gc.get_freeze_count() == 0
    # WHEN a consumer is wired
    async with open_wiring(queue.url, handler=lambda message: None, aws=_aws(moto_endpoint)):
        # THEN what was alive (botocore's models, the clients) is out of the collector's passes
        frozen = gc.get_freeze_count()
    # AND back in them once the block ends
    assert frozen > 10_000
    assert gc.get_freeze_count() == 0
    # WHEN the program froze objects itself THEN the wiring leaves its choice alone: it adds
    # none (some of the program's may die meanwhile) and unfreezes nothing
    gc.freeze()
    try:
        mine = gc.get_freeze_count()
        async with open_wiring(queue.url, handler=lambda message: None, aws=_aws(moto_endpoint)):
            assert 0 < gc.get_freeze_count() <= mine
        assert 0 < gc.get_freeze_count() <= mine
    finally:
        gc.unfreeze()
