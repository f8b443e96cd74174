"""SigV4 request signing for the lean transport, with the signing key cached per day.

Why not botocore's signer: measured here (``python -m bench.micro.lean_cpu``, median of 5 x
3,000 signatures, a loaded 2-core machine), botocore's ``SigV4Auth.add_auth`` on an
``AWSRequest`` costs 55-67 us a request, its CRT signer (``botocore[crt]``) 58-88 us once
wrapped in an ``AWSRequest``, raw ``awscrt.auth.aws_sign_request`` 18-21 us, and this signer
7-12 us. awscrt would also be a native dependency (botocore pins its own version), and merely
installing it switches every botocore client in the process to the CRT signer. The lean
transport signs exactly two request shapes (a JSON ``POST /`` to SQS, a ``POST`` to Lambda's
invocations path): no query string, one value per header, a body in memory, no presigning, no
S3 rules, which are the parts of SigV4 where a hand-written signer goes wrong. So the canonical
request is built here, and kept byte-for-byte equal to botocore's by a test
(tests/test_lean_signing.py compares canonical requests and Authorization headers for the same
inputs at a fixed clock).

What it reuses from botocore: the list of headers never signed
(``botocore.auth.SIGNED_HEADERS_BLACKLIST``) and its rules: header values trimmed with inner
whitespace collapsed, the path percent-encoded a second time (``quote(path, safe="/~")``,
which botocore applies to every service but S3), the payload's SHA-256 in the canonical
request but no ``X-Amz-Content-SHA256`` header. The derived signing key (four HMACs) depends
only on the secret key, the day, the region and the service: it is cached under exactly
those, so a rotated secret derives a new key and stale credentials are never kept. The
``X-Amz-Date`` is formatted once per second of the system clock, and each kind of request's
fixed part (method, host, path, headers: `SigningShape`) is canonicalised once, so a
signature costs two SHA-256s and one HMAC over strings joined from prepared parts.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

__all__ = ("Credentials", "SigV4Signer", "SigningShape")

_ALGORITHM: Final = "AWS4-HMAC-SHA256"


def _unsigned_headers() -> frozenset[str]:
    # botocore's own list, so a header it never signs is never signed here either
    from botocore.auth import SIGNED_HEADERS_BLACKLIST

    return frozenset(name.lower() for name in SIGNED_HEADERS_BLACKLIST)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Frozen credentials for one request (botocore's ``ReadOnlyCredentials`` fields)."""

    access_key: str
    secret_key: str
    token: str | None = None


