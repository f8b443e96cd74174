"""The lean transport's HTTP settings: taken from the aiobotocore client the run creates anyway.

Each service's `HttpPool` (``pool.py``) connects as aiobotocore's ``AIOHTTPSession`` would for
that client, with the settings botocore resolved, so nothing is configured twice:

- timeouts: ``connect_timeout`` / ``read_timeout`` from the client's config (the pool applies
  them as aiobotocore's ``sock_connect`` / ``sock_read``); a long poll's read timeout is
  raised above its wait by the caller;
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

from .._exceptions import ConfigError
from .._validate import check_range

__all__ = ("HttpSettings", "ssl_context", "user_agent")


def user_agent() -> str:
    """``asyncloop/<version> (lean) botocore/<version> Python/<version>``."""
    import platform

    import botocore

    from .. import __version__

    return (
        f"asyncloop/{__version__} (lean) botocore/{botocore.__version__} "
        f"Python/{platform.python_version()}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSettings:
    """How one service's connections are made.

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


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """The SSL context for `verify`: botocore's, with its CA bundle; no checks when False."""
    from botocore.httpsession import create_urllib3_context, get_cert_path

    context: ssl.SSLContext = create_urllib3_context()
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # botocore's default bundle (certifi, when installed) or the configured path
    ca_certs = get_cert_path(verify)
    if ca_certs:
        context.load_verify_locations(ca_certs, None, None)
    else:
        context.load_default_certs()
    # botocore's factory leaves the name check to urllib3, which matches the certificate to
    # the host itself; asyncio's TLS does it only when the context asks
    context.check_hostname = True
    return context
