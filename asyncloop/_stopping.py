"""The stop: one deadline for receiving and draining, then the shielded release and flush.

Stopping (deadline, `until_empty`, `stop()`, or cancellation of `run()`): one deadline,
`shutdown_grace` after the stop began, bounds steps 1 and 2 together:
1. stop receiving: receivers waiting for capacity or backing off leave at once; a receive
   already under way may finish until the deadline (what it returns is released) and is
   abandoned there (what it would have returned comes back after its visibility timeout);
   no receive starts after the stop, and none before it waits past a `duration`/`deadline`;
2. drain: dispatches under way may finish until the same deadline, then are cancelled;
3. in a shielded scope bounded by `ack_flush_timeout`: release (visibility 0) every message
   received but not finished, and flush every pending delete.
So a stop takes at most `shutdown_grace` + `ack_flush_timeout` (a cancelled `run()`: at most
`ack_flush_timeout`), as long as a cancelled dispatch ends when cancelled: a handler that
shields itself from cancellation holds the stop until it returns.

A part of `Consumer` (a mixin over its state); `Consumer._run_until_stopped` runs the steps.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._config import ConsumerConfig
from ._slots import Slots
from ._types import Message

if TYPE_CHECKING:
    from ._acker import Acker

__all__ = ("Stopping",)

logger = logging.getLogger("asyncloop")


class Stopping:
    """Consumer's stop part. Its state: `_stopping` (a stop was asked for), `_stop_event`,
    `_stop_deadline` (when receiving and draining must be done, event-loop clock), `_drained`
    (set when the last held message finished)."""

    config: ConsumerConfig
    _capacity: Slots
    _drained: asyncio.Event | None
    _groups: dict[str, deque[Message]]
    _handoff: asyncio.Queue[Message]
    _held: dict[Message, float]
    _loop_time: Callable[[], float]
    _lost: set[Message]
    _news: asyncio.Event | None
    _ran: bool
    _running: dict[Message, asyncio.Task[object]]
    _stop_deadline: float
    _stop_event: asyncio.Event | None
    _stopping: bool

    def _init_stopping(self) -> None:
        self._stopping = False
        self._ran = False
        self._stop_event = None
        self._drained = None
        # When a stop under way must be done receiving and draining (event-loop clock).
        self._stop_deadline = math.inf

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for (or a stop condition was met)."""
        return self._stopping

    def stop(self) -> None:
        """Ask for a graceful stop. Idempotent; returns at once."""
        if self._stopping:
            return
        self._stopping = True
        if self._ran:
            # One deadline for the whole stop: receivers and the drain share it.
            self._stop_deadline = self._loop_time() + self.config.shutdown_grace
        self._capacity.close()
        if self._stop_event is not None:
            self._stop_event.set()
        if self._news is not None:
            self._news.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on stop."""
        assert self._stop_event is not None
        with anyio.move_on_after(seconds):
            await self._stop_event.wait()

    async def _drain(self) -> None:
        """Step 2: wait until nothing is held, at most until the stop deadline."""
        assert self._drained is not None
        # The drain shares that deadline: time the receivers took is not given again.
        with anyio.CancelScope(deadline=self._stop_deadline) as grace:
            while self._held:
                self._drained.clear()
                await self._drained.wait()
        if grace.cancelled_caught:
            logger.warning(
                "%d dispatch(es) still running after shutdown_grace=%ss: cancelling them "
                "and releasing their messages",
                len(self._running),
                self.config.shutdown_grace,
            )

    async def _stop_at_deadline(self, deadline: float) -> None:
        assert self._stop_event is not None
        with anyio.move_on_after(max(0.0, deadline - self._loop_time())) as timer:
            await self._stop_event.wait()
        if timer.cancelled_caught:
            logger.info("deadline reached: stopping")
            self.stop()

    async def _finish(self, acker: Acker) -> None:
        """Release what was received but not finished; flush every pending ack."""
        with anyio.move_on_after(self.config.ack_flush_timeout) as scope:
            cancelled = unstarted = 0
            for message in self._held:
                if message in self._lost:
                    continue  # the lease is gone: nothing to release
                acker.release(message)
                if message in self._running:
                    cancelled += 1
                else:
                    unstarted += 1
            if unstarted or cancelled:
                logger.info(
                    "releasing %d unstarted and %d cancelled message(s) (visibility 0)",
                    unstarted,
                    cancelled,
                )
            while not self._handoff.empty():
                self._handoff.get_nowait()
            self._running.clear()
            self._held.clear()
            self._groups.clear()
            await acker.close()
        if scope.cancelled_caught:
            logger.warning(
                "ack_flush_timeout=%ss reached with %d delete(s)/release(s) unsent: those "
                "messages will be delivered again",
                self.config.ack_flush_timeout,
                acker.pending,
            )
