"""asyncloop's exceptions.

One base class, and a context on each error (`.operation`, `.code`, `.queue_url`,
`.function_name`, `.table`, `.message_id`) so callers branch on data rather than on message
text.
The original botocore or transport error is kept as ``__cause__``.

    AsyncloopError
    ├── ConfigError            a configuration value is invalid (also a ValueError)
    ├── ClosedError            you used an object after closing it
    ├── AwsError               an AWS call failed (operation, code, retryable, throttled)
    │   ├── QueueError             an SQS call failed (queue_url)
    │   │   └── QueueNotFound          the queue does not exist
    │   ├── FunctionError          a Lambda control-plane call failed (function_name)
    │   │   └── FunctionNotFound       the function does not exist
    │   ├── TableError             a DynamoDB call failed (table): the loop's lease table
    │   │   └── ConditionFailed        a conditional write's condition did not hold (an answer)
    │   ├── CredentialsError       no credentials, or they were refused
    │   └── TransportError         the request did not get an answer (connection, timeout)
    ├── DispatchError          one message's dispatch failed (message_id): not deleted
    │   ├── DispatchThrottled      the target refused for capacity (Lambda 429)
    │   ├── HandlerFailed          the function or callable ran and reported failure
    │   └── PayloadTooLarge        the payload exceeds the target's limit
    └── (defined beside their one user, each an AsyncloopError)
        ├── _deploy.package.PackageError    building the Lambda zip failed
        ├── _deploy.deploy.DeployError      the CloudFormation stack failed to deploy
        └── testing.FauxqsError             fauxqs could not be installed or started

"Closed" means you closed it; every AwsError means the outside failed ("broken").
A DispatchError never stops the consumer: the message is left for SQS to redeliver.
"""

from __future__ import annotations

__all__ = (
    "AsyncloopError",
    "AwsError",
    "ClosedError",
    "ConditionFailed",
    "ConfigError",
    "CredentialsError",
    "DispatchError",
    "DispatchThrottled",
    "FunctionError",
    "FunctionNotFound",
    "HandlerFailed",
    "PayloadTooLarge",
    "QueueError",
    "QueueNotFound",
    "TableError",
    "TransportError",
)


class AsyncloopError(Exception):
    """Base class of every exception asyncloop raises on purpose."""


class ConfigError(AsyncloopError, ValueError):
    """A configuration value is invalid; `field` names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ClosedError(AsyncloopError):
    """The object was closed by its owner and cannot be used again."""


class AwsError(AsyncloopError):
    """An AWS API call failed.

    `retryable` says whether the same call may succeed later; `throttled` says the
    service refused for rate or capacity (back off before trying again).
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        code: str | None = None,
        retryable: bool = False,
        throttled: bool = False,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.code = code
        self.retryable = retryable
        self.throttled = throttled


class QueueError(AwsError):
    """An SQS call failed."""

    def __init__(self, message: str, *, queue_url: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.queue_url = queue_url


class QueueNotFound(QueueError):
    """The queue does not exist (or this account may not see it)."""


class FunctionError(AwsError):
    """A Lambda call failed before or around the function (not the function's own failure)."""

    def __init__(self, message: str, *, function_name: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.function_name = function_name


class FunctionNotFound(FunctionError):
    """The Lambda function does not exist."""


class TableError(AwsError):
    """A DynamoDB call failed (the Kinesis loop's lease table)."""

    def __init__(self, message: str, *, table: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.table = table


class ConditionFailed(TableError):
    """A conditional write (or a transaction of them) was refused because its condition did not
    hold. To the lease store that is an answer (someone else won), never a failure."""


class CredentialsError(AwsError):
    """No credentials were found, or AWS refused them."""


class TransportError(AwsError):
    """The request got no answer: connection refused or reset, or a timeout."""


class DispatchError(AsyncloopError):
    """Dispatching one message failed; the message is not deleted and SQS redelivers it."""

    def __init__(self, message: str, *, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id


class DispatchThrottled(DispatchError):
    """The target refused the message for capacity (Lambda `TooManyRequestsException`, 429)."""


class HandlerFailed(DispatchError):
    """The target ran and reported failure (Lambda `FunctionError`, or the callable raised)."""


class PayloadTooLarge(DispatchError):
    """The payload is larger than the target accepts."""
