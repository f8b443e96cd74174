"""The lean transport's credentials: read cheaply, refreshed by botocore's rules, never stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiobotocore.credentials import AioCredentials, AioRefreshableCredentials
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError

from asyncloop._lean.credentials import CredentialSource
from asyncloop._lean.signing import Credentials

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
# botocore's advisory refresh window: refresh when less than this remains
ADVISORY = AioRefreshableCredentials._advisory_refresh_timeout


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Clock:
    """The wall clock both botocore's credentials and the source read (epoch seconds)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


class _CountingStatic(AioCredentials):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reads = 0

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        self.reads += 1
        frozen: ReadOnlyCredentials = await super().get_frozen_credentials()
        return frozen


def _refreshable(clock: _Clock) -> tuple[AioRefreshableCredentials, list[int]]:
    """Credentials valid for an hour; each refresh hands out the next numbered keys."""
    refreshes: list[int] = []

    async def refresh() -> dict[str, str]:
        refreshes.append(len(refreshes) + 1)
        n = len(refreshes) + 1
        return {
            "access_key": f"AK{n}",
            "secret_key": f"secret{n}",
            "token": f"token{n}",
            "expiry_time": (clock.datetime() + timedelta(hours=1)).isoformat(),
        }

    source = AioRefreshableCredentials(
        "AK1",
        "secret1",
        "token1",
        clock.datetime() + timedelta(hours=1),
        refresh,
        "test",
        time_fetcher=clock.datetime,
    )
    return source, refreshes


async def test_static_credentials_are_read_once() -> None:
    # GIVEN static credentials (env, profile keys): they never refresh
    static = _CountingStatic("AK", "secret", "token")
    source = CredentialSource(static)
    # WHEN many requests ask for credentials
    got = [await source.get() for _ in range(5)]
    # THEN the object was read once, and every request signs with its keys
    assert static.reads == 1
    assert set(got) == {Credentials("AK", "secret", "token")}


async def test_refreshable_credentials_refresh_at_botocores_advisory_point() -> None:
    # GIVEN refreshable credentials expiring in an hour, and a clock the test moves
    clock = _Clock()
    refreshable, refreshes = _refreshable(clock)
    source = CredentialSource(refreshable, clock=clock)
    # WHEN requests run until just before the advisory refresh window
    first = await source.get()
    clock.now = T0 + 3600 - ADVISORY - 1
    before_window = await source.get()
    # THEN no refresh happened and the first keys are used
    assert refreshes == []
    assert first == before_window == Credentials("AK1", "secret1", "token1")
    # WHEN the clock enters the window (less than botocore's advisory timeout remains)
    clock.now = T0 + 3600 - ADVISORY + 1
    in_window = await source.get()
    again = await source.get()
    # THEN the keys were refreshed before use, once, and the new keys are used from then on
    assert refreshes == [1]
    assert in_window == again == Credentials("AK2", "secret2", "token2")


async def test_credentials_refreshed_elsewhere_are_picked_up_at_once() -> None:
    # GIVEN a source that has handed out the first keys
    clock = _Clock()
    refreshable, refreshes = _refreshable(clock)
    source = CredentialSource(refreshable, clock=clock)
    assert await source.get() == Credentials("AK1", "secret1", "token1")
    # WHEN the shared credentials object is refreshed by another user (the sdk client),
    # while the clock is still far from the advisory window
    await refreshable._protected_refresh(is_mandatory=True)
    # THEN the next request uses the refreshed keys, not the cached ones
    assert refreshes == [1]
    assert await source.get() == Credentials("AK2", "secret2", "token2")


async def test_no_credentials_raise_botocores_error_every_time() -> None:
    # GIVEN a client that found no credentials
    source = CredentialSource(None)
    # WHEN requests ask for credentials THEN each fails as botocore fails
    for _ in range(2):
        with pytest.raises(NoCredentialsError):
            await source.get()
