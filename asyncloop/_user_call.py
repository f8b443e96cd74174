"""Calling the user's function on one message: the one place that decides how.

`lambda_handler.worker` and `lambda_handler.sqs_batch_handler` call through `UserCall`:

- an ``async def`` function (or an object whose ``__call__`` is one, or a `functools.partial`
  of one) is called on the event loop and awaited;
- any other function is called in a worker thread (unless the caller asks for the loop);
  called on the loop, what it returns is awaited if it is awaitable;
- a thread call that is cancelled is abandoned, not waited for: the caller's cancellation
  goes on at once, and the thread runs until the function returns, outside any limit.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread

from ._types import Message

__all__ = ("UserCall", "is_async_callable")


def is_async_callable(func: object) -> bool:
    """Whether calling `func` returns a coroutine by its declaration (``async def``, an
    async ``__call__``, a partial of either); a sync wrapper of an async function is not."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - async callable objects
    )


class UserCall:
    """Calls ``func(message)`` by the rules above.

    ``await call(message)`` returns when the work is done and raises what the function
    raised. `start` is the same without a coroutine of its own, for a hot path. `in_thread`
    None (the default) means: in a thread unless `func` is async. `limiter` bounds the
    threads (None: anyio's default limiter, 40 per event loop).
    """

    __slots__ = ("func", "in_thread", "limiter")

    def __init__(
        self,
        func: Callable[[Message], Any],
        *,
        in_thread: bool | None = None,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self.func = func
        self.in_thread = not is_async_callable(func) if in_thread is None else in_thread
        self.limiter = limiter

    async def __call__(self, message: Message) -> None:
        pending = self.start(message)
        if pending is not None:
            await pending

    def start(self, message: Message) -> Awaitable[Any] | None:
        """Start the work: return what to await for it to be done, or None when it is done
        already (a sync function called on the loop that returned no awaitable)."""
        if self.in_thread:
            return self._in_thread(message)
        result = self.func(message)
        return result if inspect.isawaitable(result) else None

    async def _in_thread(self, message: Message) -> None:
        await anyio.to_thread.run_sync(
            self.func, message, abandon_on_cancel=True, limiter=self.limiter
        )
