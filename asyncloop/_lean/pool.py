"""`HttpPool`: keep-alive HTTP/1.1 connections to one endpoint, for the lean transport.

Why not aiohttp's client: measured here (``python -m bench.micro.lean_cpu``, the floor row),
a plain aiohttp ``POST`` to a local endpoint costs 85-170 us of CPU, more than the rest of a
lean Invoke together. Its ``ClientSession`` does per request what these requests never need:
cookies, redirects, proxies, middlewares, tracing, a task to write each body, a multidict of
headers built three times, a stream reader per answer. The lean transport sends one kind of
request to one host, over and over: a ``POST`` whose head it writes itself (fixed but for
the date, token, signature and length), a small body held in memory, an answer read whole.
This module does only that; its cost is measured in the same run as aiohttp's floor.

How it behaves, following aiohttp and aiobotocore where they decide something:

- connections: at most `pool_size` open (a request beyond it waits, in turn, as with
  aiohttp's ``limit``), reused most recent first while the server keeps them (HTTP/1.1 and no
  ``Connection: close``), closed after `keepalive_timeout` idle (aiobotocore's 12 s) or when
  the server closes them; one request at a time on each, no pipelining;
- TLS through asyncio's own transport, with the SSL context given (the CA bundle botocore
  resolved, or no verification when the client was built with ``verify=False``);
- timeouts: `connect_timeout` bounds opening a connection (DNS, TCP, TLS handshake),
  `read_timeout` each wait for data of an answer (aiohttp's ``sock_read``, botocore's
  ``read_timeout``), from the request's writing to the last byte;
- answers: read whole by `answer.AnswerReader` (the framings, limits and strictness are its);
  one it cannot read is a `ProtocolError`, and its connection is closed, never reused;
- failures raise the `HttpError` subclasses below, which `retry.as_botocore_error` turns into
  the botocore exceptions aiobotocore raises for the same failures (refused or unresolvable:
  ``EndpointConnectionError``; closed early or garbled: ``ConnectionClosedError``; timeouts:
  ``ConnectTimeoutError`` / ``ReadTimeoutError``; TLS: ``SSLError``);
- a request cancelled or failed midway closes its connection: its answer would reach nobody.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Final
from urllib.parse import urlsplit

from .answer import AnswerReader, HttpError, ProtocolError, Reply

__all__ = ("ConnectError", "ConnectTimeout", "Disconnected", "HttpPool", "ReadTimeout", "TlsError")

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class ConnectError(HttpError):
    """The connection could not be opened: refused, unreachable, or the name not found."""


class ConnectTimeout(HttpError):
    """Opening the connection took longer than the connect timeout."""


class TlsError(HttpError):
    """The TLS handshake failed (an untrusted or mismatched certificate, a protocol error)."""


class ReadTimeout(HttpError):
    """No data of the answer arrived within the read timeout."""


class Disconnected(HttpError):
    """The connection closed (or was reset) before the answer was complete."""


class _Connection(asyncio.Protocol):
    """One connection: writes a request, reads its answer into the waiting future."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reader = AnswerReader()
        self._waiter: asyncio.Future[Reply] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout = 0.0
        self._last_read = 0.0

    @property
    def keep_alive(self) -> bool:
        """Whether the last answer leaves the connection fit for the next request."""
        return self._reader.keep_alive and not self.closed

    # -- asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for: the connection can no longer be trusted
            self.abort()
            return
        self._last_read = self._loop.time()
        try:
            reply = self._reader.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        except Exception as exc:
            # A reader bug must not leave the request waiting for its read timeout
            error = ProtocolError(f"the answer could not be read: {exc!r}")
            error.__cause__ = exc
            self._fail(error)
            return
        if reply is not None:
            self._finish(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None:
            return
        # A body delimited by the close is complete now; any other answer was cut short
        reply = self._reader.eof() if exc is None else None
        if reply is not None:
            self._finish(reply)
            return
        reason = f": {exc}" if exc else ""
        self._fail(Disconnected(f"the server closed the connection before answering{reason}"))

    # -- requests

    def exchange(self, data: bytes, read_timeout: float) -> asyncio.Future[Reply]:
        """Write one request; the future completes with its answer."""
        assert self.transport is not None
        assert self._waiter is None
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        self._reader.start()
        self._read_timeout = read_timeout
        self._last_read = now = loop.time()
        self._timer = loop.call_at(now + read_timeout, self._on_timer)
        self.transport.write(data)
        return waiter

    def _on_timer(self) -> None:
        # One timer per request, moved on lazily: data_received only notes the time
        due = self._last_read + self._read_timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._on_timer)
            return
        self._timer = None
        self._fail(ReadTimeout(f"no data for {self._read_timeout:g} s"))

    def _settle(self) -> asyncio.Future[Reply] | None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # A cancelled request's future is done already: nobody waits for its answer
        return waiter if waiter is not None and not waiter.done() else None

    def _finish(self, reply: Reply) -> None:
        waiter = self._settle()
        if waiter is not None:
            waiter.set_result(reply)

    def _fail(self, exc: HttpError) -> None:
        waiter = self._settle()
        self.abort()
        if waiter is not None:
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class HttpPool:
    """Requests to the endpoint `url` (``http`` or ``https``) over kept-alive connections.

    ``await pool.request(data)`` writes `data` (a whole request: head and body) on a free
    connection and returns the answer; ``await pool.aclose()`` closes the idle connections
    (one in use closes when its request ends). `ssl_context` is used for ``https``.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_timeout: float = 12.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"the endpoint must be an http(s) URL, got {url!r}")
        self._url = url
        self._host = parts.hostname
        self._port = parts.port or _DEFAULT_PORTS[parts.scheme]
        self._ssl = ssl_context if parts.scheme == "https" else None
        if parts.scheme == "https" and self._ssl is None:
            self._ssl = ssl.create_default_context()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._keepalive_timeout = keepalive_timeout
        # Held while a connection is in use or being opened: idle ones hold none, so the
        # open connections never exceed pool_size
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[_Connection] = []
        self._closed = False

    async def request(self, data: bytes, *, read_timeout: float | None = None) -> Reply:
        """Send `data` and read the answer; `read_timeout` overrides the pool's (long polls)."""
        if self._closed:
            raise RuntimeError("the HTTP pool is closed")
        await self._slots.acquire()
        try:
            if self._closed:
                raise RuntimeError("the HTTP pool is closed")
            connection = self._idle_connection() or await self._connect()
            try:
                reply = await connection.exchange(data, read_timeout or self._read_timeout)
            except BaseException:
                connection.abort()
                raise
            if connection.keep_alive and not self._closed:
                connection.idle_since = asyncio.get_running_loop().time()
                self._idle.append(connection)
            else:
                connection.close()
            return reply
        finally:
            self._slots.release()

    def _idle_connection(self) -> _Connection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            if asyncio.get_running_loop().time() - connection.idle_since > self._keepalive_timeout:
                # The most recent is too old: so are the others
                for old in (connection, *idle):
                    old.close()
                idle.clear()
                return None
            return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, connection = await loop.create_connection(
                    lambda: _Connection(loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except TimeoutError as exc:
            raise ConnectTimeout(
                f"connecting to {self._url} took over {self._connect_timeout:g} s"
            ) from exc
        except ssl.SSLError as exc:
            raise TlsError(f"TLS with {self._url} failed: {exc}") from exc
        except OSError as exc:
            raise ConnectError(f"could not connect to {self._url}: {exc}") from exc
        # uvloop may return before it called connection_made: the transport is this one
        if connection.transport is None:
            connection.transport = transport
        return connection

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        # Let the transports' close callbacks run
        await asyncio.sleep(0)
