"""An HTTP reverse proxy that injects AWS-shaped faults between aioboto3 and an emulator.

``async with FaultProxy(upstream_url, faults=Faults(throttle=0.1), seed=1) as proxy:`` then
point the client at `FaultProxy.endpoint_url` (127.0.0.1, a free port). Every request is
forwarded to `upstream_url` (method, path, query, headers including ``Host``, body) and the
answer relayed, except that, drawing from a seeded ``random.Random``, some requests get a fault:

- ``internal_error``: 500 ``InternalError``;
- ``service_unavailable``: 503 ``ServiceUnavailable``;
- ``throttle``: ``ThrottlingException`` (status `Faults.throttle_status`, 400 by default, as
  SQS sends it) for the JSON and query protocols; 429 ``TooManyRequestsException`` for
  REST-JSON (Lambda's throttle);
- ``reset``: the connection is closed without an answer (botocore:
  ``ConnectionClosedError``);
- ``slow``: the answer is held for `Faults.slow_delay` seconds (a client whose
  ``read_timeout`` is shorter sees ``ReadTimeoutError``).

Error bodies take the shape of the request's protocol, so botocore parses the intended code:
JSON protocol (an ``X-Amz-Target`` header: SQS under aiobotocore 2.25), query protocol
(form-encoded body, ``Action=``), or REST-JSON (anything else: Lambda).

A fraction `Faults.after_forward` of the faults happen after forwarding: the upstream
processed the request (a message was deleted, a function invoked) but the client sees the
fault and retries. That is the case that makes duplicates.

Faults can be restricted to some operations (`Faults.operations`: the ``X-Amz-Target``
action such as ``ReceiveMessage``, the query ``Action``, or Lambda's ``Invoke`` /
``GetFunction``) and/or path prefixes (`Faults.path_prefixes`). `FaultProxy.injected`
counts the faults by kind.

Latency: ``FaultProxy(upstream_url, latency={"ReceiveMessage": 0.015, "Invoke": draw})``
holds each request of a listed operation for that many seconds (a float, or a callable drawn
once per request) before it is forwarded or faulted, so an emulator answering in a millisecond
looks like a service across a network. `FaultProxy.delayed` counts the delayed requests by
operation. The benchmark's latency profiles use it in front of moto and fauxqs.

The module is one piece a little past 400 lines: the plan (`Faults`), the AWS-shaped error
answers and the proxy that draws and serves them are one job, none of them used without the
others, and a tenth of it is this docstring.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, NoReturn, get_args
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import aiohttp
import anyio
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .._exceptions import ClosedError, ConfigError
from ._fault_plan import Latency
from ._loopback import serve_on_loopback

__all__ = ("FaultKind", "FaultProxy", "Faults")

FaultKind = Literal["internal_error", "service_unavailable", "throttle", "reset", "slow"]
FAULT_KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)

Protocol = Literal["json", "query", "rest-json"]

# Not forwarded either way: they describe one hop, and aiohttp sets its own.
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
# Headers aiohttp's client would add on its own: forward only what the caller sent.
_NO_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")

_LAMBDA_PATHS: Final = (
    (re.compile(r"^/2015-03-31/functions/[^/]+/invocations$"), "POST", "Invoke"),
    (re.compile(r"^/2014-11-13/functions/[^/]+/invoke-async/?$"), "POST", "InvokeAsync"),
    (re.compile(r"^/2015-03-31/functions/[^/]+$"), "GET", "GetFunction"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """What `FaultProxy` injects: a probability per fault kind, drawn once per request.

    The five rates are probabilities in 0..1 whose sum is at most 1 (default 0: a plain
    proxy). `after_forward` (0..1, default 0) is the fraction of faults applied after the
    request reached the upstream. `slow_delay` (seconds, default 1.0) is how long a ``slow``
    fault holds the answer. `throttle_status` (400 or 429, default 400) is the HTTP status of
    a JSON- or query-protocol throttle; REST-JSON throttles are always 429. `operations` and
    `path_prefixes` (default empty: every request) restrict the faults to requests whose
    operation is listed or whose path starts with a listed prefix; other requests pass.
    """

    internal_error: float = 0.0
    service_unavailable: float = 0.0
    throttle: float = 0.0
    reset: float = 0.0
    slow: float = 0.0
    after_forward: float = 0.0
    slow_delay: float = 1.0
    throttle_status: int = 400
    operations: Collection[str] = frozenset()
    path_prefixes: Collection[str] = ()

    def __post_init__(self) -> None:
        for name in (*FAULT_KINDS, "after_forward"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"{name} must be in 0..1, got {rate}", field=name)
        if self.total > 1.0:
            raise ConfigError(
                f"the fault rates must add up to at most 1, got {self.total}",
                field="internal_error",
            )
        if self.slow_delay < 0:
            raise ConfigError(
                f"slow_delay must be >= 0 seconds, got {self.slow_delay}", field="slow_delay"
            )
        if self.throttle_status not in (400, 429):
            raise ConfigError(
                f"throttle_status must be 400 or 429, got {self.throttle_status}",
                field="throttle_status",
            )
        if isinstance(self.operations, str) or isinstance(self.path_prefixes, str):
            raise ConfigError("operations and path_prefixes take collections of strings, not a str")
        object.__setattr__(self, "operations", frozenset(self.operations))
        object.__setattr__(self, "path_prefixes", tuple(self.path_prefixes))

    @property
    def total(self) -> float:
        """The probability that an eligible request gets some fault."""
        return float(sum(getattr(self, kind) for kind in FAULT_KINDS))

    def applies_to(self, operation: str | None, path: str) -> bool:
        """Whether a request with this operation and path may get a fault."""
        if not self.operations and not self.path_prefixes:
            return True
        if operation is not None and operation in self.operations:
            return True
        return any(path.startswith(prefix) for prefix in self.path_prefixes)

    def draw(self, rng: random.Random) -> FaultKind | None:
        """One draw: the fault kind for a request, or None."""
        point = rng.random()
        for kind in FAULT_KINDS:
            rate: float = getattr(self, kind)
            if point < rate:
                return kind
            point -= rate
        return None


def _classify(request: web.Request, body: bytes) -> tuple[Protocol, str | None, str]:
    """(protocol, operation, JSON error namespace) of a request."""
    target = request.headers.get("X-Amz-Target")
    if target:
        prefix, _, action = target.rpartition(".")
        # SQS's JSON errors are namespaced like `com.amazonaws.sqs#QueueDoesNotExist`.
        namespace = "com.amazonaws.sqs#" if prefix == "AmazonSQS" else ""
        return "json", action, namespace
    if request.content_type == "application/x-www-form-urlencoded":
        actions = parse_qs(body.decode("utf-8", errors="replace")).get("Action")
        return "query", actions[0] if actions else None, ""
    for pattern, method, operation in _LAMBDA_PATHS:
        if request.method == method and pattern.match(request.path):
            return "rest-json", operation, ""
    return "rest-json", None, ""


def _error_response(
    protocol: Protocol, namespace: str, status: int, code: str, message: str, *, sender: bool
) -> web.Response:
    request_id = str(uuid.uuid4())
    fault = "Sender" if sender else "Receiver"
    if protocol == "json":
        return web.Response(
            status=status,
            body=json.dumps({"__type": f"{namespace}{code}", "message": message}).encode(),
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "x-amzn-RequestId": request_id,
                # SQS is query-compatible: botocore takes Error.Code from this header.
                "x-amzn-query-error": f"{code};{fault}",
            },
        )
    if protocol == "query":
        xml = (
            "<ErrorResponse><Error>"
            f"<Type>{fault}</Type><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return web.Response(status=status, text=xml, content_type="text/xml")
    return web.Response(
        status=status,
        body=json.dumps({"Type": "User" if sender else "Service", "message": message}).encode(),
        headers={
            "Content-Type": "application/json",
            "x-amzn-ErrorType": code,
            "x-amzn-RequestId": request_id,
        },
    )


def _reset(request: web.Request) -> NoReturn:
    """Drop the connection without answering."""
    if request.transport is not None:
        request.transport.abort()
    # The transport is gone: aiohttp cannot send this, it only ends the handler.
    raise web.HTTPServiceUnavailable()


class FaultProxy:
    """A fault-injecting reverse proxy in front of `upstream_url`; see the module docstring.

    `faults` may be replaced while the proxy runs (e.g. set up queues with no faults, then
    turn them on). Counters: `requests` (received), `forwarded` (sent upstream), `injected`
    (faults by kind), `injected_after_forward` (those applied after forwarding),
    `upstream_errors` (the upstream did not answer: relayed as 502), and `delayed` (requests
    held by `latency`, by operation).

    `latency` maps an operation name (as `Faults.operations` names them) to seconds, fixed or
    a callable drawn per request (default none); it may be replaced while the proxy runs.
    A negative draw counts as 0.
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        faults: Faults | None = None,
        seed: int | None = None,
        latency: Mapping[str, Latency] | None = None,
    ) -> None:
        upstream = URL(upstream_url)
        if upstream.scheme not in ("http", "https") or not upstream.host:
            raise ConfigError(
                f"upstream_url must be an http(s) URL, got {upstream_url!r}", field="upstream_url"
            )
        self._upstream = str(upstream.with_path("").with_query(None).with_fragment(None))
        self.faults = faults if faults is not None else Faults()
        self.latency: dict[str, Latency] = dict(latency or {})
        self.delayed: dict[str, int] = {}
        self._random = random.Random(seed)
        self.requests = 0
        self.forwarded = 0
        self.upstream_errors = 0
        self.injected: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self.injected_after_forward: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing: anyio.Event | None = None
        self._endpoint_url: str | None = None

    @property
    def upstream_url(self) -> str:
        return self._upstream

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; only while the proxy runs."""
        if self._endpoint_url is None:
            raise ClosedError("FaultProxy is not running: use it as `async with`")
        return self._endpoint_url

    async def __aenter__(self) -> FaultProxy:
        if self._runner is not None:
            raise RuntimeError("FaultProxy is already running")
        self._closing = anyio.Event()
        # No pool limit: long polls must not queue behind each other inside the proxy.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
            skip_auto_headers=_NO_AUTO_HEADERS,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        try:
            runner, self._endpoint_url = await serve_on_loopback(app)
        except BaseException:
            await self._session.close()
            raise
        self._runner = runner
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        session, self._session = self._session, None
        self._endpoint_url = None
        if self._closing is not None:
            self._closing.set()
        with anyio.CancelScope(shield=True):
            if runner is not None:
                await runner.cleanup()
            if session is not None:
                await session.close()

    async def _hold(self, request: web.Request, delay: float) -> None:
        """Sleep `delay` seconds; if the proxy closes meanwhile, drop the connection."""
        if self._closing is None or self._closing.is_set():
            _reset(request)
        with anyio.move_on_after(delay):
            await self._closing.wait()
        if self._closing.is_set():
            _reset(request)

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        session = self._session
        if session is None or session.closed:
            _reset(request)
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _HOP_BY_HOP
        )
        url = URL(self._upstream + request.raw_path, encoded=True)
        self.forwarded += 1
        try:
            async with session.request(
                request.method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as answer:
                payload = await answer.read()
                relayed = CIMultiDict(
                    (name, value)
                    for name, value in answer.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                )
                return web.Response(
                    status=answer.status, reason=answer.reason, body=payload, headers=relayed
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.upstream_errors += 1
            return web.Response(status=502, text=f"upstream {self._upstream} failed: {exc!r}")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        faults = self.faults
        protocol, operation, namespace = _classify(request, body)
        delay = self.latency.get(operation) if operation is not None else None
        if delay is not None:
            seconds = delay() if callable(delay) else delay
            if operation is not None:
                self.delayed[operation] = self.delayed.get(operation, 0) + 1
            if seconds > 0:
                await self._hold(request, seconds)
        kind = faults.draw(self._random) if faults.applies_to(operation, request.path) else None
        if kind is None:
            return await self._forward(request, body)
        after = faults.after_forward > 0 and self._random.random() < faults.after_forward
        self.injected[kind] += 1
        if after:
            self.injected_after_forward[kind] += 1

        if kind == "slow":
            if after:
                answer = await self._forward(request, body)
                await self._hold(request, faults.slow_delay)
                return answer
            await self._hold(request, faults.slow_delay)
            return await self._forward(request, body)

        if after:
            # The upstream acts on the request; its answer is lost.
            await self._forward(request, body)
        if kind == "reset":
            _reset(request)
        if kind == "internal_error":
            return _error_response(
                protocol, namespace, 500, "InternalError", "Injected internal error", sender=False
            )
        if kind == "service_unavailable":
            return _error_response(
                protocol,
                namespace,
                503,
                "ServiceUnavailable",
                "Injected: service unavailable",
                sender=False,
            )
        if protocol == "rest-json":
            return _error_response(
                protocol, namespace, 429, "TooManyRequestsException", "Rate Exceeded.", sender=True
            )
        return _error_response(
            protocol,
            namespace,
            faults.throttle_status,
            "ThrottlingException",
            "Rate exceeded",
            sender=True,
        )
