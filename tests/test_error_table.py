"""Unit tests of the error table and `map_errors` (asyncloop._error_table): which AWS codes
and botocore errors become which asyncloop error, and what passes through unchanged.

No network: botocore errors are constructed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import anyio
import pytest
from _aws_errors import client_error
from aiobotocore.response import AioReadTimeoutError
from botocore import exceptions as bce

from asyncloop._error_table import ERROR_TABLE, map_errors
from asyncloop._exceptions import (
    AwsError,
    ConfigError,
    CredentialsError,
    FunctionError,
    FunctionNotFound,
    QueueError,
    QueueNotFound,
    TransportError,
)

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
FUNCTION = "worker"


def translate(
    exc: BaseException, *, queue_url: str | None = None, function_name: str | None = None
) -> BaseException:
    """What `map_errors` raises when `exc` is raised inside it."""
    # Any type: which type comes out is what the tests check
    with (
        pytest.raises(BaseException) as caught,  # noqa: PT011
        map_errors("TheOperation", queue_url=queue_url, function_name=function_name),
    ):
        raise exc
    return caught.value


# --- the table -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "context", "expected", "retryable", "throttled"),
    [
        ("AWS.SimpleQueueService.NonExistentQueue", "queue", QueueNotFound, False, False),
        ("QueueDoesNotExist", "queue", QueueNotFound, False, False),
        ("ResourceNotFoundException", "function", FunctionNotFound, False, False),
        ("InvalidClientTokenId", "queue", CredentialsError, False, False),
        ("UnrecognizedClientException", "function", CredentialsError, False, False),
        ("AccessDenied", None, CredentialsError, False, False),
        ("AccessDeniedException", "function", CredentialsError, False, False),
        ("ExpiredToken", "queue", CredentialsError, False, False),
        ("SignatureDoesNotMatch", "queue", CredentialsError, False, False),
        ("ThrottlingException", None, AwsError, True, True),
        ("TooManyRequestsException", "function", FunctionError, True, True),
        ("RequestThrottled", "queue", QueueError, True, True),
        ("ProvisionedThroughputExceededException", None, AwsError, True, True),
        ("SlowDown", None, AwsError, True, True),
        ("OverLimit", "queue", QueueError, True, True),
        ("InternalError", "queue", QueueError, True, False),
        ("ServiceException", "function", FunctionError, True, False),
        ("ResourceConflictException", "function", FunctionError, True, False),
        ("InvalidParameterValue", "queue", QueueError, False, False),
    ],
)
def test_known_codes_translate_to_the_expected_error(
    code: str,
    context: str | None,
    expected: type[AwsError],
    retryable: bool,
    throttled: bool,
) -> None:
    # GIVEN an AWS error with this code, raised by an SQS call, a Lambda call, or another call
    original = client_error(code, status=500 if retryable and not throttled else 400)
    # WHEN it crosses map_errors
    error = translate(
        original,
        queue_url=QUEUE_URL if context == "queue" else None,
        function_name=FUNCTION if context == "function" else None,
    )
    # THEN it is exactly the expected class, with the table's flags and the original as cause
    assert type(error) is expected
    assert isinstance(error, AwsError)
    assert (error.retryable, error.throttled) == (retryable, throttled)
    assert error.code == code
    assert error.operation == "TheOperation"
    assert error.__cause__ is original


@pytest.mark.parametrize(("code", "rule"), sorted(ERROR_TABLE.items()))
def test_every_table_row_is_applied(code: str, rule: Any) -> None:
    # GIVEN a row, and the context its class needs (a queue URL for a QueueError...)
    expected = rule.error or AwsError
    queue_url = QUEUE_URL if issubclass(expected, QueueError) else None
    function_name = FUNCTION if issubclass(expected, FunctionError) else None
    # WHEN its code crosses map_errors with a status that alone would say otherwise
    error = translate(
        client_error(code, status=418), queue_url=queue_url, function_name=function_name
    )
    # THEN the row decides
    assert type(error) is expected
    assert isinstance(error, AwsError)
    assert (error.retryable, error.throttled) == (rule.retryable, rule.throttled)
    assert not rule.throttled or rule.retryable, "a throttled error is always retryable"


def test_resource_not_found_is_a_missing_function_only_on_a_lambda_call() -> None:
    # GIVEN Kinesis's or SQS's ResourceNotFoundException (the code is shared)
    kinesis = translate(client_error("ResourceNotFoundException"))
    sqs = translate(client_error("ResourceNotFoundException"), queue_url=QUEUE_URL)
    # THEN it is the call's own class, not FunctionNotFound
    assert type(kinesis) is AwsError
    assert type(sqs) is QueueError


@pytest.mark.parametrize(
    ("status", "retryable", "throttled"),
    [
        (400, False, False),
        (403, False, False),
        (429, True, True),
        (500, True, False),
        (503, True, False),
    ],
)
def test_unknown_codes_fall_back_on_the_http_status(
    status: int, retryable: bool, throttled: bool
) -> None:
    error = translate(client_error("SomethingNew", status=status), queue_url=QUEUE_URL)
    assert type(error) is QueueError
    assert (error.retryable, error.throttled) == (retryable, throttled)
    assert error.code == "SomethingNew"


def test_lambda_502_for_a_misconfigured_function_is_not_retryable() -> None:
    # Lambda answers KMSAccessDeniedException with 502: the status alone would say "retry"
    error = translate(client_error("KMSAccessDeniedException", status=502), function_name=FUNCTION)
    assert type(error) is FunctionError
    assert not error.retryable


def test_query_error_code_is_used_when_the_code_is_unknown() -> None:
    original = client_error("com.amazonaws.sqs#Odd", query_code="QueueDoesNotExist")
    error = translate(original, queue_url=QUEUE_URL)
    assert type(error) is QueueNotFound


def test_errors_carry_their_context_and_a_readable_message() -> None:
    # GIVEN SQS saying the queue does not exist
    original = client_error(
        "AWS.SimpleQueueService.NonExistentQueue", message="The specified queue does not exist."
    )
    # WHEN it crosses map_errors
    error = translate(original, queue_url=QUEUE_URL)
    # THEN the error names the call, the queue, the code and AWS's message
    assert isinstance(error, QueueNotFound)
    assert error.queue_url == QUEUE_URL
    assert error.code == "AWS.SimpleQueueService.NonExistentQueue"
    text = str(error)
    assert "TheOperation" in text
    assert QUEUE_URL in text
    assert "NonExistentQueue" in text
    assert "The specified queue does not exist." in text


def test_function_errors_carry_the_function_name() -> None:
    error = translate(client_error("ResourceNotFoundException"), function_name=FUNCTION)
    assert isinstance(error, FunctionNotFound)
    assert error.function_name == FUNCTION


# --- errors that are not ClientError --------------------------------------------------------------


@pytest.mark.parametrize(
    "original",
    [
        bce.NoCredentialsError(),
        bce.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
        bce.CredentialRetrievalError(provider="sso", error_msg="expired"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_missing_credentials_become_credentials_error(original: Exception) -> None:
    error = translate(original, queue_url=QUEUE_URL)
    assert type(error) is CredentialsError
    assert not error.retryable
    assert error.code == type(original).__name__
    assert error.__cause__ is original


@pytest.mark.parametrize(
    "original",
    [
        bce.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
        bce.ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"),
        bce.ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
        bce.ConnectionClosedError(endpoint_url="http://127.0.0.1:9"),
        AioReadTimeoutError(endpoint_url="http://127.0.0.1:9", error="slow"),
        aiohttp.ClientConnectionError("reset"),
        aiohttp.ClientPayloadError("truncated"),
        TimeoutError(),  # asyncio.TimeoutError since 3.11
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_transport_failures_become_retryable_transport_error(original: Exception) -> None:
    error = translate(original, function_name=FUNCTION)
    assert type(error) is TransportError
    assert error.retryable
    assert not error.throttled
    assert error.operation == "TheOperation"
    assert error.code == type(original).__name__
    assert error.__cause__ is original


def test_no_region_is_a_config_error() -> None:
    error = translate(bce.NoRegionError())
    assert isinstance(error, ConfigError)
    assert error.field == "region"


def test_other_botocore_errors_become_error_table() -> None:
    # A ParamValidationError is our bug, but the core still must not see a botocore type
    original = bce.ParamValidationError(report="Unknown parameter")
    error = translate(original, queue_url=QUEUE_URL)
    assert type(error) is QueueError
    assert not error.retryable
    assert error.code == "ParamValidationError"


# --- what map_errors leaves alone -----------------------------------------------------------------


@pytest.mark.parametrize(
    "original",
    [
        asyncio.CancelledError(),
        KeyboardInterrupt(),
        ValueError("not an AWS error"),
        QueueNotFound("already translated", operation="Inner", queue_url=QUEUE_URL),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_other_exceptions_pass_through_unchanged(original: BaseException) -> None:
    assert translate(original, queue_url=QUEUE_URL) is original


@pytest.mark.asyncio
async def test_a_cancelled_call_stays_cancelled() -> None:
    # GIVEN a call under way inside map_errors, in a scope that is cancelled
    with anyio.CancelScope() as scope:
        scope.cancel()
        with map_errors("ReceiveMessage", queue_url=QUEUE_URL):
            await anyio.sleep(10)
    # THEN the cancellation reached its scope untranslated
    assert scope.cancelled_caught


@pytest.mark.asyncio
async def test_cancelling_a_task_inside_map_errors_cancels_it() -> None:
    started = asyncio.Event()

    async def call() -> None:
        with map_errors("Invoke", function_name=FUNCTION):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(call())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
