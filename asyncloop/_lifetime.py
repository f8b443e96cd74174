"""`OpenOnce`: the lifetime of an object that holds connections, opened once and closed once.

`AwsClients` (the aioboto3 clients), the lean transport's `LeanTransport` (its HTTP pools)
and asyncloop.testing's `HttpServer` share it, so the rules are written once: ``async with``
opens; a failure (or a cancellation) while opening closes what was opened and goes on;
leaving the block closes; entering twice is a `RuntimeError`; using the object before it
opened is a `RuntimeError` ("use `async with`"), after it closed a `ClosedError` (closed by
its owner, not broken).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._exceptions import ClosedError

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

__all__ = ("OpenOnce",)


class OpenOnce:
    """A subclass writes `_open` (what entering does) and `_close` (what closing does: called
    once, also after an `_open` that failed halfway, so it closes only what is open)."""

    _state = "new"

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"{type(self).__name__} can be entered only once")
        self._state = "open"
        try:
            await self._open()
        except BaseException:
            # Close what was opened, then let the error (or the cancellation) go on
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close; idempotent (a never-opened object cannot be entered afterwards)."""
        if self._state == "closed":
            return
        self._state = "closed"
        await self._close()

    def _check_open(self) -> None:
        if self._state == "closed":
            raise ClosedError(f"{type(self).__name__} is closed")
        if self._state != "open":
            raise RuntimeError(f"{type(self).__name__} is not open: use `async with`")
