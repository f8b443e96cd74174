"""The dispatch limit and throttled dispatches.

The dispatch limit L bounds dispatches under way and, through the consumer's capacity, the
messages held (L + `prefetch`). Throttles (``DispatchThrottled``, a Lambda 429) lower it
AIMD-style: +1 per L successes, halved once per window of dispatches (throttles of
dispatches started before the last decrease do not count again), floor 1, ceiling
`max_in_flight`. A throttled message is retried in-process (no receive burnt), then released
for a quick retry.

A part of `Consumer` (a mixin over its state).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._acker import OnDone, Outcome
from ._backoff import throttle_retry_delay
from ._config import ConsumerConfig
from ._exceptions import DispatchThrottled
from ._slots import Slots
from ._stats import Stats
from ._types import Message

if TYPE_CHECKING:
    from ._acker import Acker

__all__ = ("DispatchLimit", "ThrottledDispatch", "capacity_low_water")

logger = logging.getLogger("asyncloop")


def capacity_low_water(capacity: int, batch_size: int) -> int:
    """The fewest free slots worth a receive. Completions of one received batch tend to land
    in the same event-loop turn, so even 1 usually refills whole batches; at very high
    capacity a larger mark (a hundredth of the capacity, at most a batch) keeps receives
    full at almost no cost in concurrency."""
    return max(1, min(batch_size, capacity // 100))


class DispatchLimit:
    """The adaptive dispatch limit: `value` now (`ceiling` = `max_in_flight` until a throttle
    lowers it); `slots` admits at most `value` dispatches at once, and the consumer's
    `capacity` (messages held) follows it, `prefetch` above it. `epoch` counts decreases: a
    worker notes it when its dispatch starts and hands it to `throttled`."""

    __slots__ = (
        "_batch_size",
        "_prefetch",
        "_stats",
        "_window",
        "capacity",
        "ceiling",
        "epoch",
        "slots",
        "value",
    )

    def __init__(
        self, ceiling: int, capacity: Slots, batch_size: int, stats: Stats, *, prefetch: int = 0
    ) -> None:
        self.value = self.ceiling = ceiling
        self.slots = Slots(ceiling)
        self.capacity = capacity
        self.epoch = 0
        # Successes since the last change.
        self._window = 0
        self._batch_size = batch_size
        self._prefetch = prefetch
        self._stats = stats
        stats.dispatch_limit = stats.dispatch_limit_min = ceiling

    def throttled(self, epoch: int) -> None:
        """A dispatch started in `epoch` was throttled: halve the limit, once per window
        (throttles of dispatches started before the last decrease do not count again)."""
        if epoch != self.epoch:
            return
        self.epoch += 1
        self._set(max(1, self.value // 2))
        logger.info("target throttled: dispatch limit lowered to %d", self.value)

    def succeeded(self) -> None:
        """A dispatch succeeded: +1 per `value` successes, up to the ceiling. (The hot path
        calls it only while ``value < ceiling``.)"""
        self._window += 1
        if self._window >= self.value and self.value < self.ceiling:
            self._set(self.value + 1)

    def _set(self, limit: int) -> None:
        self._window = 0
        self.value = limit
        self.slots.resize(limit)
        held = limit + self._prefetch
        self.capacity.resize(held, capacity_low_water(held, self._batch_size))
        stats = self._stats
        stats.dispatch_limit = limit
        if limit < stats.dispatch_limit_min:
            stats.dispatch_limit_min = limit


class ThrottledDispatch:
    """Consumer's part for throttled dispatches: the dispatch limit's reaction, in-process
    retries, the release for a quick retry."""

    config: ConsumerConfig
    stats: Stats
    visibility_timeout: int | None
    _acker: Acker | None
    _dispatch_limit: DispatchLimit
    _held: dict[Message, float]
    _hidden_until: float
    _loop_time: Callable[[], float]
    _lost: set[Message]
    _stopping: bool

    if TYPE_CHECKING:

        async def _pause(self, seconds: float) -> None: ...

        def _done(self, message: Message) -> None: ...

        def _drop_lost(self, message: Message) -> None: ...

        def _heartbeat_vt(self) -> int | None: ...

    async def _throttled(
        self, message: Message, exc: DispatchThrottled, epoch: int, attempt: int
    ) -> bool:
        """React to a throttle; True to dispatch `message` again, False once it is released."""
        config = self.config
        self.stats.throttled += 1
        if config.adaptive_concurrency:
            self._dispatch_limit.throttled(epoch)
        if attempt < config.throttle_retries and not self._stopping:
            delay = throttle_retry_delay(attempt, config.throttle_retry_delay)
            if self._can_hold(message, delay):
                logger.debug(
                    "dispatch of message %s throttled; retry %d in %.3fs (limit %d)",
                    message.message_id,
                    attempt + 1,
                    delay,
                    self._dispatch_limit.value,
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
