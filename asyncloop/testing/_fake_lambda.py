"""An in-memory Lambda with real semantics, behind `asyncloop.LambdaInvoker`.

`FakeLambda` runs registered handlers on invoke, answers as Lambda does (202 for ``Event``,
200 with ``FunctionError`` for ``RequestResponse``), models reserved concurrency (throttles)
and injects latency and faults from a `FaultPlan`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel

from .._exceptions import FunctionError, FunctionNotFound
from .._types import InvokeResult
from ._fault_plan import FaultPlan, Latency

__all__ = ("FakeLambda",)


FunctionHandler = Callable[[Any], Any]


class FakeLambda:
    """An in-memory Lambda implementing `asyncloop.LambdaInvoker`.

    Functions are registered with an optional handler (sync or async) that receives the
    decoded JSON payload. ``Event`` invokes run the handler and answer 202 whatever it does
    (its failures are counted in `errors`, as Lambda's async retries would be elsewhere);
    ``RequestResponse`` answers 200, with ``FunctionError: Unhandled`` if the handler raised.

    `reserved_concurrency` (None: unlimited) models a function's concurrency limit: an invoke
    that arrives while that many are running is throttled (``TooManyRequestsException``, as
    Lambda's 429) and counted in `throttled`.
    """

    def __init__(
        self,
        *,
        latency: Latency = 0.0,
        faults: FaultPlan | None = None,
        region: str = "us-east-1",
        account: str = "123456789012",
        reserved_concurrency: int | None = None,
    ) -> None:
        if reserved_concurrency is not None and reserved_concurrency < 1:
            raise ValueError(f"reserved_concurrency must be >= 1, got {reserved_concurrency}")
        self.latency = latency
        self.faults = faults
        self.reserved_concurrency = reserved_concurrency
        self.throttled = 0
        self.region = region
        self.account = account
        self._functions: dict[str, FunctionHandler | None] = {}
        self.invocations: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0

    def add_function(self, name: str, handler: FunctionHandler | None = None) -> None:
        self._functions[name] = handler

    async def get_function(self, function_name: str) -> dict[str, Any]:
        name = function_name.rsplit(":", 1)[-1]
        if name not in self._functions:
            raise _not_found(function_name)
        arn = f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"
        return {"Configuration": {"FunctionName": name, "FunctionArn": arn}}

    async def invoke(
        self, *, function_name: str, payload: bytes, invocation_type: str
    ) -> InvokeResult:
        name = function_name.rsplit(":", 1)[-1]
        if name not in self._functions:
            raise _not_found(function_name)
        limit = self.reserved_concurrency
        if limit is not None and self.in_flight >= limit:
            self.throttled += 1
            await anyio.lowlevel.checkpoint()
            raise _throttle(function_name)
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        try:
            seconds = self.latency() if callable(self.latency) else self.latency
            # asyncio's own sleep, as FakeQueue's (see there): the benchmark's hot path.
            await asyncio.sleep(seconds if seconds > 0 else 0)
            faults = self.faults
            if faults is not None and faults.draw(faults.throttles.get("Invoke", 0.0)):
                faults.injected["Invoke:throttle"] += 1
                raise _throttle(function_name)
            if faults is not None and faults.draw(faults.errors.get("Invoke", 0.0)):
                faults.injected["Invoke:error"] += 1
                raise FunctionError(
                    "Service error",
                    operation="Invoke",
                    code="ServiceException",
                    retryable=True,
                    function_name=function_name,
                )
            self.invocations[name] += 1
            handler = self._functions[name]
            error: str | None = None
            body = b"null"
            if handler is not None:
                try:
                    result = handler(json.loads(payload))
                    if isinstance(result, Awaitable):
                        result = await result
                    body = json.dumps(result).encode()
                except Exception as exc:
                    self.errors[name] += 1
                    error = "Unhandled"
                    body = json.dumps({"errorType": type(exc).__name__}).encode()
            if invocation_type == "Event":
                return InvokeResult(202, None, b"")
            return InvokeResult(200, error, body)
        finally:
            self.in_flight -= 1


def _throttle(function_name: str) -> FunctionError:
    return FunctionError(
        "Rate Exceeded.",
        operation="Invoke",
        code="TooManyRequestsException",
        throttled=True,
        retryable=True,
        function_name=function_name,
    )


def _not_found(function_name: str) -> FunctionNotFound:
    return FunctionNotFound(
        f"Function not found: {function_name}",
        operation="Invoke",
        code="ResourceNotFoundException",
        function_name=function_name,
    )
