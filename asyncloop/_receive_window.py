"""The receive batching window (`receive_batch_window`, opt-in).

While messages are flowing (a receiver's last receive returned some), a receiver that took
fewer free slots than a batch waits up to the window for more to free, then asks SQS for all
it took in one call, as Lambda's batching window does: fewer ReceiveMessage calls per
message, at the cost of up to the window idle on the slots it waits with. Only capacity waits
here, never a message, so a message's visibility timeout never runs locally.

A part of `Consumer` (a mixin over its state).
"""

from __future__ import annotations

import anyio

from ._config import ConsumerConfig
from ._slots import Slots

__all__ = ("ReceiveWindow",)


class ReceiveWindow:
    """Consumer's receive-window part."""

    config: ConsumerConfig
    _capacity: Slots
    _stopping: bool

    async def _fill_batch(self, taken: int, window: float) -> int:
        """Holding `taken` free slots, take more as they free, until a whole batch (or the
        whole capacity, when smaller) or `window` seconds passed; return all taken, or 0
        (every slot given back) on a stop.

        Only capacity waits here, never a message: the receive that follows asks SQS for
        what was taken, so the backpressure rule stands."""
        capacity = self._capacity
        try:
            with anyio.move_on_after(window):
                # `total` again each time: a throttle may lower it meanwhile.
                while taken < min(self.config.batch_size, capacity.total):
                    more = await capacity.take(min(self.config.batch_size, capacity.total) - taken)
                    if more == 0:  # closed: a stop began
                        break
                    taken += more
        except BaseException:  # cancellation: never swallowed, the slots go back
            capacity.give(taken)
            raise
        if self._stopping:
            capacity.give(taken)
            return 0
        return taken
