"""botocore errors as the AWS boundary receives them, for the tests that feed it one."""

from __future__ import annotations

from typing import Any

from botocore import exceptions as bce


def client_error(
    code: str,
    *,
    status: int = 400,
    message: str = "it went wrong",
    operation: str = "ReceiveMessage",
    query_code: str | None = None,
) -> bce.ClientError:
    error: dict[str, Any] = {"Code": code, "Message": message}
    if query_code is not None:
        error["QueryErrorCode"] = query_code
    return bce.ClientError(
        {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )
