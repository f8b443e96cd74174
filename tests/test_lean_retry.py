"""The lean transport's retries: botocore's standard-mode objects deciding, as on the sdk path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from asyncloop._lean.answer import Reply
from asyncloop._lean.pool import ConnectError
from asyncloop._lean.retry import Retrier

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
    refused = ConnectError("refused")
    script = _Script(refused, refused, refused)
    # WHEN the call runs with 2 attempts
    with pytest.raises(EndpointConnectionError) as caught:
        await _retrier(script, max_attempts=2).run(
            "ReceiveMessage", script.send, _parse, endpoint_url="u"
        )
    # THEN it stopped after 2, raising what aiobotocore raises, the pool's error as its cause
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


async def test_a_first_attempt_made_by_the_caller_counts_as_one() -> None:
    # GIVEN a first attempt the caller made, answered 503, then a script of one more 503
    script = _Script(_error(503, "ServiceUnavailable"))
    retrier = _retrier(script, max_attempts=2)
    # WHEN the retrier takes over with that outcome
    reply, parsed = await retrier.run(
        "ReceiveMessage",
        script.send,
        _parse,
        endpoint_url="u",
        first=_error(503, "ServiceUnavailable"),
    )
    # THEN it sent only the retry: two attempts in all, the last error returned
    assert (reply.status_code, script.calls, len(script.sleeps)) == (503, 1, 1)
    assert parsed == {"Error": {"Code": "ServiceUnavailable"}}


async def test_a_first_exception_that_is_no_network_failure_is_raised_as_it_is() -> None:
    script = _Script()
    bug = KeyError("not a network failure")
    # WHEN the first attempt raised something else THEN it is raised, never retried
    with pytest.raises(KeyError) as caught:
        await _retrier(script).run(
            "ReceiveMessage", script.send, _parse, endpoint_url="u", first=bug
        )
    assert (caught.value, script.calls) == (bug, 0)


async def test_a_success_pays_the_quota_back_only_when_it_is_not_full() -> None:
    # GIVEN a retrier whose quota lost 5 tokens to one retry
    script = _Script(_error(503, "ServiceUnavailable"), _error(503, "ServiceUnavailable"))
    retrier = _retrier(script, max_attempts=2)
    await retrier.run("ReceiveMessage", script.send, _parse, endpoint_url="u")
    assert retrier.available_quota == 495
    # WHEN six first attempts succeed THEN each pays 1 back, up to the 500 it holds at most
    for expected in (496, 497, 498, 499, 500, 500):
        retrier.succeeded(Reply(200))
        assert retrier.available_quota == expected
