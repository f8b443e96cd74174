"""`until_empty`: the run stops once every receiver got an empty answer, nothing is held or
being released, and no message this run released with a delay (after a throttle) is still
invisible.

A part of `Consumer` (a mixin over its state): receivers that got an empty answer park here
(`_parked` of them) and wait for news (`_news`: a receive got messages, the last held one
finished, a visibility change answered, or a stop).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._config import ConsumerConfig
from ._types import Message

if TYPE_CHECKING:
    from ._acker import Acker

__all__ = ("UntilEmpty",)

logger = logging.getLogger("asyncloop")


class UntilEmpty:
    """Consumer's until_empty part. Its state: `_parked`, `_news`, and `_hidden_until` (when
    the last message released with a delay shows again, event-loop clock)."""

    config: ConsumerConfig
    _acker: Acker | None
    _held: dict[Message, float]
    _hidden_until: float
    _loop_time: Callable[[], float]
    _news: asyncio.Event | None
    _parked: int

    if TYPE_CHECKING:

        def stop(self) -> None: ...

    def _init_until_empty(self) -> None:
        # When the last message this run released with a delay (a throttled one) becomes
        # visible again (event-loop clock).
        self._hidden_until = -math.inf
        # Receivers that got an empty answer and wait for news.
        self._parked = 0
        self._news = None

    async def _park(self) -> None:
        """until_empty: the queue answered empty. Stop once every receiver has, nothing is
        held or being released, and no message this run released with a delay (after a
        throttle) is still invisible; otherwise wait for news (a receive got messages, the
        last held one finished, a release made one visible again, or the last delayed one
        shows again)."""
        assert self._news is not None
        assert self._acker is not None
        self._parked += 1
        try:
            if (
                self._parked == self.config.receivers
                and not self._held
                and not self._acker.visibility_changes_pending
            ):
                hidden = self._hidden_until - self._loop_time()
                if hidden <= 0:
                    logger.info("queue answered empty and nothing is in flight: stopping")
                    self.stop()
                    return
                logger.debug("queue answered empty; throttled messages show again in %.2fs", hidden)
                self._news.clear()
                with anyio.move_on_after(hidden):
                    await self._news.wait()
                return
            self._news.clear()
            await self._news.wait()
        finally:
            self._parked -= 1

    def _visibility_answered(self) -> None:
        """A visibility change answered: a parked until_empty receiver looks again."""
        if self._parked and self._news is not None:
            self._news.set()
