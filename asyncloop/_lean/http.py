"""The lean transport's HTTP: one aiohttp session per service, configured as aiobotocore's.

Why: aiobotocore spends about 860 us of CPU per Lambda Invoke and 1,100 us per SQS call here,
while a plain aiohttp POST to a local endpoint costs about 67 us. The session is what stays
of that: aiohttp (already installed through aiobotocore), with the settings botocore resolved
for the client the run creates anyway, so nothing is configured twice:

- timeouts: ``sock_connect`` / ``sock_read`` from the client's ``connect_timeout`` /
  ``read_timeout`` (as aiobotocore's ``AIOHTTPSession`` sets them); a long poll's read timeout
  is raised above its wait by the caller;
- TLS: verification on unless the client was built with ``verify=False``; the CA bundle the
  client resolved (``AWS_CA_BUNDLE``, ``ca_bundle`` in the profile, ``verify=path``) loaded
  into botocore's own SSL context factory (``botocore.httpsession.create_urllib3_context``);
- connection limit: the client's ``max_pool_connections`` (requests beyond it wait, as on the
  sdk path: size it to receivers + in-flight);
- a User-Agent naming asyncloop, the transport and botocore's version, and
  ``Accept-Encoding: identity`` (aiobotocore's, botocore#1255): bodies are read raw.

Not carried over: HTTP(S) proxies (``HTTPS_PROXY``, ``proxies`` in the client config) and
client certificates; `HttpSettings.from_client` refuses a client configured with them, so such
a run uses the sdk transport rather than silently going direct.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from .._exceptions import ConfigError
from .._validate import check_range

__all__ = ("HttpSettings", "open_session", "user_agent")


def user_agent() -> str:
    """``asyncloop/<version> (lean) botocore/<version> aiohttp/<version> Python/<version>``."""
    import platform

    import botocore

    from .. import __version__

    return (
        f"asyncloop/{__version__} (lean) botocore/{botocore.__version__} "
        f"aiohttp/{aiohttp.__version__} Python/{platform.python_version()}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSettings:
    """How one service's session connects.

    `connect_timeout` (seconds, 0.1..120) and `read_timeout` (seconds, 1..1000) bound opening
    a connection and each read; `pool_size` (1..10000) caps the open connections; `verify` is
    True (the system's CAs), False (no verification: an emulator over https with a
    self-signed certificate), or the path of a CA bundle.
    """

    connect_timeout: float = 60.0
    read_timeout: float = 60.0
    pool_size: int = 10
    verify: bool | str = True
    user_agent: str = ""

    def __post_init__(self) -> None:
        check_range("connect_timeout", self.connect_timeout, 0.1, 120.0)
        check_range("read_timeout", self.read_timeout, 1.0, 1000.0)
        check_range("pool_size", self.pool_size, 1, 10_000)
        if not isinstance(self.verify, bool | str) or self.verify == "":
            raise ConfigError(
                f"verify must be True, False or a CA bundle path, got {self.verify!r}",
                field="verify",
            )

    @classmethod
    def from_client(cls, client: Any) -> HttpSettings:
        """The settings botocore resolved for an aiobotocore client (config, CA bundle)."""
        config = client.meta.config
        http_session = client._endpoint.http_session
        # botocore already folded AWS_CA_BUNDLE / ca_bundle / verify= into this one value
        verify = getattr(http_session, "_verify", True)
        if verify is None:
            verify = True
        # botocore's proxy choice for this endpoint (HTTPS_PROXY, NO_PROXY, config.proxies)
        proxy_config = getattr(http_session, "_proxy_config", None)
        proxied = bool(getattr(config, "proxies", None)) or bool(
            proxy_config is not None and proxy_config.proxy_url_for(client.meta.endpoint_url)
        )
        if proxied or getattr(config, "client_cert", None):
            raise ConfigError(
                "the lean transport does not go through HTTP proxies or send client "
                "certificates: use the sdk transport for this endpoint",
                field="transport",
            )
        return cls(
            connect_timeout=float(config.connect_timeout),
            read_timeout=float(config.read_timeout),
            pool_size=int(config.max_pool_connections),
            verify=verify,
            user_agent=user_agent(),
        )


def _ssl_context(verify: bool | str) -> ssl.SSLContext | bool:
    if verify is False:
        return False
    from botocore.httpsession import create_urllib3_context, get_cert_path

    context: ssl.SSLContext = create_urllib3_context()
    # botocore's default bundle (certifi, when installed) or the configured path
    ca_certs = get_cert_path(verify)
    if ca_certs:
        context.load_verify_locations(ca_certs, None, None)
    else:
        context.load_default_certs()
    return context


def open_session(settings: HttpSettings) -> aiohttp.ClientSession:
    """A session for one service; the caller closes it (``await session.close()``)."""
    # Answers as they are, as aiobotocore asks (botocore#1255): the body is read raw
    # (auto_decompress off), so a compressed answer would not parse
    headers = {"Accept-Encoding": "identity"}
    if settings.user_agent:
        headers["User-Agent"] = settings.user_agent
    connector = aiohttp.TCPConnector(
        limit=settings.pool_size,
        # aiobotocore's keep-alive (its DEFAULT_KEEPALIVE_TIMEOUT): fewer reconnects per call
        keepalive_timeout=12,
        ssl=_ssl_context(settings.verify),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        ),
        headers=headers,
        # The request's Content-Type is set (and signed) by the caller, never guessed
        skip_auto_headers=("Content-Type",),
        auto_decompress=False,
    )
