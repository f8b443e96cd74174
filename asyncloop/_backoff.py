"""Backoff arithmetic: receive errors, empty short polls, throttled-dispatch retries, and the
visibility of a failed message (exponential by receive count, jittered, capped)."""

from __future__ import annotations

import math
import random

from ._exceptions import CredentialsError, QueueNotFound
from ._limits import MAX_VISIBILITY

__all__ = (
    "failure_visibility",
    "next_empty_pause",
    "receive_backoff",
    "throttle_retry_delay",
)

# Receive errors back off with full jitter: base * 2**n seconds, capped.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 20.0
# Missing queue or refused credentials will not fix themselves quickly.
BACKOFF_BASE_SEVERE = 2.0
BACKOFF_CAP_SEVERE = 60.0
# Short polls (wait_time_seconds=0) that come back empty pause, doubling up to a second,
# so an idle queue is not polled in a tight loop.
EMPTY_PAUSE_MIN = 0.01
EMPTY_PAUSE_MAX = 1.0
# In-process retries of a throttled dispatch wait at most this long each.
THROTTLE_RETRY_CAP = 2.0


def failure_visibility(
    receive_count: int, base: float, cap: float, rng: random.Random | None = None
) -> int:
    """The visibility (whole seconds) of a failed message: ``base * 2**(receive_count - 1)``
    capped at `cap`, with equal jitter (between half and all of it), rounded up, at least 1."""
    exponent = min(max(receive_count, 1) - 1, 32)
    delay = min(cap, base * 2.0**exponent)
    jittered = (rng or random).uniform(delay / 2, delay)
    return max(1, min(MAX_VISIBILITY, math.ceil(jittered)))


def throttle_retry_delay(attempt: int, base: float) -> float:
    """The wait before in-process retry `attempt` + 1 of a throttled dispatch: full jitter
    over ``base * 2**attempt``, at most `THROTTLE_RETRY_CAP`."""
    return random.uniform(0, min(THROTTLE_RETRY_CAP, base * 2**attempt))


def receive_backoff(exc: Exception, failures: int) -> float:
    """The wait after the `failures`-th receive error in a row: full jitter, capped; longer
    for a missing queue or refused credentials."""
    severe = isinstance(exc, QueueNotFound | CredentialsError)
    base, cap = (BACKOFF_BASE_SEVERE, BACKOFF_CAP_SEVERE) if severe else (BACKOFF_BASE, BACKOFF_CAP)
    return random.uniform(0, min(cap, base * 2 ** min(failures, 16)))


def next_empty_pause(pause: float) -> float:
    """The pause after an empty short poll: doubling from `EMPTY_PAUSE_MIN` up to
    `EMPTY_PAUSE_MAX`."""
    return min(EMPTY_PAUSE_MAX, max(EMPTY_PAUSE_MIN, pause * 2))
