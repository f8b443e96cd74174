"""A local Lambda Invoke endpoint over real HTTP, for integration tests and the benchmark.

`LambdaServer` answers the two Lambda calls asyncloop makes, in Lambda's REST-JSON shapes, so
aioboto3's lambda client pointed at `endpoint_url` parses its answers as it parses AWS's:

- ``POST /2015-03-31/functions/{name}/invocations`` (Invoke): ``X-Amz-Invocation-Type: Event``
  answers 202 with an empty body; ``RequestResponse`` (the default) answers 200 with the
  function's JSON result (``null`` unless the `on_invoke` hook returns something), or 200 with
  ``X-Amz-Function-Error: Unhandled`` and an error body when the function fails; ``DryRun``
  answers 204. A throttle answers 429 ``TooManyRequestsException``.
- ``GET /2015-03-31/functions/{name}`` (GetFunction): a minimal configuration for names
  registered with `add_function`, 404 ``ResourceNotFoundException`` for any other name.

Unlike Lambda (and like moto without Docker), Invoke accepts any function name unless
``strict_functions=True``: existence is what GetFunction checks.

It binds 127.0.0.1 on a free port and runs on the caller's asyncio event loop.
"""

from __future__ import annotations

import inspect
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import anyio
from aiohttp import web

from .._exceptions import ClosedError, ConfigError
from ._loopback import serve_on_loopback

__all__ = ("Invocation", "LambdaServer", "OnInvoke")

REGION: Final = "us-east-1"
ACCOUNT_ID: Final = "123456789012"

#: ``on_invoke(function_name, payload)``, sync or async: the function's body. What it returns
#: (other than None) is a RequestResponse invoke's result: bytes as they are, anything else
#: JSON-encoded. If it raises, the invocation fails as an unhandled function error.
OnInvoke = Callable[[str, bytes], object | Awaitable[object]]

_INVOKE_PATH: Final = "/2015-03-31/functions/{name}/invocations"
_FUNCTION_PATH: Final = "/2015-03-31/functions/{name}"
_JSON: Final = "application/json"


@dataclass(frozen=True, slots=True)
class Invocation:
    """One recorded invocation (kept only with ``record_payloads=True``)."""

    function_name: str
    invocation_type: str
    payload: bytes
    failed: bool

    def decoded(self) -> Any:
        """The payload decoded as JSON (None for an empty payload)."""
        return json.loads(self.payload) if self.payload else None


def _function_name(name_or_arn: str) -> str:
    """The bare name from a name, ``name:qualifier``, partial ARN or full ARN."""
    parts = name_or_arn.split(":")
    if parts[0] == "arn" and len(parts) >= 7:
        return parts[6]
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2]
    return parts[0]


def _function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def _error(status: int, code: str, message: str, *, message_key: str = "Message") -> web.Response:
    # Lambda's REST-JSON error: botocore reads the code from x-amzn-ErrorType.
    return web.Response(
        status=status,
        body=json.dumps({"Type": "User", message_key: message}).encode(),
        content_type=_JSON,
        headers={"x-amzn-ErrorType": code},
    )


