"""`OpenOnce`: opened once, closed once, closed too when opening fails or is cancelled."""

from __future__ import annotations

import anyio
import pytest

from asyncloop._exceptions import ClosedError
from asyncloop._lifetime import OpenOnce

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Holder(OpenOnce):
    def __init__(self, *, fail: bool = False, block: bool = False) -> None:
        self.fail = fail
        self.block = block
        self.events: list[str] = []

    async def _open(self) -> None:
        self.events.append("open")
        if self.block:
            await anyio.sleep_forever()
        if self.fail:
            raise OSError("refused")

    async def _close(self) -> None:
        self.events.append("close")

    def use(self) -> str:
        self._check_open()
        return "used"


async def test_it_opens_on_entry_closes_on_exit_and_once() -> None:
    holder = _Holder()
    # WHEN it is used before, inside and after its block
    with pytest.raises(RuntimeError, match="use `async with`"):
        holder.use()
    async with holder as opened:
        assert opened.use() == "used"
    await holder.aclose()
    # THEN only inside works, it closed once, and it cannot be entered again
    with pytest.raises(ClosedError, match="_Holder is closed"):
        holder.use()
    with pytest.raises(RuntimeError, match="entered only once"):
        async with holder:
            pass
    assert holder.events == ["open", "close"]


async def test_a_failed_or_cancelled_opening_closes_what_was_opened() -> None:
    # WHEN opening raises THEN the error goes on, after closing
    failing = _Holder(fail=True)
    with pytest.raises(OSError, match="refused"):
        async with failing:
            pass
    # WHEN opening is cancelled THEN it closes too
    blocked = _Holder(block=True)
    with anyio.move_on_after(0.05):
        async with blocked:
            pass
    assert failing.events == blocked.events == ["open", "close"]
