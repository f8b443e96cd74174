"""`asyncloop.testing._http_server.HttpServer`, the local emulators' HTTP/1.1 server, seen from
a raw socket: framing, keep-alive, pipelining order, ``Expect: 100-continue``, bad input, and
a stop that does not wait for a sleeping handler."""

from __future__ import annotations

import asyncio
import sys

import anyio
import pytest

from asyncloop._exceptions import ClosedError
from asyncloop.testing._http_server import HttpServer, Reply, Request

pytestmark = pytest.mark.asyncio


async def echo(request: Request) -> Reply:
    """Answers with what it parsed; ``/sleep/<seconds>`` sleeps first, ``/boom`` raises."""
    if request.path.startswith("/sleep/"):
        await asyncio.sleep(float(request.path.removeprefix("/sleep/")))
    if request.path == "/boom":
        raise ValueError("handler bug")
    text = f"{request.method} {request.path} ?{request.query} {request.headers.get('x-n', '')} "
    return Reply(200, text.encode() + request.body, (("Content-Type", "text/plain"),))


async def read_answer(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def test_answers_in_order_on_one_kept_alive_connection_even_pipelined() -> None:
    async with HttpServer(echo) as server:
        host, port = server.endpoint_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        # GIVEN three requests written at once, the first answered last by its handler
        writer.write(
            b"POST /sleep/0.05?a=1 HTTP/1.1\r\nHost: x\r\nX-N: 1\r\nContent-Length: 3\r\n\r\none"
            b"GET /two HTTP/1.1\r\nHost: x\r\nX-N: 2\r\n\r\n"
            b"POST /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nthr\r\n2\r\nee\r\n0\r\n\r\n"
        )
        # WHEN the answers are read
        answers = [await read_answer(reader) for _ in range(3)]
        writer.close()
    # THEN each comes back in request order, bodies framed by length and chunks alike
    assert [a[0] for a in answers] == ["HTTP/1.1 200 OK"] * 3
    assert [a[2] for a in answers] == [
        b"POST /sleep/0.05 ?a=1 1 one",
        b"GET /two ? 2 ",
        b"POST /three ?  three",
    ]
    assert all("connection" not in a[1] for a in answers)


async def test_expect_continue_is_answered_before_the_body_is_sent() -> None:
    async with HttpServer(echo) as server:
        host, port = server.endpoint_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        # GIVEN a request that waits for 100 Continue before sending its body
        writer.write(
            b"PUT /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        )
        with anyio.fail_after(5):
            interim = await reader.readuntil(b"\r\n\r\n")
        # WHEN the body follows
        writer.write(b"body")
        status, _, body = await read_answer(reader)
        writer.close()
    # THEN the interim answer came first, then the final one
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert (status, body) == ("HTTP/1.1 200 OK", b"PUT /p ?  body")


async def test_connection_close_and_http_1_0_close_after_the_answer() -> None:
    async with HttpServer(echo) as server:
        host, port = server.endpoint_url.removeprefix("http://").split(":")
        for request in (
            b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /a HTTP/1.0\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            # WHEN the answer is read, THEN it says close and the connection ends there
            _, headers, _ = await read_answer(reader)
            assert headers["connection"] == "close"
            with anyio.fail_after(5):
                assert await reader.read() == b""
            writer.close()


async def test_garbage_is_answered_400_and_a_handler_bug_500() -> None:
    async with HttpServer(echo) as server:
        host, port = server.endpoint_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = await read_answer(reader)
        # THEN a handler that raises answers 500 and the connection goes on serving
        assert (status, body) == ("HTTP/1.1 500 Internal Server Error", b"ValueError: handler bug")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, _ = await read_answer(reader)
        with anyio.fail_after(5):
            assert await reader.read() == b""
        writer.close()
    # THEN unparseable input is refused and its connection closed
    assert status == "HTTP/1.1 400 Bad Request"
    assert headers["connection"] == "close"


async def test_leaving_cancels_sleeping_handlers_and_closes_their_connections() -> None:
    entered = asyncio.Event()
    cancelled: list[bool] = []

    async def sleeper(request: Request) -> Reply:
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return Reply(200)

    server = HttpServer(sleeper)
    async with server:
        host, port = server.endpoint_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        # GIVEN a handler sleeping for a minute
        writer.write(b"GET /any HTTP/1.1\r\nHost: x\r\n\r\n")
        with anyio.fail_after(5):
            await entered.wait()
    # WHEN the server is left, THEN the handler was cancelled, and the client sees EOF
    assert cancelled == [True]
    with anyio.fail_after(5):
        assert await reader.read() == b""
    writer.close()
    with pytest.raises(ClosedError):
        _ = server.endpoint_url


async def test_without_httptools_starting_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an environment without httptools (and the connection module not yet imported)
    monkeypatch.setitem(sys.modules, "httptools", None)
    monkeypatch.delitem(sys.modules, "asyncloop.testing._http_connection", raising=False)
    server = HttpServer(echo)
    # WHEN the server starts, THEN the error says what to install
    with pytest.raises(ImportError, match=r"pip install 'asyncloop\[testing\]'"):
        await server.__aenter__()
    with pytest.raises(ClosedError):
        _ = server.endpoint_url
