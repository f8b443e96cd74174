"""What the in-memory fakes share: injected latency (`Latency`) and faults (`FaultPlan`)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ("FaultPlan", "Latency")

Latency = float | Callable[[], float]
"""Seconds: a fixed value, or a callable drawn once per call."""


@dataclass
class FaultPlan:
    """Faults a fake injects, by probability per call (or per entry), from a seeded RNG.

    - `errors`: operation name -> probability that the whole call raises a retryable
      ``InternalError`` (the request reached nothing).
    - `throttles`: operation name -> probability of a throttling error (``ThrottlingException``
      on SQS, ``TooManyRequestsException`` on Lambda).
    - `entry_failures`: operation name -> probability that one entry of a batch call fails
      with a retryable ``InternalError`` (``SenderFault`` false).
    - `duplicates`: probability that a received message is also left visible (SQS's
      at-least-once delivery: the same MessageId arrives twice with two receipt handles).
    - `spikes`: (probability, seconds): extra latency added to a call.
    """

    errors: Mapping[str, float] = field(default_factory=dict)
    throttles: Mapping[str, float] = field(default_factory=dict)
    entry_failures: Mapping[str, float] = field(default_factory=dict)
    duplicates: float = 0.0
    spikes: tuple[float, float] = (0.0, 0.0)
    seed: int | None = None
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def draw(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability
