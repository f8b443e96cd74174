"""The visibility heartbeat and lease loss.

The heartbeat extends held messages near their visibility deadline (less than half of the
visibility timeout left, by the timeout again, up to `max_visibility_extension` in total and
SQS's 12 hours). An extension that finds the receipt handle invalid (`LEASE_GONE`) loses the
lease: the message's dispatch is cancelled, or the message is dropped where it waits; it is
never deleted or released (SQS owns it again). With no visibility timeout given, a run first
asks the queue for its own (`_discover_visibility_timeout`), so the heartbeat is not silently
off.

A part of `Consumer` (a mixin over its state).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._acker import OnDone, Outcome, outcome_code
from ._config import ConsumerConfig
from ._error_table import LEASE_GONE
from ._limits import MAX_VISIBILITY
from ._protocols import Queue
from ._stats import Stats
from ._types import BatchEntryFailure, Message
from ._validate import check_int

if TYPE_CHECKING:
    from ._acker import Acker

__all__ = ("Heartbeat",)

logger = logging.getLogger("asyncloop")

# The heartbeat checks a few times per visibility timeout, never in a tight loop.
_HEARTBEAT_MIN_PERIOD = 0.05
_LEASE_LOST = "asyncloop: lease lost"


class Heartbeat:
    """Consumer's heartbeat part. Its state: `_extending` (extensions under way),
    `_first_deadline` (of extended messages), `_capped` (at the extension cap, warned once),
    `_lost` (lease lost), `_lease_cancelled` (dispatches that loss cancelled, the cancel not
    yet taken back from the worker's task)."""

    config: ConsumerConfig
    stats: Stats
    queue: Queue
    visibility_timeout: int | None
    _acker: Acker | None
    _loop_time: Callable[[], float]
    _capped: set[Message]
    _extending: set[Message]
    _fifo: bool
    _first_deadline: dict[Message, float]
    _held: dict[Message, float]
    _lease_cancelled: set[Message]
    _lost: set[Message]
    _running: dict[Message, asyncio.Task[object]]

    if TYPE_CHECKING:

        def _done(self, message: Message) -> None: ...

        def _next_in_group(self, message: Message, ok: bool) -> Message | None: ...

    def _init_heartbeat(self) -> None:
        # Extensions under way; the first deadline of extended messages; messages at their
        # extension cap (warned once); messages whose lease is lost.
        self._extending = set()
        self._first_deadline = {}
        self._capped = set()
        self._lost = set()
        # Messages whose dispatch the lease loss cancelled (the cancel is still counted on the
        # worker's task until it is taken back).
        self._lease_cancelled = set()

    def _lost_meanwhile(self, message: Message, task: asyncio.Task[object]) -> bool:
        """Whether `message`'s lease was lost during a dispatch that then ended without
        raising our cancellation (the dispatcher swallowed it): take the cancel back from
        `task` and drop the message (SQS owns it again)."""
        if message not in self._lost:
            return False
        if message in self._lease_cancelled:
            self._lease_cancelled.discard(message)
            task.uncancel()
        self._drop_lost(message)
        return True

    def _lease_cancel_taken_back(self, message: Message, task: asyncio.Task[object]) -> bool:
        """`message`'s dispatch ended in a cancellation of `task`: True if the lease loss's
        cancel was the only one (taken back from `task`), False if it must propagate."""
        if message not in self._lease_cancelled:
            return False
        self._lease_cancelled.discard(message)
        return task.uncancel() == 0

    # -- heartbeat and lease loss ---------------------------------------------------------

    async def _discover_visibility_timeout(self) -> None:
        """Read the queue's VisibilityTimeout when nothing gave one and the heartbeat wants it."""
        config = self.config
        if config.visibility_timeout is not None or self.visibility_timeout is not None:
            return
        get_attributes = getattr(self.queue, "get_attributes", None)
        if config.max_visibility_extension <= 0 or get_attributes is None:
            return
        try:
            attributes = await get_attributes(["VisibilityTimeout"])
            vt = int(attributes["VisibilityTimeout"])
            check_int("VisibilityTimeout", vt, 0, MAX_VISIBILITY)
        except Exception as exc:  # AWS errors, a custom Queue's, a garbage answer
            logger.warning(
                "heartbeat off: the queue's VisibilityTimeout could not be read (%s: %s)",
                type(exc).__name__,
                exc,
            )
            return
        self.visibility_timeout = vt
        logger.info("heartbeat uses the queue's VisibilityTimeout of %d s", vt)

    def _heartbeat_vt(self) -> int | None:
        config = self.config
        vt = config.visibility_timeout
        if vt is None:
            vt = self.visibility_timeout
        if not vt or config.max_visibility_extension <= 0:
            return None
        return vt

    async def _heartbeat(self, vt: int) -> None:
        """Extend held messages with less than half of `vt` left, by `vt` again, up to the
        total `max_visibility_extension`. Runs until cancelled."""
        period = max(_HEARTBEAT_MIN_PERIOD, vt / 4)
        while True:
            await anyio.sleep(period)
            if self._held:
                self._extend_due(vt)

    def _extend_due(self, vt: int) -> None:
        acker = self._acker
        assert acker is not None
        now = self._loop_time()
        margin = vt / 2
        cap = self.config.max_visibility_extension
        extending = self._extending
        due = 0
        for message, deadline in self._held.items():
            if deadline - now > margin or message in extending or message in self._lost:
                continue
            # Cap: the first deadline plus the allowed extension, and SQS's 12 hours.
            first = self._first_deadline.setdefault(message, deadline)
            last = min(first + cap, first - vt + MAX_VISIBILITY)
            target = min(now + vt, last)
            if target <= deadline + 0.5:
                if message not in self._capped:
                    self._capped.add(message)
                    logger.warning(
                        "message %s reached its visibility extension cap "
                        "(max_visibility_extension=%ss); it may be delivered again",
                        message.message_id,
                        cap,
                    )
                continue
            extending.add(message)
            timeout = max(1, math.ceil(target - now))
            acker.extend(message, timeout, self._extension_done(message, now + timeout))
            due += 1
        if due:
            logger.debug("extending the visibility of %d message(s)", due)
            acker.flush_visibility_changes()

    def _extension_done(self, message: Message, deadline: float) -> OnDone:
        def done(_: Message, outcome: Outcome) -> None:
            self._extending.discard(message)
            if message not in self._held:
                return  # finished meanwhile: the outcome does not matter
            if outcome is None:
                self.stats.extended += 1
                self._held[message] = deadline
                return
            code = (
                outcome.code
                if isinstance(outcome, BatchEntryFailure)
                else getattr(outcome, "code", None)
            )
            if code is not None and code.rsplit(".", 1)[-1] in LEASE_GONE:
                self._lease_lost(message)
                return
            self.stats.extend_failed += 1
            logger.warning(
                "visibility extension of message %s failed (%s); trying again next beat",
                message.message_id,
                outcome_code(outcome),
            )

        return done

    def _lease_lost(self, message: Message) -> None:
        """The receipt handle is no longer valid: cancel the dispatch, or drop the message
        where it waits; never delete or release it."""
        self.stats.lease_lost += 1
        self._lost.add(message)
        logger.warning(
            "lease of message %s lost (receipt handle no longer valid): cancelling its dispatch",
            message.message_id,
        )
        task = self._running.get(message)
        if task is not None and message not in self._lease_cancelled:
            self._lease_cancelled.add(message)
            task.cancel(_LEASE_LOST)

    def _drop_lost(self, message: Message) -> None:
        self._lost.discard(message)
        self._lease_cancelled.discard(message)
        self._capped.discard(message)
        if message in self._held:
            self._done(message)
        if self._fifo:
            # Later messages of the group must not overtake the one whose lease was lost.
            self._next_in_group(message, False)
