"""The lean transport's HTTP, against local servers on 127.0.0.1: what it sends, what it reads."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import aioboto3
import pytest
from aiobotocore.config import AioConfig
from aiohttp import web

from asyncloop._lean import LeanTransport
from asyncloop.testing._loopback import serve_on_loopback

pytestmark = pytest.mark.anyio

REGION = "us-east-1"
QUEUE_URL = "http://sqs.us-east-1.localhost/123456789012/q"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def _lean(handler: Handler, session_token: str | None = None) -> AsyncIterator[LeanTransport]:
    """A `LeanTransport` whose SQS and Lambda endpoints are one local server running `handler`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner, url = await serve_on_loopback(app)
    try:
        async with AsyncExitStack() as stack:
            session = aioboto3.Session(
                region_name=REGION,
                aws_access_key_id="AK",
                aws_secret_access_key="SK",
                aws_session_token=session_token,
            )
            botocore_config = AioConfig(retries={"mode": "standard", "total_max_attempts": 2})
            sqs, lambda_ = [
                await stack.enter_async_context(
                    session.client(name, endpoint_url=url, config=botocore_config)
                )
                for name in ("sqs", "lambda")
            ]
            yield await stack.enter_async_context(
                LeanTransport(sqs_client=sqs, lambda_client=lambda_)
            )
    finally:
        await runner.cleanup()


async def test_responses_are_asked_uncompressed_as_aiobotocore_asks() -> None:
    # GIVEN a service that gzips its answer whenever the request accepts gzip
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        accepted = request.headers.get("Accept-Encoding", "")
        seen.append(accepted)
        await request.read()
        if request.path != "/":
            return web.Response(status=202)
        body = json.dumps({"Messages": []}).encode()
        if "gzip" in accepted:
            return web.Response(body=gzip.compress(body), headers={"Content-Encoding": "gzip"})
        return web.Response(body=body, content_type="application/x-amz-json-1.0")

    async with _lean(handle) as lean:
        # WHEN the lean path receives and invokes
        messages = await lean.queue(QUEUE_URL).receive(max_messages=1, wait_time_seconds=0)
        result = await lean.invoker().invoke(
            function_name="f", payload=b"{}", invocation_type="Event"
        )

    # THEN both asked for the answer as it is (botocore#1255), so the receive could read it
    assert seen == ["identity", "identity"]
    assert (messages, result.status_code) == ([], 202)


async def test_what_goes_on_the_wire_verifies_as_botocore_signs_it() -> None:
    # GIVEN a server that checks each request's signature as AWS would: botocore signs the
    # headers the request lists as signed, with their values as received, at its X-Amz-Date
    from datetime import datetime
    from unittest import mock

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import ReadOnlyCredentials

    checked: list[tuple[str, bool, str]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        authorization = request.headers["Authorization"]
        signed_names = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
        headers = {name: request.headers[name] for name in signed_names}
        expected = AWSRequest(
            "POST", f"http://{request.host}{request.raw_path}", headers=headers, data=body
        )
        service = "sqs" if "X-Amz-Target" in request.headers else "lambda"
        now = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        with mock.patch("botocore.auth.get_current_datetime", return_value=now):
            SigV4Auth(ReadOnlyCredentials("AK", "SK", "TOKEN"), service, REGION).add_auth(expected)
        length_right = request.headers["Content-Length"] == str(len(body))
        checked.append((service, length_right, authorization))
        assert expected.headers["Authorization"] == authorization
        if service == "sqs":
            return web.Response(body=b"{}", content_type="application/x-amz-json-1.0")
        return web.Response(status=202)

    async with _lean(handle, session_token="TOKEN") as lean:
        # WHEN a receive, a delete batch and an Invoke by ARN (a quoted path) are sent
        queue = lean.queue(QUEUE_URL)
        await queue.receive(max_messages=10, wait_time_seconds=0)
        await queue.delete_batch([("0", "receipt+handle/é")])
        arn = f"arn:aws:lambda:{REGION}:123456789012:function:f:live"
        await lean.invoker().invoke(function_name=arn, payload=b'{"x": 1}', invocation_type="Event")

    # THEN every signature verified, over the exact headers, path and body sent
    assert [(service, length_right) for service, length_right, _ in checked] == [
        ("sqs", True),
        ("sqs", True),
        ("lambda", True),
    ]
    assert all("x-amz-security-token" in authorization for *_, authorization in checked)
