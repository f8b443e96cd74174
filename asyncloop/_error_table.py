"""The AWS boundary's error translation: one table (`ERROR_TABLE`) and one helper (`map_errors`).

botocore stops here. Every AWS call (the SDK clients in `_aws`, the lean transport, the lease
store, deployment) goes through `map_errors` or `error_from_response`, which turn botocore's
and aiohttp's exceptions and AWS error answers into `asyncloop.AwsError` subclasses, keeping
the original as ``__cause__``; the consumer core never sees a botocore type. The batch entry
codes the consumer reads (`LEASE_GONE`) live here too.

botocore is imported only on the error path (it is loaded already if a client ran), so this
module is as cheap to import as the consumer.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from ._exceptions import (
    AsyncloopError,
    AwsError,
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

__all__ = (
    "ERROR_TABLE",
    "LEASE_GONE",
    "ErrorRule",
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


# Batch entry codes (a ``Failed`` entry's ``Code``, not a call's error) that say the message's
# lease is gone: another receive holds it, or it was deleted or became visible again. The
# heartbeat stops extending such a message and cancels its dispatch.
LEASE_GONE: Final = frozenset(
    {"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidReceiptHandle"}
)


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
    where = _call_site(operation, queue_url, function_name, table)
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


def _call_site(
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

    where = _call_site(operation, queue_url, function_name, table)
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
