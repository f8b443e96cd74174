"""The AWS boundary: error translation, the aioboto3 clients, the SQS queue and the Lambda invoker.

botocore stops here. Every call goes through `map_errors`, which turns botocore's and aiohttp's
exceptions into `asyncloop.AwsError` subclasses by one table (`ERROR_TABLE`), keeping the
original as ``__cause__``; the consumer core never sees a botocore type.

aioboto3 (and with it botocore and aiohttp, a quarter of a second) is imported only when
`AwsClients` opens, so ``import asyncloop`` stays cheap for a Lambda cold start.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._config import AwsConfig, _check_range, validate_queue_url
from ._exceptions import (
    AsyncloopError,
    AwsError,
    ClosedError,
    ConditionFailed,
    ConfigError,
    CredentialsError,
    FunctionError,
    FunctionNotFound,
    QueueError,
    QueueNotFound,
    TableError,
    TransportError,
)
from ._protocols import InvocationType
from ._types import BatchEntryFailure, InvokeResult, Message

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

__all__ = (
    "ERROR_TABLE",
    "AioLambdaInvoker",
    "AwsClients",
    "ErrorRule",
    "SqsQueue",
    "error_from_response",
    "map_errors",
)


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """How one AWS error code is translated.

    `error` is the class to raise, or None for the call's own class (`QueueError` for an SQS
    call, `FunctionError` for a Lambda call, `TableError` for a DynamoDB call, `AwsError`
    otherwise). `retryable` says the same
    call may succeed later; `throttled` says the service refused for rate or capacity.
    """

    error: type[AwsError] | None = None
    retryable: bool = False
    throttled: bool = False


_THROTTLED: Final = ErrorRule(retryable=True, throttled=True)
_TRANSIENT: Final = ErrorRule(retryable=True)
_PERMANENT: Final = ErrorRule()
_CREDENTIALS: Final = ErrorRule(CredentialsError)

# The one table. Codes not listed fall back on the HTTP status: 429 is throttled, 5xx retryable.
# botocore has already retried throttled and transient errors (its retry mode) before we see them.
ERROR_TABLE: Final[Mapping[str, ErrorRule]] = {
    # SQS: the queue is missing (botocore reports the query-protocol code, or the JSON one)
    "AWS.SimpleQueueService.NonExistentQueue": ErrorRule(QueueNotFound),
    "QueueDoesNotExist": ErrorRule(QueueNotFound),
    # Lambda: the function, version or alias is missing (other services share this code: on
    # a DynamoDB or Kinesis call it is the call's own class, the table or stream is missing)
    "ResourceNotFoundException": ErrorRule(FunctionNotFound),
    # DynamoDB: a conditional write lost (an answer to the caller, not a failure). A cancelled
    # transaction is read the same way: the lease store's transactions are all conditions
    "ConditionalCheckFailedException": ErrorRule(ConditionFailed),
    "TransactionCanceledException": ErrorRule(ConditionFailed),
    # Credentials missing, refused, expired, or signed with a skewed clock
    "InvalidClientTokenId": _CREDENTIALS,
    "UnrecognizedClientException": _CREDENTIALS,
    "AccessDenied": _CREDENTIALS,
    "AccessDeniedException": _CREDENTIALS,
    "ExpiredToken": _CREDENTIALS,
    "ExpiredTokenException": _CREDENTIALS,
    "SignatureDoesNotMatch": _CREDENTIALS,
    "InvalidSignatureException": _CREDENTIALS,
    "IncompleteSignature": _CREDENTIALS,
    "MissingAuthenticationToken": _CREDENTIALS,
    "MissingAuthenticationTokenException": _CREDENTIALS,
    "InvalidAccessKeyId": _CREDENTIALS,
    "InvalidToken": _CREDENTIALS,
    "AuthFailure": _CREDENTIALS,
    "RequestExpired": _CREDENTIALS,
    "RequestTimeTooSkewed": _CREDENTIALS,
    "RequestInTheFuture": _CREDENTIALS,
    # Throttling: botocore's list (retries/standard.py) plus the SQS and KMS ones
    "Throttling": _THROTTLED,
    "ThrottlingException": _THROTTLED,
    "ThrottledException": _THROTTLED,
    "RequestThrottled": _THROTTLED,
    "RequestThrottledException": _THROTTLED,
    "TooManyRequestsException": _THROTTLED,
    "ProvisionedThroughputExceededException": _THROTTLED,
    "TransactionInProgressException": _THROTTLED,
    "RequestLimitExceeded": _THROTTLED,
    "BandwidthLimitExceeded": _THROTTLED,
    "LimitExceededException": _THROTTLED,
    "SlowDown": _THROTTLED,
    "PriorRequestNotComplete": _THROTTLED,
    "EC2ThrottledException": _THROTTLED,
    "KmsThrottled": _THROTTLED,
    "KMSThrottlingException": _THROTTLED,
    # SQS: too many messages in flight (120,000 standard, 20,000 FIFO): wait for some to finish
    "OverLimit": _THROTTLED,
    # Transient: the service failed, or the resource is changing state
    "InternalError": _TRANSIENT,
    "InternalFailure": _TRANSIENT,
    "InternalServerError": _TRANSIENT,
    "ServiceUnavailable": _TRANSIENT,
    "ServiceUnavailableException": _TRANSIENT,
    "ServiceException": _TRANSIENT,
    "RequestTimeout": _TRANSIENT,
    "RequestTimeoutException": _TRANSIENT,
    "PurgeQueueInProgress": _TRANSIENT,
    "QueueDeletedRecently": _TRANSIENT,
    "ResourceConflictException": _TRANSIENT,
    "ResourceNotReadyException": _TRANSIENT,
    # DynamoDB and Kinesis: the table or stream is being created, updated or deleted (to
    # CreateTable: it exists already, which its caller reads by `.code`)
    "ResourceInUseException": _TRANSIENT,
    # DynamoDB: another transaction holds one of the items
    "TransactionConflictException": _TRANSIENT,
    "SnapStartNotReadyException": _TRANSIENT,
    "SnapStartTimeoutException": _TRANSIENT,
    "ENILimitReachedException": _TRANSIENT,
    "SubnetIPAddressLimitReachedException": _TRANSIENT,
    "EC2UnexpectedException": _TRANSIENT,
    "EFSMountConnectivityException": _TRANSIENT,
    "EFSMountTimeoutException": _TRANSIENT,
    # Lambda answers these with 502, but the function is misconfigured: retrying won't help
    "EC2AccessDeniedException": _PERMANENT,
    "InvalidRuntimeException": _PERMANENT,
    "InvalidZipFileException": _PERMANENT,
    "InvalidSecurityGroupIDException": _PERMANENT,
    "InvalidSubnetIDException": _PERMANENT,
    "KMSAccessDeniedException": _PERMANENT,
    "KMSDisabledException": _PERMANENT,
    "KMSInvalidStateException": _PERMANENT,
    "KMSNotFoundException": _PERMANENT,
}


def _rule_for(code: str, status: int | None) -> ErrorRule:
    rule = ERROR_TABLE.get(code)
    if rule is not None:
        return rule
    if status == 429:
        return _THROTTLED
    if status is not None and status >= 500:
        return _TRANSIENT
    return _PERMANENT


def _build(
    error: type[AwsError] | None,
    message: str,
    *,
    operation: str,
    code: str | None,
    retryable: bool,
    throttled: bool,
    queue_url: str | None,
    function_name: str | None,
    table: str | None = None,
) -> AwsError:
    # ResourceNotFoundException is Lambda's, Kinesis's, DynamoDB's...: a missing function only
    # on a Lambda call
    if error is None or (issubclass(error, FunctionError) and function_name is None):
        if queue_url is not None:
            error = QueueError
        elif function_name is not None:
            error = FunctionError
        elif table is not None:
            error = TableError
        else:
            error = AwsError
    common: dict[str, Any] = {
        "operation": operation,
        "code": code,
        "retryable": retryable,
        "throttled": throttled,
    }
    if issubclass(error, QueueError):
        return error(message, queue_url=queue_url, **common)
    if issubclass(error, FunctionError):
        return error(message, function_name=function_name, **common)
    if issubclass(error, TableError):
        return error(message, table=table, **common)
    return error(message, **common)


def error_from_response(
    operation: str,
    *,
    code: str | None,
    message: str | None,
    status: int | None,
    alt_code: str | None = None,
    queue_url: str | None = None,
    function_name: str | None = None,
    table: str | None = None,
) -> AwsError:
    """The asyncloop error for an AWS error answer, by `ERROR_TABLE` (as for a ``ClientError``).

    `code` is the error code as botocore's parser reports it (``Error.Code``), `alt_code` the
    other protocol's code (``Error.QueryErrorCode``), `status` the HTTP status: a code not in
    the table falls back on it (429 throttled, 5xx retryable). The lean transport calls this
    with what botocore's parser made of the answer; `map_errors` with a ``ClientError``'s.
    """
    code = str(code or "Unknown")
    # The JSON protocol's code, when botocore reported the legacy query code (or vice versa)
    if code not in ERROR_TABLE and alt_code is not None and alt_code in ERROR_TABLE:
        rule = ERROR_TABLE[alt_code]
    else:
        rule = _rule_for(code, status)
    where = _describe(operation, queue_url, function_name, table)
    text = f"{where} failed: {code}: {message}" if message else f"{where} failed: {code}"
    return _build(
        rule.error,
        text,
        operation=operation,
        code=code,
        retryable=rule.retryable,
        throttled=rule.throttled,
        queue_url=queue_url,
        function_name=function_name,
        table=table,
    )


def _describe(
    operation: str, queue_url: str | None, function_name: str | None, table: str | None = None
) -> str:
    target = queue_url or function_name or (f"table {table!r}" if table else None)
    return f"{operation} on {target}" if target else operation


def _translate(
    exc: Exception,
    operation: str,
    *,
    queue_url: str | None = None,
    function_name: str | None = None,
    table: str | None = None,
) -> AsyncloopError | None:
    """The asyncloop error for `exc`, or None when it is not an AWS or transport failure."""
    if isinstance(exc, AsyncloopError):
        return None
    # Only the error path pays for importing botocore (already loaded if a client ran)
    from botocore import exceptions as bce

    where = _describe(operation, queue_url, function_name, table)
    context: dict[str, Any] = {
        "operation": operation,
        "queue_url": queue_url,
        "function_name": function_name,
        "table": table,
    }
    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        return error_from_response(
            operation,
            code=error.get("Code"),
            message=error.get("Message"),
            status=exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            alt_code=error.get("QueryErrorCode"),
            queue_url=queue_url,
            function_name=function_name,
            table=table,
        )
    name = type(exc).__name__
    if isinstance(
        exc,
        bce.NoCredentialsError
        | bce.PartialCredentialsError
        | bce.CredentialRetrievalError
        | bce.NoAuthTokenError
        | bce.TokenRetrievalError
        | bce.UnknownCredentialError,
    ):
        return _build(
            CredentialsError,
            f"{where} failed: {exc}",
            code=name,
            retryable=False,
            throttled=False,
            **context,
        )
    aiohttp = sys.modules.get("aiohttp")
    transport: tuple[type[BaseException], ...] = (
        bce.HTTPClientError,  # ReadTimeoutError, ConnectionClosedError, ResponseStreamingError
        bce.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, SSLError, proxy
        bce.IncompleteReadError,
        TimeoutError,  # asyncio.TimeoutError is TimeoutError since Python 3.11
    )
    # An aiohttp error can exist only if aiohttp is imported: don't import it to find out
    if aiohttp is not None:
        transport += (aiohttp.ClientError,)
    if isinstance(exc, transport):
        return _build(
            TransportError,
            f"{where} failed: {name}: {exc}",
            code=name,
            retryable=True,
            throttled=False,
            **context,
        )
    if isinstance(exc, bce.NoRegionError):
        return ConfigError(
            f"{where}: no region: set AwsConfig.region or AWS_REGION ({exc})", field="region"
        )
    if isinstance(exc, bce.BotoCoreError):
        return _build(
            None,
            f"{where} failed: {name}: {exc}",
            code=name,
            retryable=False,
            throttled=False,
            **context,
        )
    return None


@contextmanager
def map_errors(
    operation: str,
    *,
    queue_url: str | None = None,
    function_name: str | None = None,
    table: str | None = None,
) -> Iterator[None]:
    """Translate botocore, aiohttp and timeout errors raised in the block (see `ERROR_TABLE`).

    The context names the call's target and with it the error's class: `queue_url` for an SQS
    call (`QueueError`), `function_name` for a Lambda call (`FunctionError`), `table` for a
    DynamoDB call (`TableError`); a call without one (Kinesis, S3, CloudFormation) raises
    `AwsError` unless its code has a class of its own.

    The asyncloop error keeps the original as ``__cause__``. Cancellation, other
    ``BaseException``s, asyncloop's own errors and unrelated exceptions pass through unchanged.
    """
    try:
        yield
    # Exception, not BaseException: CancelledError and KeyboardInterrupt pass untouched
    except Exception as exc:
        error = _translate(
            exc, operation, queue_url=queue_url, function_name=function_name, table=table
        )
        if error is None:
            raise
        raise error from exc


class AwsClients:
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
        _check_range("pool_size", pool_size, 1, 10_000)
        self._config = config
        self._pool_size = pool_size
        self._clients: dict[str, Any] = {}
        self._stack: AsyncExitStack | None = None
        self._session: Any = None
        self._botocore_config: Any = None
        self._lock: anyio.Lock | None = None
        self._closed = False

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

    async def __aenter__(self) -> Self:
        if self._stack is not None or self._closed:
            raise RuntimeError("AwsClients can be entered only once")
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
        try:
            await self._create("sqs")
            await self._create("lambda")
        except BaseException:
            # Close what was opened, then let the error (or the cancellation) go on
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every client; idempotent. Shielded so a cancel doesn't leak connections."""
        stack, self._stack = self._stack, None
        self._closed = True
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

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("AwsClients is closed")
        if self._stack is None:
            raise RuntimeError("AwsClients is not open: use `async with AwsClients(...)`")

    def _get(self, service: str) -> Any:
        self._check_open()
        return self._clients[service]


