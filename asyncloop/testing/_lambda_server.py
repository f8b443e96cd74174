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

It binds 127.0.0.1 on a free port and runs on the caller's event loop, on `HttpServer`
(httptools, not aiohttp's web server: the benchmark's endpoint shares the cores with the
consumer it measures; ``_http_server``'s docstring has the figures). httptools comes with
the ``testing`` extra (``pip install 'asyncloop[testing]'``); without it, entering the server
raises ImportError saying so.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote

import anyio

from .._exceptions import ClosedError, ConfigError
from ._http_server import HttpServer, Reply, Request

__all__ = ("Invocation", "LambdaServer", "OnInvoke")

REGION: Final = "us-east-1"
ACCOUNT_ID: Final = "123456789012"

#: ``on_invoke(function_name, payload)``, sync or async: the function's body. What it returns
#: (other than None) is a RequestResponse invoke's result: bytes as they are, anything else
#: JSON-encoded. If it raises, the invocation fails as an unhandled function error.
OnInvoke = Callable[[str, bytes], object | Awaitable[object]]

_INVOKE_PATH: Final = re.compile(r"/2015-03-31/functions/([^/]+)/invocations")
_FUNCTION_PATH: Final = re.compile(r"/2015-03-31/functions/([^/]+)")
_JSON: Final = ("Content-Type", "application/json")
_EXECUTED_VERSION: Final = ("X-Amz-Executed-Version", "$LATEST")


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


def _error(status: int, code: str, message: str, *, message_key: str = "Message") -> Reply:
    # Lambda's REST-JSON error: botocore reads the code from x-amzn-ErrorType.
    return Reply(
        status,
        json.dumps({"Type": "User", message_key: message}).encode(),
        (_JSON, ("x-amzn-ErrorType", code)),
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
        self._http: HttpServer | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; only while the server runs."""
        if self._http is None:
            raise ClosedError("LambdaServer is not running: use it as `async with`")
        return self._http.endpoint_url

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
        if self._http is not None:
            raise RuntimeError("LambdaServer is already running")
        http = HttpServer(self._route)
        await http.__aenter__()
        self._http = http
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Leaving cancels the invokes still sleeping: their callers see the connection close
        http, self._http = self._http, None
        if http is not None:
            await http.__aexit__(exc_type, exc, tb)

    async def _route(self, request: Request) -> Reply:
        if match := _INVOKE_PATH.fullmatch(request.path):
            if request.method == "POST":
                return await self._handle_invoke(unquote(match[1]), request)
        elif match := _FUNCTION_PATH.fullmatch(request.path):
            if request.method == "GET":
                return self._handle_get_function(unquote(match[1]))
        else:
            return _error(404, "UnknownOperationException", f"No route for {request.path}")
        return _error(405, "MethodNotAllowedException", f"{request.method} {request.path}")

    async def _sleep_latency(self) -> None:
        delay = self._latency() if callable(self._latency) else self._latency
        if delay > 0:
            # asyncio's own: anyio.sleep would look up the running library every invoke
            await asyncio.sleep(delay)

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

    async def _handle_invoke(self, name_or_arn: str, request: Request) -> Reply:
        self.requests += 1
        name = _function_name(name_or_arn)
        invocation_type = request.headers.get("x-amz-invocation-type", "RequestResponse")
        payload = request.body
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
            return Reply(204)

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

        if invocation_type == "Event":
            # An asynchronous invoke's failure happens after the 202: the caller never sees it.
            return Reply(202, headers=(_EXECUTED_VERSION,))
        if error_type is not None:
            return Reply(
                200, body, (_JSON, _EXECUTED_VERSION, ("X-Amz-Function-Error", "Unhandled"))
            )
        return Reply(200, body, (_JSON, _EXECUTED_VERSION))

    def _handle_get_function(self, name_or_arn: str) -> Reply:
        name = _function_name(name_or_arn)
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
        return Reply(200, json.dumps(body).encode(), (_JSON,))
