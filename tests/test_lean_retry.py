"""The lean transport's retries: botocore's standard-mode objects deciding, as on the sdk path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import EndpointConnectionError

from asyncloop._lean.retry import Reply, Retrier

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Script:
    """Answers the scripted replies (or raises the scripted exceptions) in turn."""

    def __init__(self, *steps: Reply | Exception) -> None:
        self.steps = list(steps)
        self.calls = 0
        self.sleeps: list[float] = []

    async def send(self) -> Reply:
        step = self.steps[self.calls]
        self.calls += 1
        if isinstance(step, Exception):
            raise step
        return step

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _error(status: int, code: str) -> Reply:
    return Reply(status, {"x-code": code}, b"")


async def _parse(reply: Reply) -> Mapping[str, Any]:
    return {"Error": {"Code": reply.headers["x-code"]}}


def _retrier(script: _Script, max_attempts: int = 3) -> Retrier:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sqs")
    return Retrier(
        max_attempts=max_attempts,
        operation_model=model.operation_model,
        sleep=script.sleep,
        rand=lambda: 1.0,
    )


async def test_transient_and_throttling_answers_are_retried_with_backoff() -> None:
    # GIVEN a 500, then a 400 ThrottlingException, then a success
    script = _Script(_error(500, "InternalError"), _error(400, "ThrottlingException"), Reply(200))
    retrier = _retrier(script)
    # WHEN the call runs
    reply, parsed = await retrier.run("ReceiveMessage", script.send, _parse, endpoint_url="u")
    # THEN it took 3 attempts, backing off 1 s then 2 s (rand()=1: the cap of each step),
    assert (reply.status_code, parsed, script.calls) == (200, None, 3)
    assert script.sleeps == [1.0, 2.0]
    # and the success paid back the last retry's 5 tokens (500 - 10 + 5)
    assert retrier.available_quota == 495


async def test_a_client_error_is_not_retried() -> None:
    # GIVEN a 400 that is neither throttling nor transient
    script = _Script(_error(400, "InvalidParameterValue"))
    # WHEN the call runs THEN it returns the error answer at once, parsed
    reply, parsed = await _retrier(script).run(
        "ReceiveMessage", script.send, _parse, endpoint_url="u"
    )
    assert (reply.status_code, parsed, script.calls) == (
        400,
        {"Error": {"Code": "InvalidParameterValue"}},
        1,
    )


async def test_attempts_are_capped_and_network_failures_become_botocores() -> None:
    # GIVEN a connection that is refused every time
    refused = aiohttp.ClientConnectionError("refused")
    script = _Script(refused, refused, refused)
    # WHEN the call runs with 2 attempts
    with pytest.raises(EndpointConnectionError) as caught:
        await _retrier(script, max_attempts=2).run(
            "ReceiveMessage", script.send, _parse, endpoint_url="u"
        )
    # THEN it stopped after 2, raising what aiobotocore raises, the aiohttp error as its cause
    assert script.calls == 2
    assert caught.value.__cause__ is refused


async def test_the_quota_stops_retries_when_spent() -> None:
    # GIVEN a retrier whose 500-token quota is spent by 100 retried failures
    script = _Script(*([_error(503, "ServiceUnavailable")] * 202))
    retrier = _retrier(script, max_attempts=2)
    for _ in range(100):
        await retrier.run("ReceiveMessage", script.send, _parse, endpoint_url="u")
    assert retrier.available_quota == 0
    calls = script.calls
    # WHEN one more call fails
    reply, _ = await retrier.run("ReceiveMessage", script.send, _parse, endpoint_url="u")
    # THEN it is not retried
    assert (reply.status_code, script.calls - calls) == (503, 1)