class SigV4Signer:
    """Signs requests for one service in one region.

    ``signer.shape(...)`` canonicalises a request's fixed part once (method, host, path,
    headers) and signs each body with `SigningShape.signature`; ``signer.sign(...)`` does both
    for one request and returns the whole set of headers. Not thread-safe by design: the
    caches are plain dicts used from one event loop.
    """

    def __init__(self, *, service: str, region: str) -> None:
        if not service or not region:
            raise ValueError(f"service and region must be set, got {service!r}, {region!r}")
        self._service = service
        self._region = region
        self._unsigned = _unsigned_headers()
        # (secret key, day) -> (scope, keyed HMAC to copy); two entries at most (today, and
        # yesterday briefly)
        self._keys: dict[tuple[str, str], tuple[str, Any]] = {}
        # The X-Amz-Date of the current second: formatting a datetime costs about 2 us
        self._second = -1
        self._amz_date = ""

    @property
    def service(self) -> str:
        return self._service

    @property
    def region(self) -> str:
        return self._region

    def amz_date(self, now: datetime | None = None) -> str:
        """``X-Amz-Date`` for `now` (default: the current second of the system clock)."""
        if now is not None:
            return now.strftime("%Y%m%dT%H%M%SZ")
        second = int(time.time())
        if second != self._second:
            self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._second = second
        return self._amz_date

    def signing_key(self, secret_key: str, day: str) -> tuple[str, Any]:
        """The credential scope of `day` and an HMAC keyed with its signing key (copy it)."""
        cache_key = (secret_key, day)
        cached = self._keys.get(cache_key)
        if cached is None:
            key = hmac.digest(("AWS4" + secret_key).encode(), day.encode(), "sha256")
            for part in (self._region, self._service, "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            scope = f"{day}/{self._region}/{self._service}/aws4_request"
            cached = (scope, hmac.new(key, digestmod=hashlib.sha256))
            if len(self._keys) >= 2:
                self._keys.clear()
            self._keys[cache_key] = cached
        return cached

    def is_signed(self, name: str) -> bool:
        """Whether a header named `name` is signed (botocore's list of exceptions)."""
        return name.lower() not in self._unsigned

    def canonical_request(
        self, *, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[str, str]:
        """The canonical request and the signed-headers list, for headers already complete.

        The reference form, header by header (`SigningShape` builds the same string from
        parts prepared once). `path` is the request's path as sent (already percent-encoded
        once); `headers` must include ``host`` and ``x-amz-date`` (and
        ``x-amz-security-token`` with a session token).
        """
        canonical: dict[str, str] = {}
        for name, value in headers.items():
            lower = name.lower()
            if lower in self._unsigned:
                continue
            canonical[lower] = " ".join(value.split())
        names = sorted(canonical)
        signed = ";".join(names)
        lines = "".join(f"{name}:{canonical[name]}\n" for name in names)
        request = (
            f"{method.upper()}\n{_canonical_path(path)}\n\n{lines}\n{signed}\n"
            f"{hashlib.sha256(body).hexdigest()}"
        )
        return request, signed

    def shape(
        self, *, method: str, host: str, path: str, headers: Mapping[str, str]
    ) -> SigningShape:
        """The fixed part of requests to `path` with `headers` (see `sign`), prepared once."""
        return SigningShape(self, method=method, host=host, path=path, headers=headers)

    def sign(
        self,
        *,
        method: str,
        host: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        credentials: Credentials,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """The request's headers with ``Host``, ``X-Amz-Date``, the token and ``Authorization``.

        `host` is the ``Host`` header as botocore writes it (no default port); `now` is for tests
        (default: the current UTC time).
        """
        shape = self.shape(method=method, host=host, path=path, headers=headers)
        amz_date, token, authorization = shape.signature(body, credentials, now=now)
        signed = dict(shape.headers)
        signed["X-Amz-Date"] = amz_date
        if token:
            signed["X-Amz-Security-Token"] = token
        signed["Authorization"] = authorization
        return signed


def _canonical_path(path: str) -> str:
    # botocore encodes the path a second time for every service but S3
    return quote(path or "/", safe="/~")


# The headers every request gets per signature, never among a shape's fixed ones
_DYNAMIC: Final = frozenset({"host", "x-amz-date", "x-amz-security-token", "authorization"})


class SigningShape:
    """The fixed part of one kind of request, canonicalised once for every signature.

    A consumer sends three or four kinds of request (an Invoke of its function, a receive,
    a delete batch) over and over: their method, host, path and headers never change, only
    the date, the token and the body. So the canonical request is kept as the strings
    between those three (sorted names, trimmed values, the signed-headers list) and
    `signature` joins them: equal byte for byte to `SigV4Signer.canonical_request` (a test
    compares them). `headers` are the request's fixed headers as sent, ``Host`` first.
    """

    __slots__ = ("_chunks", "_signed", "_signer", "headers")

    def __init__(
        self,
        signer: SigV4Signer,
        *,
        method: str,
        host: str,
        path: str,
        headers: Mapping[str, str],
    ) -> None:
        self._signer = signer
        self.headers: dict[str, str] = {"Host": host}
        canonical: dict[str, str] = {"host": " ".join(host.split())}
        for name, value in headers.items():
            lower = name.lower()
            if lower in _DYNAMIC or lower in canonical:
                raise ValueError(f"header {name!r} is set per request or given twice")
            self.headers[name] = value
            if signer.is_signed(lower):
                canonical[lower] = " ".join(value.split())
        # Without a token, and with one: the parts between the values set per signature
        self._chunks: dict[bool, tuple[str, ...]] = {}
        self._signed: dict[bool, str] = {}
        start = f"{method.upper()}\n{_canonical_path(path)}\n\n"
        for with_token in (False, True):
            entries: dict[str, str | None] = {**canonical, "x-amz-date": None}
            if with_token:
                entries["x-amz-security-token"] = None
            names = sorted(entries)
            signed = ";".join(names)
            chunks, current = [], start
            for name in names:
                fixed = entries[name]
                if fixed is None:
                    chunks.append(f"{current}{name}:")
                    current = "\n"
                else:
                    current += f"{name}:{fixed}\n"
            chunks.append(f"{current}\n{signed}\n")
            self._chunks[with_token] = tuple(chunks)
            self._signed[with_token] = signed

    def signature(
        self, body: bytes, credentials: Credentials, *, now: datetime | None = None
    ) -> tuple[str, str | None, str]:
        """``(X-Amz-Date, X-Amz-Security-Token or None, Authorization)`` for `body`."""
        signer = self._signer
        amz_date = signer.amz_date(now)
        token = credentials.token or None
        payload_hash = hashlib.sha256(body).hexdigest()
        if token is None:
            before, after = self._chunks[False]
            request = f"{before}{amz_date}{after}{payload_hash}"
        else:
            before, between, after = self._chunks[True]
            request = f"{before}{amz_date}{between}{' '.join(token.split())}{after}{payload_hash}"
        scope, keyed = signer.signing_key(credentials.secret_key, amz_date[:8])
        mac = keyed.copy()
        mac.update(
            f"{_ALGORITHM}\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(request.encode()).hexdigest()}".encode()
        )
        authorization = (
            f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={self._signed[token is not None]}, Signature={mac.hexdigest()}"
        )
        return amz_date, token, authorization
