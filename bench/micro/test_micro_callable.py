"""Microbenchmarks of the in-process dispatch path (`CallableDispatcher`), per round.

Run: ``.venv/bin/pytest bench/micro --benchmark-enable``. Each round dispatches 1,000
messages one after another (divide by 1,000 for one), so the figure is the dispatcher's own
cost per call on top of the user's function, which does nothing:

- async: an ``async def`` handler, awaited on the event loop;
- sync: a plain function, run in a worker thread (one thread hop per message);
- sync returning an awaitable: a lambda around an async function (thread hop, then awaited).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from asyncloop import CallableDispatcher, Message

pytestmark = pytest.mark.microbench

MESSAGES = 1_000


async def _async_noop(message: Message) -> None:
    return None


def _sync_noop(message: Message) -> None:
    return None


HANDLERS: dict[str, Callable[[Message], Any]] = {
    "async": _async_noop,
    "sync": _sync_noop,
    "sync-returns-awaitable": lambda message: _async_noop(message),
}


@pytest.mark.parametrize("kind", list(HANDLERS))
def test_callable_dispatch_1000(
    benchmark: BenchmarkFixture, runner: asyncio.Runner, kind: str
) -> None:
    dispatcher = CallableDispatcher(HANDLERS[kind])
    message = Message(message_id="m", receipt_handle="r", body="x", md5_of_body="")

    async def workload() -> None:
        for _ in range(MESSAGES):
            await dispatcher.dispatch(message)

    benchmark.pedantic(lambda: runner.run(workload()), rounds=30, warmup_rounds=2)  # type: ignore[no-untyped-call]
