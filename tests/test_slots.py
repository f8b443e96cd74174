"""`Slots`, the data path's one waiting primitive: take/give/resize/close, FIFO order,
hand-over at give time, cancellation safety."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from asyncloop._slots import Slots

pytestmark = pytest.mark.asyncio


async def settle() -> None:
    """Let every runnable task run (a few event-loop turns)."""
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


class Receivers:
    """Capacity 20 with a low-water mark, all of it taken; `receiver` records in `got` what
    each of its take(10) calls got."""

    def __init__(self, low_water: int) -> None:
        self.slots = Slots(20, low_water=low_water)
        self.slots.take_nowait(20)
        self.got: list[int] = []

    async def receiver(self) -> None:
        self.got.append(await self.slots.take(10))


async def test_take_without_waiting_takes_up_to_want() -> None:
    # GIVEN 5 free slots
    slots = Slots(5)
    # WHEN one takes 3, then asks for 10
    first = await slots.take(3)
    second = await slots.take(10)
    # THEN it got 3, then the 2 left
    assert (first, second, slots.free) == (3, 2, 0)


async def test_a_give_wakes_waiters_in_arrival_order_and_promises_them_the_slots() -> None:
    # GIVEN no free slot and three waiters, in order a, b, c
    slots = Slots(3)
    slots.take_nowait(3)
    got: list[tuple[str, int]] = []

    async def taker(name: str) -> None:
        got.append((name, await slots.take(1)))

    async with anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(taker, name)
            await settle()
        # WHEN two slots come back
        slots.give(2)
        # THEN a and b were woken in the same turn (c still waits), and the two slots are
        # promised to them: a newcomer cannot take one meanwhile
        assert len(slots.waiters) == 1
        assert slots.promised == 2
        late = asyncio.ensure_future(slots.take(1))
        await settle()
        assert got == [("a", 1), ("b", 1)]
        assert not late.done()
        slots.give(2)
        assert await late == 1
    assert got == [("a", 1), ("b", 1), ("c", 1)]
    assert (slots.free, slots.promised) == (0, 0)


async def test_a_woken_receiver_takes_all_that_its_turn_freed() -> None:
    # GIVEN capacity 20 with a low-water mark of 2, all taken, and two receivers of up to 10
    full = Receivers(low_water=2)
    slots, got = full.slots, full.got
    async with anyio.create_task_group() as tg:
        tg.start_soon(full.receiver)
        tg.start_soon(full.receiver)
        await settle()
        # WHEN ten completions give their slot back in one event-loop turn
        for _ in range(10):
            slots.give(1)
        # THEN only the first receiver was woken (the ten are promised to it), and it takes
        # all ten: one full receive, not five receives of two
        assert len(slots.waiters) == 1
        await settle()
        assert got == [10]
        slots.give(10)
    assert got == [10, 10]


async def test_a_newcomer_does_not_overtake_a_waiter() -> None:
    # GIVEN a waiter that wants 3 with only 1 free (low water 3)
    slots = Slots(4, low_water=3)
    slots.take_nowait(3)
    order: list[str] = []

    async def first() -> None:
        await slots.take(3)
        order.append("first")

    async def newcomer() -> None:
        await slots.take(1)
        order.append("newcomer")

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await settle()
        # WHEN a newcomer asks for one slot, which is free
        tg.start_soon(newcomer)
        await settle()
        # THEN it waits behind the first waiter
        assert order == []
        slots.give(3)
    assert order == ["first", "newcomer"]


async def test_low_water_holds_a_waiter_until_enough_are_free() -> None:
    # GIVEN capacity 20 with a low-water mark of 10, all taken
    full = Receivers(low_water=10)
    slots, got = full.slots, full.got
    async with anyio.create_task_group() as tg:
        tg.start_soon(full.receiver)
        await settle()
        # WHEN 9 come back, THEN it still waits
        slots.give(9)
        await settle()
        assert got == []
        # WHEN the tenth comes back, THEN it gets all 10
        slots.give(1)
    assert got == [10]
    assert slots.free == 0


async def test_a_waiter_cancelled_after_its_wake_up_passes_it_on() -> None:
    # GIVEN two waiters on a full Slots
    slots = Slots(1)
    slots.take_nowait(1)
    results: dict[str, int] = {}

    async def taker(name: str) -> None:
        results[name] = await slots.take(1)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            first = asyncio.ensure_future(taker("first"))
            await settle()
            tg.start_soon(taker, "second")
            await settle()
            # WHEN the first is woken for the slot, and cancelled before it runs
            slots.give(1)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
    # THEN the second got the slot, and nothing was lost or handed twice
    assert results == {"second": 1}
    assert slots.free == 0


async def test_a_waiter_cancelled_before_its_wake_up_leaves_the_queue() -> None:
    # GIVEN a head waiter that wants 5 (low water 5) and a second that wants 1
    slots = Slots(5, low_water=5)
    slots.take_nowait(5)
    got: list[int] = []
    head = asyncio.ensure_future(slots.take(5))
    await settle()

    async def second() -> None:
        got.append(await slots.take(1))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(second)
            await settle()
            slots.give(1)
            await settle()
            assert got == []  # held back by the head
            # WHEN the head is cancelled while waiting
            head.cancel()
            with pytest.raises(asyncio.CancelledError):
                await head
    # THEN the second is served from the free slot at once
    assert got == [1]
    assert slots.waiters == type(slots.waiters)()


async def test_resize_moves_free_and_serves_waiters() -> None:
    # GIVEN 4 slots, all taken, and a waiter
    slots = Slots(4)
    slots.take_nowait(4)
    waiter = asyncio.ensure_future(slots.take(1))
    await settle()
    # WHEN the total shrinks to 2, THEN free goes below zero and the waiter waits
    slots.resize(2)
    assert slots.free == -2
    await settle()
    assert not waiter.done()
    # WHEN it grows to 5, THEN the waiter gets one of the 3 new free slots
    slots.resize(5)
    assert await waiter == 1
    assert (slots.total, slots.free) == (5, 0)


async def test_close_wakes_every_waiter_with_zero_and_refuses_later_takes() -> None:
    # GIVEN two waiters
    slots = Slots(1)
    slots.take_nowait(1)
    waiters = [asyncio.ensure_future(slots.take(1)) for _ in range(2)]
    await settle()
    # WHEN closed
    slots.close()
    # THEN both got 0, and a later take gets 0 even with free slots
    assert [await w for w in waiters] == [0, 0]
    slots.give(1)
    assert await slots.take(1) == 0


async def test_low_water_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="low_water must be >= 1, got 0"):
        Slots(1, low_water=0)
