"""Calling the user's function on one message: the one place that decides how.

`CallableDispatcher`, `lambda_handler.worker` and `lambda_handler.sqs_batch_handler` all call
through `UserCall`, so they agree on three rules:

- an ``async def`` function (or an object whose ``__call__`` is one, or a `functools.partial`
  of one) is called on the event loop and awaited;
- any other function is called in a worker thread (unless the caller asks for the loop), and
  **whatever it returns that is awaitable is awaited**, on the event loop: a `functools.wraps`
  wrapper or a lambda around an async function returns a coroutine that has not run yet, and
  dropping it would report work done that never ran. The coroutine object is only created in
  the thread; it runs on the loop, like any other;
- a thread call that is cancelled (the consumer's `shutdown_grace` ran out, a lost lease, the
  Lambda deadline) is abandoned, not waited for: the caller's cancellation goes on at once,
  and the thread runs until the function returns, outside any limit. Its result is discarded
  and its message is never reported done, but its side effects still happen: an abandoned
  thread may still finish the work, so the redelivered message can run twice (at-least-once).

The thread limit (an `anyio.CapacityLimiter`) bounds the threads of dispatches still being
waited for: an abandoned thread gives its slot back when it is abandoned, so a function that
never returns leaks its thread, never a slot, and cannot starve later calls or runs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any

import anyio
import anyio.to_thread

from ._types import Message

__all__ = ("UserCall", "is_async_callable")

logger = logging.getLogger("asyncloop")


def is_async_callable(func: object) -> bool:
    """Whether calling `func` returns a coroutine by its declaration (``async def``, an
    async ``__call__``, a partial of either); a sync wrapper of an async function is not."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - async callable objects
    )


class UserCall:
    """Calls ``func(message)`` by the rules above.

    ``await call(message)`` returns when the work is done (what the function returned,
    awaited if awaitable) and raises what it raised. `start` is the same without a coroutine
    of its own, for the dispatch hot path. `in_thread` None (the default) means: in a thread
    unless `func` is async. `limiter` bounds the threads (None: anyio's default limiter, 40
    per event loop).
    """

    __slots__ = ("_noted", "func", "in_thread", "limiter")

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
        self._noted = False

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
        # The common answers first: an async function's coroutine, a sync function's None
        if result is None or type(result) is CoroutineType:
            return result
        return result if inspect.isawaitable(result) else None

    async def _in_thread(self, message: Message) -> None:
        result = await anyio.to_thread.run_sync(
            self.func, message, abandon_on_cancel=True, limiter=self.limiter
        )
        if result is not None and inspect.isawaitable(result):
            self._note_awaitable()
            await result

    def _note_awaitable(self) -> None:
        if not self._noted:
            self._noted = True
            logger.info(
                "handler %s is not async but returned an awaitable: it is called in a worker "
                "thread and what it returns is awaited on the event loop (declare it "
                "`async def` to skip the thread)",
                getattr(self.func, "__qualname__", type(self.func).__name__),
            )
