"""`LeanInvoker`: the `LambdaInvoker` protocol over Lambda's REST API, without botocore.

Why: aiobotocore spends about 860 us of CPU per Invoke here; the consumer makes one Invoke per
message, so this is the call that sets the CPU per message. The request is what botocore's
REST-JSON serializer sends: ``POST /2015-03-31/functions/<name>/invocations`` with the name
percent-encoded by ``botocore.utils.percent_encode`` (a ``name:alias`` or an ARN keeps its
meaning), ``X-Amz-Invocation-Type``, the payload as the body. The answer is read as botocore
reads it: the status is ``StatusCode``, ``X-Amz-Function-Error`` is ``FunctionError``, the
body the payload (always read in full, releasing the connection); a service error's code comes
from botocore's parser (``x-amzn-ErrorType``, then the body's ``code``), so a 429
``TooManyRequestsException`` is a `FunctionError` with ``throttled=True`` as on the sdk path.
"""

from __future__ import annotations

from typing import Final

from .._limits import InvocationType
from .._types import InvokeResult
from .service import Prepared, ServiceChannel

__all__ = ("LeanInvoker", "invoke_path")

_INVOCATION_TYPES: Final = ("Event", "RequestResponse", "DryRun")


def invoke_path(function_name: str) -> str:
    """The Invoke request's path for `function_name`, encoded as botocore encodes it."""
    from botocore.utils import percent_encode

    return f"/2015-03-31/functions/{percent_encode(function_name)}/invocations"


class LeanInvoker:
    """The `LambdaInvoker` protocol over a `ServiceChannel` (the transport owns it)."""

    def __init__(self, channel: ServiceChannel) -> None:
        self._channel = channel
        self._prepared: dict[tuple[str, str], Prepared] = {}

    def __repr__(self) -> str:
        return f"LeanInvoker(endpoint_url={self._channel.endpoint_url!r})"

    async def invoke(
        self, *, function_name: str, payload: bytes, invocation_type: InvocationType
    ) -> InvokeResult:
        """Invoke; a 429 raises `FunctionError` with ``throttled=True``.

        A function's own failure is not an exception here: it is `InvokeResult.function_error`.
        """
        if not function_name or not isinstance(function_name, str):
            raise ValueError(f"function_name must be a non-empty str, got {function_name!r}")
        if invocation_type not in _INVOCATION_TYPES:
            raise ValueError(
                f"invocation_type must be one of {', '.join(_INVOCATION_TYPES)}, "
                f"got {invocation_type!r}"
            )
        key = (function_name, invocation_type)
        prepared = self._prepared.get(key)
        if prepared is None:
            # A consumer invokes one function or a few: the cache stays small
            if len(self._prepared) >= 64:
                self._prepared.clear()
            prepared = self._prepared[key] = self._channel.prepare(
                invoke_path(function_name), {"X-Amz-Invocation-Type": invocation_type}
            )
        reply = await self._channel.call(
            "Invoke", prepared, bytes(payload), function_name=function_name
        )
        return InvokeResult(
            status_code=reply.status_code,
            function_error=reply.headers.get("x-amz-function-error"),
            payload=reply.body,
        )
