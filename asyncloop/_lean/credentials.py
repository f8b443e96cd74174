"""Credentials for every lean request, from botocore's credentials object, checked cheaply.

Why: aiobotocore's ``get_frozen_credentials()`` on refreshable credentials (ECS, IMDS, SSO,
assume-role, web identity) first asks ``refresh_needed()``, which reads the time as
``datetime.now(tzlocal())`` and subtracts tz-aware datetimes: about 12 us a call measured
here, a tenth of a lean Invoke. The answer changes only when the clock passes the advisory
refresh point or the object is refreshed, so it is computed once per set of keys:

- static credentials (env, profile keys, ``aws_access_key_id=``) never refresh: read once;
- refreshable credentials: the keys handed out are the object's own frozen set, reused while
  that set is still the object's (nobody refreshed it meanwhile) and the wall clock is before
  the advisory refresh point (expiry minus botocore's advisory timeout, 15 minutes) computed
  with the object's own clock when the keys were read. Past it, or after any refresh, every
  request asks ``get_frozen_credentials()`` again, where botocore's rules decide as on the
  sdk path (advisory refresh, mandatory refresh under the lock, errors): keys are never used
  closer to their expiry than botocore would use them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from .signing import Credentials

__all__ = ("CredentialSource",)


class CredentialSource:
    """``await source.get()``: the `Credentials` to sign the next request with.

    `credentials` is the client's botocore credentials object (``None``: no credentials
    found, every `get` raises botocore's ``NoCredentialsError`` as the sdk path would);
    `clock` (seconds since the epoch) is for tests.
    """

    def __init__(self, credentials: Any, *, clock: Callable[[], float] = time.time) -> None:
        from botocore.credentials import RefreshableCredentials

        self._source = credentials
        self._clock = clock
        self._refreshable = isinstance(credentials, RefreshableCredentials)
        self._frozen: Any = None
        self._credentials: Credentials | None = None
        self._fresh_until = -math.inf

    def current(self) -> Credentials | None:
        """The keys to sign with, when they can be reused as they are; else None: `get`."""
        cached = self._credentials
        if cached is None or not self._refreshable:
            return cached
        if self._source._frozen_credentials is self._frozen and self._clock() < self._fresh_until:
            return cached
        return None

    async def get(self) -> Credentials:
        """The keys botocore would sign with now; refreshed by botocore when it is time."""
        cached = self.current()
        if cached is not None:
            return cached
        source = self._source
        if source is None:
            from botocore.exceptions import NoCredentialsError

            raise NoCredentialsError()
        frozen = await source.get_frozen_credentials()
        for value in (frozen.access_key, frozen.token or ""):
            # They go into the request's head as they are: a line break would end a header
            if "\r" in value or "\n" in value:
                from botocore.exceptions import CredentialRetrievalError

                raise CredentialRetrievalError(
                    provider=type(source).__name__,
                    error_msg="the access key or session token contains a line break",
                )
        self._credentials = Credentials(frozen.access_key, frozen.secret_key, frozen.token)
        if self._refreshable:
            self._frozen = frozen
            self._fresh_until = self._advisory_deadline(source)
        return self._credentials

    def _advisory_deadline(self, source: Any) -> float:
        # botocore's own test (refresh_needed) is "seconds remaining < advisory timeout"
        if getattr(source, "_expiry_time", None) is None:
            # No expiry: botocore does not refresh these (a refresh would replace the frozen
            # set, which `get` notices)
            return -math.inf if source.refresh_needed() else math.inf
        try:
            remaining = float(source._seconds_remaining())
            advisory = float(source._advisory_refresh_timeout)
        except (AttributeError, TypeError, ValueError):
            # An unknown credentials class: ask it for every request, as before
            return -math.inf
        return self._clock() + remaining - advisory