class LambdaServer:
    """A local Lambda endpoint: ``async with LambdaServer() as server:`` then `endpoint_url`.

    Each Invoke first draws its fate from `seed`'s random stream: throttled with probability
    `throttle_rate` (answered 429 without running), failed with probability `failure_rate`
    (the function "ran" and raised: RequestResponse reports ``FunctionError: Unhandled``,
    Event still answers 202 as Lambda does for asynchronous invokes), otherwise it runs:
    `on_invoke` is called (its exception also counts as a failure). `latency` (seconds, a float
    or a callable returning one per invoke) passes before every Invoke answer.

    Counters: `requests` (every Invoke request), `invocations` (those that ran, failed or not),
    `failures`, `throttled`, `not_found`, and `invocations_by_function`. With
    ``record_payloads=True``, `recorded` keeps every invocation's payload (memory grows with
    the run: off by default). `wait_for_invocations` lets a test wait for a count instead of
    sleeping.
    """

    def __init__(
        self,
        *,
        latency: float | Callable[[], float] = 0.05,
        failure_rate: float = 0.0,
        throttle_rate: float = 0.0,
        seed: int | None = None,
        on_invoke: OnInvoke | None = None,
        record_payloads: bool = False,
        functions: Iterable[str] = (),
        strict_functions: bool = False,
    ) -> None:
        for field, rate in (("failure_rate", failure_rate), ("throttle_rate", throttle_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"{field} must be in 0..1, got {rate}", field=field)
        if failure_rate + throttle_rate > 1.0:
            raise ConfigError(
                "failure_rate + throttle_rate must be at most 1, "
                f"got {failure_rate} + {throttle_rate}",
                field="failure_rate",
            )
        if not callable(latency) and latency < 0:
            raise ConfigError(f"latency must be >= 0 seconds, got {latency}", field="latency")
        self._latency = latency
        self._failure_rate = failure_rate
        self._throttle_rate = throttle_rate
        self._random = random.Random(seed)
        self._on_invoke = on_invoke
        self._strict_functions = strict_functions
        self._functions: set[str] = {_function_name(name) for name in functions}

        self.requests = 0
        self.invocations = 0
        self.failures = 0
        self.throttled = 0
        self.not_found = 0
        self.invocations_by_function: Counter[str] = Counter()
        self.recorded: list[Invocation] | None = [] if record_payloads else None

        self._waiters: list[tuple[int, anyio.Event]] = []
        self._closing: anyio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._endpoint_url: str | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; only while the server runs."""
        if self._endpoint_url is None:
            raise ClosedError("LambdaServer is not running: use it as `async with`")
        return self._endpoint_url

    def add_function(self, name: str) -> str:
        """Register a function so GetFunction finds it; returns its ARN."""
        bare = _function_name(name)
        self._functions.add(bare)
        return _function_arn(bare)

    def remove_function(self, name: str) -> None:
        """Forget a function (GetFunction then answers 404). No-op if unknown."""
        self._functions.discard(_function_name(name))

    async def wait_for_invocations(self, count: int) -> None:
        """Return once `invocations` reaches `count`; bound it with ``anyio.fail_after``."""
        if self.invocations >= count:
            return
        event = anyio.Event()
        self._waiters.append((count, event))
        await event.wait()

    async def __aenter__(self) -> LambdaServer:
        if self._runner is not None:
            raise RuntimeError("LambdaServer is already running")
        self._closing = anyio.Event()
        app = web.Application()
        app.router.add_post(_INVOKE_PATH, self._handle_invoke)
        app.router.add_get(_FUNCTION_PATH, self._handle_get_function)
        runner, self._endpoint_url = await serve_on_loopback(app)
        self._runner = runner
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        self._endpoint_url = None
        if self._closing is not None:
            self._closing.set()
        if runner is not None:
            await runner.cleanup()

    async def _sleep_latency(self) -> None:
        delay = self._latency() if callable(self._latency) else self._latency
        if delay > 0 and self._closing is not None:
            with anyio.move_on_after(delay):
                await self._closing.wait()

    def _count_invocation(
        self, name: str, invocation_type: str, payload: bytes, failed: bool
    ) -> None:
        self.invocations += 1
        self.invocations_by_function[name] += 1
        if failed:
            self.failures += 1
        if self.recorded is not None:
            self.recorded.append(Invocation(name, invocation_type, payload, failed))
        still_waiting = []
        for count, event in self._waiters:
            if self.invocations >= count:
                event.set()
            else:
                still_waiting.append((count, event))
        self._waiters = still_waiting

    async def _run_function(self, name: str, payload: bytes) -> tuple[bytes, str | None]:
        """Call `on_invoke`; returns (result body, error type or None)."""
        if self._on_invoke is None:
            return b"null", None
        try:
            result = self._on_invoke(name, payload)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            body = {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": []}
            return json.dumps(body).encode(), type(exc).__name__
        if result is None:
            return b"null", None
        if isinstance(result, bytes):
            return result, None
        return json.dumps(result).encode(), None

    async def _handle_invoke(self, request: web.Request) -> web.Response:
        self.requests += 1
        name = _function_name(request.match_info["name"])
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        payload = await request.read()
        if invocation_type not in ("Event", "RequestResponse", "DryRun"):
            return _error(
                400,
                "InvalidParameterValueException",
                f"Unsupported invocation type {invocation_type!r}",
            )
        if self._strict_functions and name not in self._functions:
            self.not_found += 1
            return _error(
                404, "ResourceNotFoundException", f"Function not found: {_function_arn(name)}"
            )
        if invocation_type == "DryRun":
            return web.Response(status=204)

        draw = self._random.random()
        await self._sleep_latency()
        if draw < self._throttle_rate:
            self.throttled += 1
            return _error(429, "TooManyRequestsException", "Rate Exceeded.", message_key="message")
        if draw < self._throttle_rate + self._failure_rate:
            body = json.dumps(
                {
                    "errorMessage": "injected failure",
                    "errorType": "InjectedFailure",
                    "stackTrace": [],
                }
            ).encode()
            error_type: str | None = "InjectedFailure"
        else:
            body, error_type = await self._run_function(name, payload)
        self._count_invocation(name, invocation_type, payload, failed=error_type is not None)

        headers = {"X-Amz-Executed-Version": "$LATEST"}
        if invocation_type == "Event":
            # An asynchronous invoke's failure happens after the 202: the caller never sees it.
            return web.Response(status=202, headers=headers)
        if error_type is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return web.Response(status=200, body=body, content_type=_JSON, headers=headers)

    async def _handle_get_function(self, request: web.Request) -> web.Response:
        name = _function_name(request.match_info["name"])
        arn = _function_arn(name)
        if name not in self._functions:
            return _error(404, "ResourceNotFoundException", f"Function not found: {arn}")
        configuration = {
            "FunctionName": name,
            "FunctionArn": arn,
            "Runtime": "python3.11",
            "Role": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}-role",
            "Handler": "index.handler",
            "CodeSize": 0,
            "Timeout": 3,
            "MemorySize": 128,
            "Version": "$LATEST",
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": ["x86_64"],
        }
        body = {"Configuration": configuration, "Code": {"RepositoryType": "S3", "Location": ""}}
        return web.json_response(body)
