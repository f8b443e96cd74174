"""The acker: deletes and visibility changes in batches of at most ten, its room below
`max_pending`, the visibility API (change_visibility, release, extend), close."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest
from _consumer_helpers import wait_for

from asyncloop import BatchEntryFailure, Message
from asyncloop._acker import Acker, Outcome
from asyncloop._stats import Stats
from asyncloop.testing import FakeQueue

pytestmark = pytest.mark.asyncio


async def received(queue: FakeQueue, n: int) -> list[Message]:
    messages: list[Message] = []
    while len(messages) < n:
        messages += await queue.receive(
            max_messages=min(10, n - len(messages)), wait_time_seconds=0
        )
    return messages


@pytest.mark.timeout(20)
async def test_acker_close_with_entries_still_buffered_does_not_spin() -> None:
    # GIVEN 50 deletes buffered, calls one at a time and slow, and the interval flusher running
    queue = FakeQueue(latency={"DeleteMessageBatch": 0.02})
    queue.send_many(f"m{i}" for i in range(50))
    messages = await received(queue, 50)
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


async def test_a_delete_waits_for_room_until_an_entry_is_settled() -> None:
    # GIVEN an acker with room for 2 pending entries, both taken by releases whose call
    # waits on an event
    queue = FakeQueue()
    queue.send_many(f"m{i}" for i in range(3))
    first, second, third = await received(queue, 3)
    answer = anyio.Event()

    class SlowQueue(FakeQueue):
        async def change_visibility_batch(
            self, entries: Sequence[tuple[str, str, int]]
        ) -> list[BatchEntryFailure]:
            await answer.wait()
            return await queue.change_visibility_batch(entries)

    stats = Stats()
    acker = Acker(
        SlowQueue(), stats, flush_interval=0.001, max_pending=2, concurrency=1, attempts=1
    )
    deleted = anyio.Event()

    async def delete_third() -> None:
        await acker.delete(third)
        deleted.set()

    async with anyio.create_task_group() as tg:
        acker.bind(tg)
        acker.release(first)
        acker.release(second)
        acker.flush_visibility_changes()
        # WHEN a delete asks for room
        tg.start_soon(delete_third)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        # THEN it waits while both entries are pending, and goes on once they are settled
        assert not deleted.is_set()
        assert acker.pending == 2
        answer.set()
        await wait_for(deleted, 10)
        tg.cancel_scope.cancel()
    assert stats.released == 2


async def test_extend_and_release_are_visibility_changes_with_their_own_timeouts() -> None:
    # GIVEN two held messages
    queue = FakeQueue(visibility_timeout=30)
    queue.send_many(["a", "b"])
    kept, given_back = await received(queue, 2)
    stats = Stats()
    acker = Acker(queue, stats, flush_interval=10.0, max_pending=10, concurrency=1, attempts=1)
    outcomes: list[tuple[str, Outcome]] = []
    answered = anyio.Event()

    def on_done(message: Message, outcome: Outcome) -> None:
        outcomes.append((message.body, outcome))
        answered.set()

    async with anyio.create_task_group() as tg:
        acker.bind(tg)
        # WHEN one is extended by 60 s and the other released (visibility 0)
        acker.extend(kept, 60, on_done)
        acker.release(given_back)
        assert acker.visibility_changes_pending == 2
        acker.flush_visibility_changes()
        await wait_for(answered, 10)
        while acker.pending:
            await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    # THEN the extension reached its callback, the release counted as a release, and only the
    # released message is visible again
    assert outcomes == [("a", None)]
    assert stats.released == 1
    assert queue.visible_count == 1
    assert [m.body for m in await queue.receive(max_messages=10, wait_time_seconds=0)] == ["b"]
