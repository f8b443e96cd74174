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
``X-Amz-Date`` is formatted once per second of the system clock and the canonical path once
per path (a channel sends to a few).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import quote

__all__ = ("Credentials", "SigV4Signer")

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
    """Signs requests for one service in one region: ``signer.sign(...)`` returns the headers.

    Not thread-safe by design: the key cache is a plain dict used from one event loop.
    """

    def __init__(self, *, service: str, region: str) -> None:
        if not service or not region:
            raise ValueError(f"service and region must be set, got {service!r}, {region!r}")
        self._service = service
        self._region = region
        self._unsigned = _unsigned_headers()
        # (secret key, day) -> signing key; two entries at most (today, and yesterday briefly)
        self._keys: dict[tuple[str, str], bytes] = {}
        # The X-Amz-Date of the current second: formatting a datetime costs about 2 us
        self._second = -1
        self._amz_date = ""
        # path -> its canonical (twice-encoded) form: a channel sends to a few paths only
        self._paths: dict[str, str] = {}

    @property
    def service(self) -> str:
        return self._service

    @property
    def region(self) -> str:
        return self._region

    def _signing_key(self, secret_key: str, day: str) -> bytes:
        cache_key = (secret_key, day)
        key = self._keys.get(cache_key)
        if key is None:
            key = hmac.digest(("AWS4" + secret_key).encode(), day.encode(), "sha256")
            for part in (self._region, self._service, "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            if len(self._keys) >= 2:
                self._keys.clear()
            self._keys[cache_key] = key
        return key

    def canonical_request(
        self, *, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[str, str]:
        """The canonical request and the signed-headers list, for headers already complete.

        `path` is the request's path as sent (already percent-encoded once); `headers` must
        include ``host`` and ``x-amz-date`` (and ``x-amz-security-token`` with a session token).
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
        canonical_path = self._paths.get(path)
        if canonical_path is None:
            if len(self._paths) >= 256:
                self._paths.clear()
            canonical_path = self._paths[path] = quote(path or "/", safe="/~")
        request = (
            f"{method.upper()}\n{canonical_path}\n\n{lines}\n{signed}\n"
            f"{hashlib.sha256(body).hexdigest()}"
        )
        return request, signed

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
        if now is not None:
            amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        else:
            second = int(time.time())
            if second != self._second:
                self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
                self._second = second
            amz_date = self._amz_date
        day = amz_date[:8]
        signed_headers = dict(headers)
        signed_headers["Host"] = host
        signed_headers["X-Amz-Date"] = amz_date
        if credentials.token:
            signed_headers["X-Amz-Security-Token"] = credentials.token
        request, signed = self.canonical_request(
            method=method, path=path, headers=signed_headers, body=body
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        request_hash = hashlib.sha256(request.encode()).hexdigest()
        to_sign = f"{_ALGORITHM}\n{amz_date}\n{scope}\n{request_hash}"
        signature = hmac.digest(
            self._signing_key(credentials.secret_key, day), to_sign.encode(), "sha256"
        ).hex()
        signed_headers["Authorization"] = (
            f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return signed_headers
