"""The lean transport's HTTP/1.1 pool against scripted servers on 127.0.0.1.

Each server answers every request with what its script says, byte for byte, and counts the
connections it accepted: reuse, framing (length, chunked, close), interim answers, limits,
timeouts, early closes, garbled answers and TLS, each with the error the retrier maps.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import itertools
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from asyncloop._lean.answer import ProtocolError, Reply
from asyncloop._lean.http import ssl_context
from asyncloop._lean.pool import ConnectError, Disconnected, HttpPool, ReadTimeout, TlsError

pytestmark = pytest.mark.anyio

REQUEST = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Thing: a\r\n\r\nhello"
# What a script returns per request: the bytes to answer, and whether to close afterwards
Script = Callable[[int], tuple[bytes, bool]]


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    # uvloop too (`--event-loop uvloop`): its create_connection may return before the
    # protocol's connection_made has run
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return ("asyncio", {"loop_factory": uvloop.new_event_loop})
    return "asyncio"


class _Server:
    """Counts connections and requests; answers each request as `script(request_number)`."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.most_open = 0
        self.hold = asyncio.Event()
        self.hold.set()
        self.closed = asyncio.Event()
        self._arrivals: list[tuple[int, asyncio.Event]] = []

    async def wait_for_requests(self, count: int) -> None:
        """Return once `count` requests arrived."""
        if self.requests < count:
            event = asyncio.Event()
            self._arrivals.append((count, event))
            await event.wait()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                self.requests += 1
                for count, event in self._arrivals:
                    if self.requests >= count:
                        event.set()
                await self.hold.wait()
                answer, close = self.script(self.requests)
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()
            self.closed.set()


@asynccontextmanager
async def _serve(
    script: Script, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[_Server, str]]:
    server = _Server(script)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        listener.close()


def _pool(url: str, **options: object) -> HttpPool:
    settings: dict[str, object] = {"connect_timeout": 5.0, "read_timeout": 5.0, "pool_size": 4}
    settings.update(options)
    return HttpPool(url, **settings)  # type: ignore[arg-type]


def _always(answer: bytes, close: bool = False) -> Script:
    return lambda _: (answer, close)


async def test_requests_reuse_one_kept_alive_connection() -> None:
    async with _serve(_always(OK)) as (server, url):
        pool = _pool(url)
        # WHEN three requests are sent one after another
        replies = [await pool.request(REQUEST) for _ in range(3)]
        await pool.aclose()
    # THEN each got the answer, names lower-cased, over a single connection
    assert replies == [Reply(200, {"content-length": "5", "x-thing": "a"}, b"hello")] * 3
    assert (server.connections, server.requests) == (1, 3)


async def test_at_most_pool_size_connections_are_open_and_the_rest_wait() -> None:
    async with _serve(_always(OK)) as (server, url):
        pool = _pool(url, pool_size=3)
        # GIVEN a server that holds its answers
        server.hold.clear()
        # WHEN ten requests are sent at once, and the answers released once three arrived
        tasks = [asyncio.create_task(pool.request(REQUEST)) for _ in range(10)]
        await server.wait_for_requests(3)
        server.hold.set()
        replies = await asyncio.gather(*tasks)
        await pool.aclose()
    # THEN all were answered over at most three connections
    assert [reply.body for reply in replies] == [b"hello"] * 10
    assert server.most_open <= 3
    assert server.connections == 3


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;x=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: t\r\n\r\n",
            b"hello!",
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", b""),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
    ids=["chunked", "interim-100", "no-content"],
)
async def test_answers_are_read_by_their_framing_and_the_connection_kept(
    answer: bytes, body: bytes
) -> None:
    async with _serve(_always(answer)) as (server, url):
        pool = _pool(url)
        # WHEN two requests get that answer
        replies = [await pool.request(REQUEST) for _ in range(2)]
        await pool.aclose()
    # THEN the body is read whole, the interim answer skipped, and the connection reused
    assert [reply.body for reply in replies] == [body, body]
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\n\r\nhello",
    ],
    ids=["connection-close", "http-1.0", "close-delimited"],
)
async def test_a_connection_the_server_ends_is_not_reused(answer: bytes) -> None:
    async with _serve(_always(answer, close=True)) as (server, url):
        pool = _pool(url)
        # WHEN two requests get an answer after which the server closes
        replies = [await pool.request(REQUEST) for _ in range(2)]
        await pool.aclose()
    # THEN both read "hello", each on a connection of its own
    assert [reply.body for reply in replies] == [b"hello", b"hello"]
    assert server.connections == 2


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    # GIVEN a server that closes after every answer, but says nothing
    async with _serve(_always(OK, close=True)) as (server, url):
        pool = _pool(url)
        await pool.request(REQUEST)
        # (the close reaches the idle connection: the server closed, then the client read it)
        await server.closed.wait()
        async with asyncio.timeout(5):
            for _ in itertools.count():
                if all(connection.closed for connection in pool._idle):
                    break
                await asyncio.sleep(0)
        # WHEN the next request is sent THEN it goes on a new connection
        reply = await pool.request(REQUEST)
        await pool.aclose()
    assert (reply.body, server.connections) == (b"hello", 2)


