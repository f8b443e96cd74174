"""`AnswerReader`: one HTTP/1.1 answer at a time, from the bytes a connection receives.

The lean transport's `HttpPool` feeds it what arrives and gets a `Reply` once an answer is
whole: the status line, the headers (names lower-cased, repeated ones joined with ``, ``, as
botocore reads them), a body framed by ``Content-Length``, by the chunked transfer coding
(its extensions and trailer fields read and dropped) or by the connection's close (`eof`);
interim 1xx answers are skipped. `keep_alive` says whether the connection may carry the
next request (HTTP/1.1, no ``Connection: close``, one framing, nothing left over). Anything
else, a head over 64 KiB or a body over 64 MiB is a `ProtocolError`: the connection must be
dropped. Parsing is strict where leniency lets two readers disagree on where an answer ends
(no line folding, no space before a colon, one valid length, chunked as the only coding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple

__all__ = ("AnswerReader", "HttpError", "ProtocolError", "Reply")

_MAX_HEAD: Final = 64 * 1024
_MAX_BODY: Final = 64 * 1024 * 1024
# How an answer's body is delimited
_LENGTH, _CHUNKED, _CLOSE = 0, 1, 2
# Where the chunked reader is
_SIZE, _DATA, _DATA_END, _TRAILER = 0, 1, 2, 3
_HEX: Final = b"0123456789abcdefABCDEF"


def _is_decimal(text: str) -> bool:
    # str.isdigit alone takes "²" (latin-1 has it), which int() refuses
    return text.isascii() and text.isdigit()


class Reply(NamedTuple):
    """One HTTP answer, read in full: the status, the headers (lower-case names), the body."""

    status_code: int
    headers: Mapping[str, str] = {}
    body: bytes = b""


class HttpError(Exception):
    """A request that got no complete answer."""


class ProtocolError(HttpError):
    """The answer is not HTTP/1.x as this client reads it."""


def _head(text: str) -> tuple[str, int, dict[str, str]]:
    """The version, status and headers of an answer's head (without its final blank line)."""
    lines = text.split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if (
        not version.startswith("HTTP/1.")
        or len(code) != 3
        or not _is_decimal(code)
        or rest[3:4] not in ("", " ")
    ):
        raise ProtocolError(f"bad status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        # No obsolete line folding, no space before the colon (RFC 9112 5.1)
        if not colon or not name or name[0] in " \t" or name[-1] in " \t":
            raise ProtocolError(f"bad header line {line[:100]!r}")
        name = name.lower()
        value = value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return version, int(code), headers


class AnswerReader:
    """``reader.start()`` before each request, then `feed` what arrives until it gives the
    `Reply`; `eof` when the connection closes. Raises `ProtocolError`."""

    def __init__(self) -> None:
        self.keep_alive = False
        self._buffer = bytearray()
        self._pos = 0
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._framing = _LENGTH
        self._remaining = 0
        self._chunk_state = _SIZE
        self._chunks: list[bytes] = []
        self._body_size = 0

    def start(self) -> None:
        """Expect a new answer."""
        self._buffer.clear()
        self._pos = 0
        self._headers = None
        self._framing = _LENGTH
        self.keep_alive = False

    def feed(self, data: bytes) -> Reply | None:
        """The answer, once `data` completes it; else None."""
        self._buffer += data
        reply = self._parse()
        if reply is not None:
            if self._pos != len(self._buffer):
                # More than the answer arrived: whatever it is, it answers no request of ours
                self.keep_alive = False
            self._buffer.clear()
            self._pos = 0
        return reply

    def eof(self) -> Reply | None:
        """The answer the close completes (a body delimited by it), or None: it was cut."""
        if self._framing != _CLOSE or self._headers is None:
            return None
        return Reply(self._status, self._headers, bytes(self._buffer[self._pos :]))

    def _parse(self) -> Reply | None:
        buffer = self._buffer
        while self._headers is None:
            end = buffer.find(b"\r\n\r\n", self._pos)
            if end < 0:
                if len(buffer) - self._pos > _MAX_HEAD:
                    raise ProtocolError("the answer's head exceeds 64 KiB")
                return None
            head = buffer[self._pos : end].decode("latin-1")
            self._pos = end + 4
            version, status, headers = _head(head)
            if 100 <= status < 200:
                # An interim answer (100 Continue, 103 Early Hints): the real one follows
                continue
            self._start_body(version, status, headers)
        if self._framing == _LENGTH:
            pos, end = self._pos, self._pos + self._remaining
            if len(buffer) < end:
                return None
            self._pos = end
            return Reply(self._status, self._headers, bytes(buffer[pos:end]))
        if self._framing == _CHUNKED:
            body = self._parse_chunks()
            return None if body is None else Reply(self._status, self._headers, body)
        if len(buffer) - self._pos > _MAX_BODY:
            raise ProtocolError("the answer's body exceeds 64 MiB")
        return None

    def _start_body(self, version: str, status: int, headers: dict[str, str]) -> None:
        self._status, self._headers = status, headers
        tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
        # HTTP/1.0 connections are not kept: these servers speak 1.1
        self.keep_alive = version == "HTTP/1.1" and "close" not in tokens
        coding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if status in (204, 304):
            self._framing, self._remaining = _LENGTH, 0
        elif coding is not None:
            if coding.strip().lower() != "chunked":
                raise ProtocolError(f"unsupported transfer coding {coding!r}")
            self._framing, self._chunk_state, self._chunks, self._body_size = _CHUNKED, _SIZE, [], 0
            # Both framings at once: read as chunked, but trust the connection no further
            if length is not None:
                self.keep_alive = False
        elif length is not None:
            if not _is_decimal(length) or int(length) > _MAX_BODY:
                raise ProtocolError(f"bad content-length {length[:40]!r}")
            self._framing, self._remaining = _LENGTH, int(length)
        else:
            self._framing = _CLOSE
            self.keep_alive = False

    def _parse_chunks(self) -> bytes | None:
        buffer = self._buffer
        while True:
            if self._chunk_state == _DATA:
                end = min(len(buffer), self._pos + self._remaining)
                self._chunks.append(bytes(buffer[self._pos : end]))
                self._remaining -= end - self._pos
                self._pos = end
                if self._remaining:
                    return None
                self._chunk_state = _DATA_END
                continue
            end = buffer.find(b"\r\n", self._pos)
            if end < 0:
                if len(buffer) - self._pos > 4096:
                    raise ProtocolError("a chunk's size line exceeds 4 KiB")
                return None
            line = bytes(buffer[self._pos : end])
            self._pos = end + 2
            if self._chunk_state == _DATA_END:
                if line:
                    raise ProtocolError("a chunk is longer than its size")
                self._chunk_state = _SIZE
            elif self._chunk_state == _SIZE:
                size_text = line.split(b";", 1)[0].strip(b" \t")
                # Hex digits only: int(..., 16) would also take "0x", "+" and "_"
                if not size_text or size_text.strip(_HEX):
                    raise ProtocolError(f"bad chunk size {size_text[:40]!r}")
                size = int(size_text, 16)
                self._body_size += size
                if self._body_size > _MAX_BODY:
                    raise ProtocolError("the answer's body exceeds 64 MiB")
                if size == 0:
                    self._chunk_state = _TRAILER
                else:
                    self._chunk_state, self._remaining = _DATA, size
            elif not line:
                # The blank line after the (ignored) trailer fields
                return b"".join(self._chunks)
