"""FIFO group ordering (queue URL ending ``.fifo``): groups run in parallel, each group in
order, one message at a time; a failure (or a stop) releases the rest of its group, unstarted.

A part of `Consumer` (a mixin over its state): `_admit` queues received messages behind
their group's running one, `_next_in_group` hands a worker its group's next message.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._types import Message

__all__ = ("FifoGroups",)

logger = logging.getLogger("asyncloop")


class FifoGroups:
    """Consumer's FIFO part. Needs from the consumer: `_groups` (group id -> the messages
    waiting behind the running one), `_stopping`, `_release_unstarted`."""

    _groups: dict[str, deque[Message]]
    _stopping: bool

    if TYPE_CHECKING:

        def _release_unstarted(self, message: Message) -> None: ...

    def _admit(self, messages: Sequence[Message]) -> list[Message]:
        """FIFO: queue each message behind its group's; return the heads of idle groups."""
        groups = self._groups
        heads = []
        for message in messages:
            group = message.group_id or ""
            waiting = groups.get(group)
            if waiting is None:
                groups[group] = deque()
                heads.append(message)
            else:
                waiting.append(message)
        return heads

    def _next_in_group(self, message: Message, ok: bool) -> Message | None:
        """FIFO: the next message of `message`'s group, or None (the group is idle again).
        After a failure, or while stopping, the rest of the group is released unstarted."""
        group = message.group_id or ""
        waiting = self._groups.get(group)
        if waiting is None:
            return None
        if waiting and ok and not self._stopping:
            return waiting.popleft()
        del self._groups[group]
        if waiting:
            logger.info(
                "releasing %d later message(s) of group after message %s, unstarted",
                len(waiting),
                message.message_id,
            )
            for later in waiting:
                self._release_unstarted(later)
        return None