async def test_an_idle_connection_is_not_reused_past_the_keepalive_timeout() -> None:
    async with _serve(_always(OK)) as (server, url):
        pool = _pool(url, keepalive_timeout=0.05)
        await pool.request(REQUEST)
        # WHEN the next request comes after the connection sat idle longer than the timeout
        await asyncio.sleep(0.1)
        await pool.request(REQUEST)
        await pool.aclose()
    # THEN it opened a fresh connection
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    ],
    ids=[
        "version",
        "status",
        "length",
        "folding",
        "coding",
        "length-digit",
        "chunk-size",
        "chunk-size-0x",
        "chunk-data",
    ],
)
async def test_a_garbled_answer_is_a_protocol_error_and_closes_the_connection(
    answer: bytes,
) -> None:
    async with _serve(lambda n: (answer if n == 1 else OK, False)) as (server, url):
        pool = _pool(url)
        # WHEN the answer is not HTTP/1.1 as the pool reads it
        with pytest.raises(ProtocolError):
            await pool.request(REQUEST)
        # THEN the connection is dropped: the next request opens another
        reply = await pool.request(REQUEST)
        await pool.aclose()
    assert (reply.body, server.connections) == (b"hello", 2)


async def test_an_answer_cut_short_is_disconnected() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello"
    async with _serve(_always(cut, close=True)) as (_, url):
        pool = _pool(url)
        # WHEN the server closes before the body is complete THEN the request is Disconnected
        with pytest.raises(Disconnected):
            await pool.request(REQUEST)
        await pool.aclose()


async def test_an_answer_slower_than_the_read_timeout_times_out() -> None:
    async with _serve(_always(OK)) as (server, url):
        pool = _pool(url, read_timeout=0.1)
        # GIVEN a server that never answers
        server.hold.clear()
        # WHEN a request waits for its answer THEN it times out
        with pytest.raises(ReadTimeout):
            await pool.request(REQUEST)
        # AND a longer timeout for one request (a long poll's) lets the answer arrive
        asyncio.get_running_loop().call_later(0.3, server.hold.set)
        reply = await pool.request(REQUEST, read_timeout=5.0)
        await pool.aclose()
    assert (reply.body, server.connections) == (b"hello", 2)


async def test_a_cancelled_request_gives_back_its_slot_and_drops_its_connection() -> None:
    async with _serve(_always(OK)) as (server, url):
        pool = _pool(url, pool_size=1)
        server.hold.clear()
        # WHEN the only slot's request is cancelled while it waits for its answer
        task = asyncio.create_task(pool.request(REQUEST))
        await server.wait_for_requests(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.hold.set()
        # THEN the next request gets the slot, on a new connection
        reply = await asyncio.wait_for(pool.request(REQUEST), 5)
        await pool.aclose()
    assert (reply.body, server.connections) == (b"hello", 2)


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with _serve(_always(OK)) as (_, url):
        pass
    # GIVEN a port nothing listens on any more WHEN a request is sent THEN ConnectError
    pool = _pool(url)
    with pytest.raises(ConnectError):
        await pool.request(REQUEST)
    await pool.aclose()


def _certificate(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for `name`, and the certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    try:
        alternative: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alternative = x509.DNSName(name)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alternative]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / f"{name}.pem"
    key_path = tmp_path / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    return server, cert_path


async def test_tls_verifies_the_chain_and_the_name(tmp_path: Path) -> None:
    # GIVEN TLS servers on 127.0.0.1, one certified for that address, one for another name
    right, right_ca = _certificate(tmp_path, "127.0.0.1")
    wrong, wrong_ca = _certificate(tmp_path, "sqs.example.com")
    async with (
        _serve(_always(OK), tls=right) as (_, right_url),
        _serve(_always(OK), tls=wrong) as (_, wrong_url),
    ):
        trusted = _pool(right_url, ssl_context=ssl_context(str(right_ca)))
        untrusted = _pool(right_url, ssl_context=ssl_context(True))
        misnamed = _pool(wrong_url, ssl_context=ssl_context(str(wrong_ca)))
        unverified = _pool(wrong_url, ssl_context=ssl_context(False))
        # WHEN each requests THEN only the trusted certificate for the right name passes,
        # and verify=False passes anything
        assert (await trusted.request(REQUEST)).body == b"hello"
        with pytest.raises(TlsError):
            await untrusted.request(REQUEST)
        with pytest.raises(TlsError):
            await misnamed.request(REQUEST)
        assert (await unverified.request(REQUEST)).body == b"hello"
        for pool in (trusted, untrusted, misnamed, unverified):
            await pool.aclose()
