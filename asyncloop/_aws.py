"""The AWS boundary's SDK side: the aioboto3 clients, the SQS queue and the Lambda invoker.

Every call goes through `map_errors` (`_error_table`, the one error table), so the consumer core
never sees a botocore type.

aioboto3 (and with it botocore and aiohttp, a quarter of a second) is imported only when
`AwsClients` opens, so ``import asyncloop`` stays cheap for a Lambda cold start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio

from ._config import AwsConfig
from ._error_table import map_errors
from ._exceptions import ConfigError
from ._lifetime import OpenOnce
from ._limits import MAX_BATCH, MAX_VISIBILITY, MAX_WAIT_TIME, InvocationType
from ._types import BatchEntryFailure, InvokeResult, Message
from ._validate import check_entries, check_int, check_range, validate_queue_url

__all__ = (
    "AioLambdaInvoker",
    "AwsClients",
    "SqsQueue",
    "batch_failures",
)


class AwsClients(OpenOnce):
    """aioboto3 clients created once and closed together: ``async with AwsClients(...) as aws``.

    `sqs` and `lambda_` are created on entry; `client(name)` creates any other service's client
    on first use and caches it. Every client shares one botocore config: `pool_size` HTTP
    connections (unless ``config.max_pool_connections`` is set), botocore's own retry mode, and
    the timeouts, region and endpoint of `config`. Size `pool_size` to the calls you run at once
    (receivers + in-flight invokes): requests beyond the pool wait silently.
    """

    def __init__(self, config: AwsConfig, *, pool_size: int) -> None:
        if isinstance(pool_size, bool) or not isinstance(pool_size, int):
            raise ConfigError(f"pool_size must be an int, got {pool_size!r}", field="pool_size")
        check_range("pool_size", pool_size, 1, 10_000)
        self._config = config
        self._pool_size = pool_size
        self._clients: dict[str, Any] = {}
        self._stack: AsyncExitStack | None = None
        self._session: Any = None
        self._botocore_config: Any = None
        self._lock: anyio.Lock | None = None

    @property
    def config(self) -> AwsConfig:
        """The configuration the clients were built from."""
        return self._config

    @property
    def pool_size(self) -> int:
        """HTTP connections per client: ``config.max_pool_connections`` or `pool_size`."""
        return self._config.max_pool_connections or self._pool_size

    @property
    def sqs(self) -> Any:
        """The SQS client (aiobotocore)."""
        return self._get("sqs")

    @property
    def lambda_(self) -> Any:
        """The Lambda client (aiobotocore)."""
        return self._get("lambda")

    async def client(self, service: str) -> Any:
        """The client for `service` (``kinesis``, ``dynamodb``...), created on first use."""
        self._check_open()
        assert self._lock is not None
        async with self._lock:
            self._check_open()
            if service not in self._clients:
                await self._create(service)
            return self._clients[service]

    async def _open(self) -> None:
        # Imported here, not at module level: aioboto3 costs about 250 ms to import (once)
        import aioboto3
        from aiobotocore.config import AioConfig

        cfg = self._config
        self._botocore_config = AioConfig(
            max_pool_connections=self.pool_size,
            # botocore's "max_attempts" counts retries only; "total_max_attempts" counts the first
            retries={"mode": cfg.retry_mode, "total_max_attempts": cfg.max_attempts},
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
        )
        self._session = aioboto3.Session(region_name=cfg.region)
        self._lock = anyio.Lock()
        self._stack = AsyncExitStack()
        await self._create("sqs")
        await self._create("lambda")

    async def _close(self) -> None:
        # Shielded so a cancel doesn't leak connections
        stack, self._stack = self._stack, None
        self._clients.clear()
        if stack is not None:
            with anyio.move_on_after(10, shield=True):
                await stack.aclose()

    async def _create(self, service: str) -> None:
        assert self._stack is not None
        creator = self._session.client(
            service,
            region_name=self._config.region,
            endpoint_url=self._config.endpoint_url,
            config=self._botocore_config,
        )
        with map_errors(f"CreateClient({service})"):
            self._clients[service] = await self._stack.enter_async_context(creator)

    def _get(self, service: str) -> Any:
        self._check_open()
        return self._clients[service]


def batch_failures(response: Mapping[str, Any]) -> list[BatchEntryFailure]:
    """A batch call's ``Failed`` entries (in botocore's shape) as `BatchEntryFailure`s."""
    return [
        BatchEntryFailure(
            id=entry["Id"],
            code=entry.get("Code", ""),
            message=entry.get("Message", ""),
            sender_fault=bool(entry.get("SenderFault", False)),
        )
        for entry in response.get("Failed", ())
    ]


def receive_request(
    queue_url: str, *, max_messages: int, wait_time_seconds: int, visibility_timeout: int | None
) -> dict[str, Any]:
    """ReceiveMessage's parameters, checked, asking for every system and message attribute:
    one shape for both transports (`SqsQueue` and the lean `LeanQueue`)."""
    check_int("max_messages", max_messages, 1, MAX_BATCH)
    check_int("wait_time_seconds", wait_time_seconds, 0, MAX_WAIT_TIME)
    request: dict[str, Any] = {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": max_messages,
        "WaitTimeSeconds": wait_time_seconds,
        # MessageSystemAttributeNames replaces AttributeNames; older endpoints know only that
        "MessageSystemAttributeNames": ["All"],
        "AttributeNames": ["All"],
        "MessageAttributeNames": ["All"],
    }
    if visibility_timeout is not None:
        check_int("visibility_timeout", visibility_timeout, 0, MAX_VISIBILITY)
        request["VisibilityTimeout"] = visibility_timeout
    return request


class SqsQueue:
    """The `Queue` protocol over an aiobotocore SQS client (the caller owns the client).

    Batch calls enforce SQS's rules before sending (1..10 entries, distinct well-formed Ids):
    moto accepts what real SQS rejects, so tests against it would not catch a violation.
    """

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = validate_queue_url(queue_url)

    @property
    def queue_url(self) -> str:
        return self._queue_url

    def __repr__(self) -> str:
        return f"SqsQueue(queue_url={self._queue_url!r})"

    async def receive(
        self,
        *,
        max_messages: int,
        wait_time_seconds: int,
        visibility_timeout: int | None = None,
    ) -> list[Message]:
        """ReceiveMessage with every system and message attribute."""
        kwargs = receive_request(
            self._queue_url,
            max_messages=max_messages,
            wait_time_seconds=wait_time_seconds,
            visibility_timeout=visibility_timeout,
        )
        with map_errors("ReceiveMessage", queue_url=self._queue_url):
            response = await self._client.receive_message(**kwargs)
        received_at = anyio.current_time()
        return [
            Message(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m.get("Body", ""),
                md5_of_body=m.get("MD5OfBody", ""),
                attributes=m.get("Attributes", {}),
                message_attributes=m.get("MessageAttributes", {}),
                received_at=received_at,
            )
            for m in response.get("Messages", ())
        ]

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> list[BatchEntryFailure]:
        """DeleteMessageBatch of ``(entry_id, receipt_handle)``; returns the entries that failed."""
        check_entries("DeleteMessageBatch", [entry_id for entry_id, _ in entries])
        with map_errors("DeleteMessageBatch", queue_url=self._queue_url):
            response = await self._client.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": i, "ReceiptHandle": handle} for i, handle in entries],
            )
        return batch_failures(response)

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> list[BatchEntryFailure]:
        """ChangeMessageVisibilityBatch of ``(entry_id, receipt_handle, timeout_s)`` (0..43200)."""
        check_entries("ChangeMessageVisibilityBatch", [entry_id for entry_id, _, _ in entries])
        for _, _, timeout in entries:
            check_int("visibility timeout", timeout, 0, MAX_VISIBILITY)
        with map_errors("ChangeMessageVisibilityBatch", queue_url=self._queue_url):
            response = await self._client.change_message_visibility_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": i, "ReceiptHandle": handle, "VisibilityTimeout": timeout}
                    for i, handle, timeout in entries
                ],
            )
        return batch_failures(response)

    async def get_attributes(self, names: Sequence[str] = ("All",)) -> dict[str, str]:
        """GetQueueAttributes: raises `QueueNotFound` when the queue does not exist."""
        with map_errors("GetQueueAttributes", queue_url=self._queue_url):
            response = await self._client.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=list(names)
            )
        return dict(response.get("Attributes", {}))


class AioLambdaInvoker:
    """The `LambdaInvoker` protocol over an aiobotocore Lambda client (the caller owns it)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def invoke(
        self, *, function_name: str, payload: bytes, invocation_type: InvocationType
    ) -> InvokeResult:
        """Invoke; a 429 raises `FunctionError` with ``throttled=True``.

        A function's own failure is not an exception here: it is `InvokeResult.function_error`.
        """
        with map_errors("Invoke", function_name=function_name):
            response = await self._client.invoke(
                FunctionName=function_name, InvocationType=invocation_type, Payload=payload
            )
            body = response.get("Payload")
            data = b""
            if body is not None:
                # Always read and release the stream, or aiohttp warns of an unclosed connection
                async with body:
                    data = await body.read()
        return InvokeResult(
            status_code=int(response["StatusCode"]),
            function_error=response.get("FunctionError"),
            payload=data,
        )

    async def get_function(self, function_name: str) -> dict[str, Any]:
        """GetFunction (``Configuration``, ``Code``...): raises `FunctionNotFound` when missing.

        The existence check: moto without Docker answers an Invoke of a missing function 202.
        """
        with map_errors("GetFunction", function_name=function_name):
            response = await self._client.get_function(FunctionName=function_name)
        return {k: v for k, v in response.items() if k != "ResponseMetadata"}
