"""The dispatch limit and throttled dispatches.

The dispatch limit L bounds dispatches under way and, through the consumer's capacity, the
messages held. Throttles (``DispatchThrottled``, a Lambda 429) lower it AIMD-style: +1 per L
successes, halved once per window of dispatches (throttles of dispatches started before the
last decrease do not count again), floor 1, ceiling `max_in_flight`. A throttled message is
retried in-process (no receive burnt), then released for a quick retry.

A part of `Consumer` (a mixin over its state).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._acker import OnDone, Outcome
from ._backoff import THROTTLE_RETRY_CAP
from ._config import ConsumerConfig
from ._exceptions import DispatchThrottled
from ._slots import Slots
from ._stats import Stats
from ._types import Message

if TYPE_CHECKING:
    from ._acker import Acker

__all__ = ("ThrottledDispatch", "capacity_low_water")

logger = logging.getLogger("asyncloop")


def capacity_low_water(capacity: int, batch_size: int) -> int:
    """The fewest free slots worth a receive. Completions of one received batch tend to land
    in the same event-loop turn, so even 1 usually refills whole batches; at very high
    capacity a larger mark (a hundredth of the capacity, at most a batch) keeps receives
    full at almost no cost in concurrency."""
    return max(1, min(batch_size, capacity // 100))


class ThrottledDispatch:
    """Consumer's dispatch-limit part: AIMD over `_limit` (with `_window`, `_epoch`,
    `_ceiling`), resizing `_gate` and `_capacity`; in-process retries of a throttle."""

    config: ConsumerConfig
    stats: Stats
    visibility_timeout: int | None
    _acker: Acker | None
    _loop_time: Callable[[], float]
    _capacity: Slots
    _ceiling: int
    _epoch: int
    _gate: Slots
    _held: dict[Message, float]
    _hidden_until: float
    _limit: int
    _lost: set[Message]
    _stopping: bool
    _window: int

    if TYPE_CHECKING:

        async def _pause(self, seconds: float) -> None: ...

        def _done(self, message: Message) -> None: ...

        def _drop_lost(self, message: Message) -> None: ...

        def _heartbeat_vt(self) -> int | None: ...

    # -- throttles: AIMD and in-process retries -------------------------------------------

    async def _throttled(
        self, message: Message, exc: DispatchThrottled, epoch: int, attempt: int
    ) -> bool:
        """React to a throttle; True to dispatch `message` again, False once it is released."""
        config = self.config
        self.stats.throttled += 1
        if config.adaptive_concurrency and epoch == self._epoch:
            self._decrease()
        if attempt < config.throttle_retries and not self._stopping:
            delay = random.uniform(
                0, min(THROTTLE_RETRY_CAP, config.throttle_retry_delay * 2**attempt)
            )
            if self._can_hold(message, delay):
                logger.debug(
                    "dispatch of message %s throttled; retry %d in %.3fs (limit %d)",
                    message.message_id,
                    attempt + 1,
                    delay,
                    self._limit,
                )
                await self._pause(delay)
                if self._lost and message in self._lost:
                    self._drop_lost(message)
                    return False
                if not self._stopping:
                    return True
        # Released for a quick retry: visible again at once or after a short jittered delay.
        visibility = random.randint(0, config.throttle_release_visibility)
        self.stats.failed += 1
        logger.warning(
            "dispatch of message %s throttled %d time(s); released (visibility %ds)",
            message.message_id,
            attempt + 1,
            visibility,
        )
        assert self._acker is not None
        self._acker.release(
            message, visibility, self._throttle_released(visibility) if visibility else None
        )
        self._done(message)
        return False

    def _throttle_released(self, visibility: int) -> OnDone:
        """A release `visibility` seconds out: once it answered, `until_empty` waits for the
        message to show again (it is still this run's work)."""

        def done(message: Message, outcome: Outcome) -> None:
            acker = self._acker
            assert acker is not None
            acker.count_release(message, outcome)
            if outcome is None:
                self._hidden_until = max(self._hidden_until, self._loop_time() + visibility)

        return done

    def _can_hold(self, message: Message, delay: float) -> bool:
        """Whether `message` may wait `delay` seconds for a retry without its visibility
        running out (the heartbeat, when on, extends it; with no known timeout, yes)."""
        vt = self.config.visibility_timeout or self.visibility_timeout
        if not vt or self._heartbeat_vt() is not None:
            return True
        deadline = self._held.get(message, 0.0)
        return deadline - self._loop_time() > delay + 1.0

    def _decrease(self) -> None:
        self._epoch += 1
        self._set_limit(max(1, self._limit // 2))
        logger.info("target throttled: dispatch limit lowered to %d", self._limit)

    def _increase(self) -> None:
        self._window += 1
        if self._window >= self._limit:
            self._set_limit(self._limit + 1)

    def _set_limit(self, limit: int) -> None:
        self._window = 0
        self._limit = limit
        self._gate.resize(limit)
        self._capacity.resize(limit, capacity_low_water(limit, self.config.batch_size))
        stats = self.stats
        stats.concurrency_limit = limit
        if limit < stats.concurrency_limit_min:
            stats.concurrency_limit_min = limit
