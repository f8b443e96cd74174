"""The acker: deletes and visibility changes in batches of at most ten, retries, close."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from asyncloop import (
    Message,
)
from asyncloop.testing import FakeQueue

# -- the acker under retries while closing ------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_acker_close_with_entries_still_buffered_does_not_spin() -> None:
    # GIVEN 50 deletes buffered, calls one at a time and slow, and the interval flusher running
    from asyncloop._acker import Acker
    from asyncloop._stats import Stats

    queue = FakeQueue(latency={"DeleteMessageBatch": 0.02})
    queue.send_many(f"m{i}" for i in range(50))
    messages: list[Message] = []
    while len(messages) < 50:
        messages += await queue.receive(max_messages=10, wait_time_seconds=0)
    stats = Stats()
    acker = Acker(queue, stats, flush_interval=0.001, max_pending=100, concurrency=1, attempts=3)
    for message in messages:
        acker.delete_nowait(message)
    # WHEN the acker closes while calls wait their turn with entries still buffered (a spin
    # in the flusher never yields, so only the test timeout would end it)
    async with anyio.create_task_group() as tg:
        acker.bind(tg)
        tg.start_soon(acker.tick)
        await anyio.lowlevel.checkpoint()
        with anyio.CancelScope(shield=True), anyio.fail_after(10):
            await acker.close()
        tg.cancel_scope.cancel()
    # THEN every delete went out
    assert stats.deleted == 50
    assert len(queue) == 0
