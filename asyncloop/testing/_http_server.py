"""`HttpServer`: a small HTTP/1.1 server on 127.0.0.1 for the local emulators, parsed by httptools.

Why not aiohttp's web server, which LambdaServer ran on before: the benchmark's Lambda
endpoint shares this machine's cores with the consumer it measures, and its own delay sets
the ceiling of every "of C/L" figure. Measured here (a child process answering Event invokes,
an aiohttp client, 2026-12-02): aiohttp's application server costs 118 us of CPU per invoke
at 5,000 invokes/s and 325 us at 300/s, and answers a 50 ms invoke in 52.7 ms (p50, 16
concurrent); this server, on uvloop, 23 us and 90 us, and 51.6-51.9 ms. At the lean
transport's 5,600 msgs/s the old endpoint used 0.9 of a core, more than the consumer.

What it does, and only that: HTTP/1.1 requests parsed by httptools (llhttp, the parser
uvicorn uses: framing, chunked bodies, keep-alive rules and malformed input are its), one
request at a time per connection in arrival order (pipelined requests wait their turn),
``Expect: 100-continue`` answered, each answer written whole with its ``Content-Length``;
a request it cannot parse is answered 400 and its connection closed. Handlers run in tasks
the server owns, one per busy connection; leaving the ``async with`` cancels and awaits them
and closes every connection, so a handler's sleep never delays a test's teardown. Not an
anyio task group: a pytest fixture enters a server in one task and leaves it in another.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import anyio

from .._lifetime import OpenOnce

if TYPE_CHECKING:
    from ._http_connection import Connection

__all__ = ("HttpServer", "Reply", "Request")


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request: `path` as sent (percent-encoded, no query), `headers` lower-cased."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: status, body, and headers beyond ``Content-Length`` (which is computed)."""

    status: int
    body: bytes = b""
    headers: Sequence[tuple[str, str]] = field(default=())

    def encode(self, *, close: bool) -> bytes:
        lines = [_status_line(self.status)]
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        lines.append(f"Content-Length: {len(self.body)}")
        if close:
            lines.append("Connection: close")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("latin-1") + self.body


Handler = Callable[[Request], Awaitable[Reply]]


@functools.cache
def _status_line(status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}"


class HttpServer(OpenOnce):
    """``async with HttpServer(handler) as server:`` serves `handler` at `endpoint_url`.

    Binds 127.0.0.1 on a port the OS picks, never another interface: tests and benchmarks
    must not listen beyond loopback. Runs on the caller's event loop (asyncio or uvloop).
    Opened once and closed once (`asyncloop._lifetime.OpenOnce`'s rules).
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._endpoint_url = ""

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; only while the server runs."""
        self._check_open()
        return self._endpoint_url

    @property
    def handler(self) -> Handler:
        """What answers each request."""
        return self._handler

    @property
    def connections(self) -> set[Connection]:
        """The open connections (each adds and removes itself)."""
        return self._connections

    def spawn(self, answer: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a connection's answering in a task the server owns (ended when it stops)."""
        if self._state != "open":
            return
        task = asyncio.get_running_loop().create_task(answer())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self) -> None:
        try:
            from ._http_connection import Connection
        except ImportError as exc:
            raise ImportError(
                "asyncloop.testing's LambdaServer needs httptools: pip install 'asyncloop[testing]'"
            ) from exc
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self._endpoint_url = f"http://{host}:{port}"

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            connection.abort()
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        # Shielded: a cancelled teardown still ends every task it owns before returning
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()
