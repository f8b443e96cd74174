"""One AWS service over the lean transport: sign, send, retry, map errors.

Why: this is the part of an aiobotocore call that must stay botocore's in meaning but not in
cost. Everything that is decided once per run is taken from the aiobotocore client the run
creates anyway, when the channel opens: the endpoint (botocore's endpoint ruleset with the
client's region, ``endpoint_url``, ``AWS_ENDPOINT_URL_<SERVICE>``, FIPS and dual-stack
settings), the signing region and name, the timeouts, CA bundle and pool size, the attempt cap.
Credentials come from the client's credentials object for every request through
`CredentialSource` (static keys read once; refreshable ones reused only until botocore's
advisory refresh point, then ``get_frozen_credentials()`` refreshes them as on the sdk path):
never stale. Error answers (the rare path) are parsed by the client's own botocore parser, so the
error code is the one botocore reports (``__type``, ``x-amzn-query-error``,
``x-amzn-ErrorType``), and mapped by `asyncloop._error_table.error_from_response` through the one
table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from .._error_table import error_from_response, map_errors
from .._exceptions import AwsError, ClosedError
from .credentials import CredentialSource
from .http import HttpSettings, open_session
from .retry import DEFAULT_MAX_ATTEMPTS, Reply, Retrier
from .signing import SigV4Signer

__all__ = ("ServiceChannel",)


def _max_attempts(client: Any) -> int:
    from .._exceptions import ConfigError

    retries = getattr(client.meta.config, "retries", None) or {}
    mode = retries.get("mode", "standard")
    if mode != "standard":
        raise ConfigError(
            f"the lean transport retries as botocore's standard mode, got retry_mode={mode!r}: "
            "use the sdk transport for it",
            field="retry_mode",
        )
    total = retries.get("total_max_attempts")
    return int(total) if total is not None else DEFAULT_MAX_ATTEMPTS


class ServiceChannel:
    """Signed, retried requests to one service, configured from an aiobotocore `client`.

    ``await channel.open(operation, params)`` resolves the endpoint as botocore does for that
    operation and opens the HTTP session; `call` sends; ``await channel.aclose()`` closes.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._settings = HttpSettings.from_client(client)
        self._retrier = Retrier(
            max_attempts=_max_attempts(client),
            operation_model=client.meta.service_model.operation_model,
        )
        self._session: aiohttp.ClientSession | None = None
        self._signer: SigV4Signer | None = None
        self._credentials = CredentialSource(client._request_signer._credentials)
        self._endpoint = ""
        self._host = ""
        self._base_path = ""
        self._urls: dict[str, URL] = {}
        self._closed = False

    @property
    def endpoint_url(self) -> str:
        return self._endpoint

    @property
    def settings(self) -> HttpSettings:
        return self._settings

    @property
    def retrier(self) -> Retrier:
        return self._retrier

    async def open(self, operation: str, params: Mapping[str, Any]) -> None:
        """Resolve the endpoint and signing scope for `operation`, and open the session."""
        from botocore.auth import _host_from_url

        client = self._client
        model = client.meta.service_model.operation_model(operation)
        context: dict[str, Any] = {}
        with map_errors(f"ResolveEndpoint({operation})"):
            url, _, _ = await client._resolve_endpoint_ruleset(model, dict(params), context)
        signing = context.get("signing", {})
        region = signing.get("region") or client.meta.region_name
        name = signing.get("signing_name") or client.meta.service_model.signing_name
        self._signer = SigV4Signer(service=name, region=region)
        self._endpoint = url
        self._host = _host_from_url(url)
        self._base_path = urlsplit(url).path.rstrip("/")
        self._session = open_session(self._settings)

    async def aclose(self) -> None:
        """Close the session; idempotent."""
        session, self._session = self._session, None
        self._closed = True
        if session is not None:
            await session.close()

    async def call(
        self,
        operation: str,
        *,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        read_timeout: aiohttp.ClientTimeout | None = None,
        queue_url: str | None = None,
        function_name: str | None = None,
    ) -> Reply:
        """POST `body` to `path` (already percent-encoded) with retries; a 2xx `Reply`.

        Raises the `asyncloop.AwsError` the table gives for an error answer (after botocore's
        retries), `TransportError` for a network failure, `CredentialsError` without
        credentials. `read_timeout` overrides the session's (a long poll's longer read).
        """
        session, signer = self._session, self._signer
        if session is None or signer is None:
            if self._closed:
                raise ClosedError("the lean transport is closed")
            raise RuntimeError("the lean transport is not open: use `async with`")
        full_path = self._base_path + path
        url = self._urls.get(path)
        if url is None:
            # One path per queue endpoint and per function: the cache stays small
            if len(self._urls) >= 256:
                self._urls.clear()
            url = self._urls[path] = URL(self._endpoint.rstrip("/") + path, encoded=True)

        async def send() -> Reply:
            signed = signer.sign(
                method="POST",
                host=self._host,
                path=full_path,
                headers=headers,
                body=body,
                credentials=await self._credentials.get(),
            )
            # No timeout argument unless overridden: aiohttp reads None as "no timeout at all"
            extra: dict[str, Any] = {} if read_timeout is None else {"timeout": read_timeout}
            async with session.post(url, data=body, headers=signed, **extra) as response:
                # Always read the whole body: it releases the connection to the pool
                data = await response.read()
                return Reply(response.status, response.headers, data)

        async def parse_error(reply: Reply) -> Mapping[str, Any]:
            model = self._client.meta.service_model.operation_model(operation)
            parsed: Mapping[str, Any] = await self._client._response_parser.parse(
                {
                    "status_code": reply.status_code,
                    "headers": reply.headers,
                    "body": reply.body,
                    "context": {"operation_name": operation},
                },
                model.output_shape,
            )
            return parsed

        try:
            reply, parsed = await self._retrier.run(
                operation, send, parse_error, endpoint_url=self._endpoint
            )
        except Exception:
            # Entered only on failure: a context manager per successful call costs about 1 us
            with map_errors(operation, queue_url=queue_url, function_name=function_name):
                raise
        if parsed is None:
            return reply
        error = parsed.get("Error", {})
        raise _error(
            operation,
            error,
            reply.status_code,
            queue_url=queue_url,
            function_name=function_name,
        )


def _error(
    operation: str,
    error: Mapping[str, Any],
    status: int,
    *,
    queue_url: str | None,
    function_name: str | None,
) -> AwsError:
    return error_from_response(
        operation,
        code=error.get("Code"),
        message=error.get("Message"),
        status=status,
        alt_code=error.get("QueryErrorCode"),
        queue_url=queue_url,
        function_name=function_name,
    )