# SQS's rules for batch entry Ids, checked here because moto does not check them
_MAX_BATCH: Final = 10
_ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def _check_entries(operation: str, ids: Sequence[str]) -> None:
    if not ids:
        raise ValueError(f"{operation} needs 1..{_MAX_BATCH} entries, got none")
    if len(ids) > _MAX_BATCH:
        raise ValueError(f"{operation} takes at most {_MAX_BATCH} entries, got {len(ids)}")
    seen: set[str] = set()
    for entry_id in ids:
        if not isinstance(entry_id, str) or not _ENTRY_ID.match(entry_id):
            raise ValueError(
                f"{operation} entry Id must be 1..80 of A-Z a-z 0-9 - _, got {entry_id!r}"
            )
        if entry_id in seen:
            raise ValueError(f"{operation} entry Ids must be distinct, got {entry_id!r} twice")
        seen.add(entry_id)


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value!r}")


def _failures(response: Mapping[str, Any]) -> list[BatchEntryFailure]:
    return [
        BatchEntryFailure(
            id=entry["Id"],
            code=entry.get("Code", ""),
            message=entry.get("Message", ""),
            sender_fault=bool(entry.get("SenderFault", False)),
        )
        for entry in response.get("Failed", ())
    ]


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
        _check_int("max_messages", max_messages, 1, 10)
        _check_int("wait_time_seconds", wait_time_seconds, 0, 20)
        kwargs: dict[str, Any] = {
            "QueueUrl": self._queue_url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": wait_time_seconds,
            # MessageSystemAttributeNames replaces AttributeNames; older endpoints know only that
            "MessageSystemAttributeNames": ["All"],
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout is not None:
            _check_int("visibility_timeout", visibility_timeout, 0, 43_200)
            kwargs["VisibilityTimeout"] = visibility_timeout
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
        _check_entries("DeleteMessageBatch", [entry_id for entry_id, _ in entries])
        with map_errors("DeleteMessageBatch", queue_url=self._queue_url):
            response = await self._client.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": i, "ReceiptHandle": handle} for i, handle in entries],
            )
        return _failures(response)

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> list[BatchEntryFailure]:
        """ChangeMessageVisibilityBatch of ``(entry_id, receipt_handle, timeout_s)`` (0..43200)."""
        _check_entries("ChangeMessageVisibilityBatch", [entry_id for entry_id, _, _ in entries])
        for _, _, timeout in entries:
            _check_int("visibility timeout", timeout, 0, 43_200)
        with map_errors("ChangeMessageVisibilityBatch", queue_url=self._queue_url):
            response = await self._client.change_message_visibility_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": i, "ReceiptHandle": handle, "VisibilityTimeout": timeout}
                    for i, handle, timeout in entries
                ],
            )
        return _failures(response)

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
