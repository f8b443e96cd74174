"""`Connection`: one client connection of `HttpServer`, parsed by httptools.

httptools is a test dependency (the ``testing`` extra), not a runtime one: `HttpServer`
imports this module when it starts, as MotoServer imports moto.
"""

from __future__ import annotations

import asyncio
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, cast

import httptools

from ._http_server import Reply, Request

if TYPE_CHECKING:
    from ._http_server import HttpServer

__all__ = ("Connection",)

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_TEXT: Final = (("Content-Type", "text/plain"),)


class Connection(asyncio.Protocol):
    """One client connection: httptools' callbacks build requests; one task answers them."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._pending: deque[tuple[Request, bool]] = deque()
        self._answering = False

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only shaped like one
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(HTTPStatus.NOT_IMPLEMENTED, b"upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse(HTTPStatus.BAD_REQUEST, str(exc).encode())

    # --- httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        for name, value in self._headers:
            if name.lower() == b"expect" and value.lower() == b"100-continue":
                self.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self._url)
        request = Request(
            method=self._parser.get_method().decode("ascii"),
            path=(url.path or b"/").decode("latin-1"),
            query=(url.query or b"").decode("latin-1"),
            headers={
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in self._headers
            },
            body=b"".join(self._body),
        )
        self._pending.append((request, self._parser.should_keep_alive()))
        if not self._answering:
            self._answering = True
            self._server.spawn(self._answer_pending)

    # --- answering

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _refuse(self, status: HTTPStatus, detail: bytes) -> None:
        self.write(Reply(status, detail, _TEXT).encode(close=True))
        self._close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def _answer_pending(self) -> None:
        try:
            while self._pending:
                request, keep_alive = self._pending.popleft()
                try:
                    reply = await self._server.handler(request)
                except Exception as exc:  # a handler's bug: answered, not a dead connection
                    reply = Reply(
                        HTTPStatus.INTERNAL_SERVER_ERROR,
                        f"{type(exc).__name__}: {exc}".encode(),
                        _TEXT,
                    )
                self.write(reply.encode(close=not keep_alive))
                if not keep_alive:
                    self._close()
                    return
        finally:
            self._answering = False

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
