"""`Slots`: a count of free places with first-come, first-served waiters.

The data path's one waiting primitive. Its three users:

- the consumer's capacity: receivers take up to a batch (`low_water` = the fewest worth a
  receive), the total follows the dispatch limit (`resize`), and a stop closes it;
- the dispatch limit: workers take one slot per dispatch (`low_water` 1);
- the acker's room below `max_pending_acks`: a delete takes one slot per entry.

Contract:

- `take(want)` returns between ``min(want, low_water)`` and `want` slots, waiting while fewer
  are free or others wait before it (no overtaking: waiters are served in arrival order);
  0 once closed.
- Slots are handed over at `give`/`resize` time: the waiter at the head gets its slots in the
  same event-loop turn as the `give` that freed them, so nobody can take them between its
  wake-up and its run, and a chain of waiters is served in one pass.
- A waiter cancelled after its slots were handed over gives them back, which serves the next
  waiter; one cancelled before leaves the queue. Nothing is lost or handed twice.
- `free` may go below zero (`take_nowait`, or `resize` below what is taken): takers then wait
  until enough were given back.

Callers on the hot path check ``free >= low_water and not waiters`` themselves and take
inline (``free -= n``); they only await `take` when they must wait, so an unthrottled run
never suspends here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ("Slots",)


class _Waiter:
    __slots__ = ("future", "want")

    def __init__(self, future: asyncio.Future[int], want: int) -> None:
        self.future = future
        self.want = want


class Slots:
    """`total` places, `free` of them free now; see the module docstring for the contract."""

    __slots__ = ("closed", "free", "low_water", "total", "waiters")

    def __init__(self, total: int, low_water: int = 1) -> None:
        if low_water < 1:
            raise ValueError(f"low_water must be >= 1, got {low_water!r}")
        self.total = total
        self.free = total
        self.low_water = low_water
        self.closed = False
        self.waiters: deque[_Waiter] = deque()

    async def take(self, want: int = 1) -> int:
        """Take between ``min(want, low_water)`` and `want` slots, waiting for them in turn;
        0 once closed."""
        if self.closed:
            return 0
        free = self.free
        if not self.waiters and free >= min(want, self.low_water):
            taken = want if want < free else free
            self.free = free - taken
            return taken
        waiter = _Waiter(asyncio.get_running_loop().create_future(), want)
        self.waiters.append(waiter)
        try:
            return await waiter.future
        except BaseException:
            future = waiter.future
            if future.done() and not future.cancelled():
                # Handed slots, then cancelled before running: pass them on.
                self.give(future.result())
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
                # It may have been the head that held the others back.
                self._serve()
            raise

    def take_nowait(self, n: int = 1) -> None:
        """Take `n` slots at once, even when that leaves `free` below zero (for work that
        cannot wait, such as a release of a message already held)."""
        self.free -= n

    def give(self, n: int = 1) -> None:
        """Give back `n` slots; waiters that now fit get theirs before this returns."""
        self.free += n
        if self.waiters:
            self._serve()

    def resize(self, total: int, low_water: int | None = None) -> None:
        """Change the total (the free count moves by the same amount) and, optionally, the
        low-water mark."""
        self.free += total - self.total
        self.total = total
        if low_water is not None:
            self.low_water = max(1, low_water)
        if self.waiters:
            self._serve()

    def close(self) -> None:
        """Wake every waiter with 0 slots; `take` returns 0 from now on."""
        self.closed = True
        waiters = self.waiters
        while waiters:
            future = waiters.popleft().future
            if not future.done():
                future.set_result(0)

    def _serve(self) -> None:
        """Hand slots to waiters in order while the head's minimum is free."""
        waiters = self.waiters
        while waiters:
            head = waiters[0]
            if head.future.done():  # cancelled: its task is about to see it
                waiters.popleft()
                continue
            free = self.free
            want = head.want
            if free < min(want, self.low_water):
                return
            waiters.popleft()
            taken = want if want < free else free
            self.free = free - taken
            head.future.set_result(taken)
