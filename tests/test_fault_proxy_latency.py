"""FaultProxy's latency injection: a listed operation is held before it reaches the upstream;
others pass at once. Synchronised by events: the held request's latency draw sets one, and
the upstream sets another when a request reaches it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from asyncloop.testing import FaultProxy
from asyncloop.testing._loopback import serve_on_loopback

pytestmark = pytest.mark.timeout(30)


class Upstream:
    """An HTTP server that records the SQS operation of every request it gets."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.hit = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.headers.get("X-Amz-Target", "").rpartition(".")[2])
        self.hit.set()
        return web.json_response({})


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner, server.url = await serve_on_loopback(app)
    try:
        yield server
    finally:
        await runner.cleanup()


async def post(session: aiohttp.ClientSession, url: str, operation: str) -> int:
    headers = {
        "X-Amz-Target": f"AmazonSQS.{operation}",
        "Content-Type": "application/x-amz-json-1.0",
    }
    async with session.post(url + "/", data=b"{}", headers=headers) as response:
        await response.read()
        return response.status


@pytest.mark.asyncio
async def test_a_listed_operation_is_held_and_others_pass(upstream: Upstream) -> None:
    # GIVEN a proxy that holds every ReceiveMessage for an hour, and signals when it draws
    drawn = asyncio.Event()

    def hour() -> float:
        drawn.set()
        return 3600.0

    async with (
        FaultProxy(upstream.url, latency={"ReceiveMessage": hour}) as proxy,
        aiohttp.ClientSession() as session,
    ):
        # WHEN a receive is sent
        held = asyncio.create_task(post(session, proxy.endpoint_url, "ReceiveMessage"))
        await drawn.wait()
        # THEN it has not reached the upstream
        assert upstream.seen == []
        assert proxy.delayed == {"ReceiveMessage": 1}
        # AND a DeleteMessageBatch, not listed, passes at once
        assert await post(session, proxy.endpoint_url, "DeleteMessageBatch") == 200
        assert upstream.seen == ["DeleteMessageBatch"]
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
    # AND the held receive never reached the upstream
    assert upstream.seen == ["DeleteMessageBatch"]


@pytest.mark.asyncio
async def test_a_drawn_latency_applies_to_each_request_then_forwards(upstream: Upstream) -> None:
    # GIVEN a latency callable drawn per request (zero here: the draw is what is counted)
    draws: list[str] = []

    def zero() -> float:
        draws.append("draw")
        return 0.0

    async with (
        FaultProxy(upstream.url, latency={"Invoke": 0.0, "ReceiveMessage": zero}) as proxy,
        aiohttp.ClientSession() as session,
    ):
        # WHEN three receives go through
        for _ in range(3):
            assert await post(session, proxy.endpoint_url, "ReceiveMessage") == 200
    # THEN each drew once and each was forwarded
    assert draws == ["draw"] * 3
    assert upstream.seen == ["ReceiveMessage"] * 3
    assert proxy.delayed == {"ReceiveMessage": 3}
