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
- A `give` (or `resize`) wakes waiters in the same event-loop turn, in order, while the free
  slots not yet promised to woken waiters cover the head's minimum; a woken waiter is
  promised its whole `want`, and takes up to `want` of what is free when it runs. So the
  completions of one turn refill whole batches (a receiver woken by the first free slots
  takes all that the turn freed), and the dispatch limit wakes as many as it has room for.
- A waiter cancelled after its wake-up passes the wake on; one cancelled before leaves the
  queue. Nothing is lost or handed twice.
- `free` may go below zero (`take_nowait`, or `resize` below what is taken): takers then wait
  until enough were given back.

Callers on the hot path check ``not waiters and free - promised >= n`` themselves and take
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

    def __init__(self, future: asyncio.Future[bool], want: int) -> None:
        self.future = future
        self.want = want


class Slots:
    """`total` places, `free` of them free now; see the module docstring for the contract."""

    __slots__ = ("closed", "free", "low_water", "promised", "total", "waiters")

    def __init__(self, total: int, low_water: int = 1) -> None:
        if low_water < 1:
            raise ValueError(f"low_water must be >= 1, got {low_water!r}")
        self.total = total
        self.free = total
        self.low_water = low_water
        self.closed = False
        # Slots promised to woken waiters that have not run yet.
        self.promised = 0
        self.waiters: deque[_Waiter] = deque()

    async def take(self, want: int = 1) -> int:
        """Take between ``min(want, low_water)`` and `want` slots, waiting for them in turn;
        0 once closed."""
        if self.closed:
            return 0
        need = min(want, self.low_water)
        free = self.free
        if not self.waiters and free - self.promised >= need:
            taken = want if want < free - self.promised else free - self.promised
            self.free = free - taken
            return taken
        waiter = _Waiter(asyncio.get_running_loop().create_future(), want)
        self.waiters.append(waiter)
        while True:
            try:
                closed = await waiter.future  # True: woken by close()
            except BaseException:
                future = waiter.future
                if future.done() and not future.cancelled():
                    # Woken, then cancelled before running: pass the wake on.
                    self.promised -= want
                else:
                    with contextlib.suppress(ValueError):
                        self.waiters.remove(waiter)
                # Either way the next waiter may fit now.
                self._serve()
                raise
            self.promised -= want
            if closed:
                return 0
            free = self.free
            if free >= need:
                taken = want if want < free else free
                self.free = free - taken
                if self.waiters:
                    self._serve()
                return taken
            # Taken meanwhile by a caller that did not wait: first in line again.
            waiter = _Waiter(asyncio.get_running_loop().create_future(), want)
            self.waiters.appendleft(waiter)

    def take_nowait(self, n: int = 1) -> None:
        """Take `n` slots at once, even when that leaves `free` below zero (for work that
        cannot wait, such as a release of a message already held)."""
        self.free -= n

    def give(self, n: int = 1) -> None:
        """Give back `n` slots; waiters that now fit are woken before this returns."""
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
        """Wake every waiter (they get 0 slots); `take` returns 0 from now on."""
        self.closed = True
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.future.done():
                self.promised += waiter.want
                waiter.future.set_result(True)

    def _serve(self) -> None:
        """Wake waiters in order while the slots not promised cover the head's minimum."""
        waiters = self.waiters
        low_water = self.low_water
        while waiters:
            head = waiters[0]
            if head.future.done():  # cancelled: its task is about to see it
                waiters.popleft()
                continue
            want = head.want
            if self.free - self.promised < (want if want < low_water else low_water):
                return
            waiters.popleft()
            self.promised += want
            head.future.set_result(False)
