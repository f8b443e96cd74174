"""Helpers shared by the consumer's tests: a config that drains a queue quickly, and a
FakeQueue that records visibility changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel

from asyncloop import (
    BatchEntryFailure,
    ConsumerConfig,
)
from asyncloop.testing import FakeQueue


def drain_config(**overrides: Any) -> ConsumerConfig:
    values: dict[str, Any] = {
        "wait_time_seconds": 0,
        "until_empty": True,
        "ack_flush_interval": 0.005,
        "shutdown_grace": 5.0,
    }
    values.update(overrides)
    return ConsumerConfig(**values)


class VisibilityQueue(FakeQueue):
    """A FakeQueue that records every ChangeMessageVisibilityBatch call and can signal after
    a number of them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.visibility_calls: list[list[tuple[str, str, int]]] = []
        self.calls_wanted = 0
        self.enough_calls = anyio.Event()
        self.call_started = anyio.Event()

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> list[BatchEntryFailure]:
        self.visibility_calls.append(list(entries))
        self.call_started.set()
        try:
            return await super().change_visibility_batch(entries)
        finally:
            if self.calls_wanted and len(self.visibility_calls) >= self.calls_wanted:
                self.enough_calls.set()

    def timeouts(self) -> list[int]:
        return [timeout for call in self.visibility_calls for _, _, timeout in call]
