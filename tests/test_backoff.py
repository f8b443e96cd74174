"""Backoff arithmetic: the visibility of a failed message by receive count."""

from __future__ import annotations

import math
import random

import pytest

from asyncloop._backoff import failure_visibility

# -- failure backoff ------------------------------------------------------------------------


@pytest.mark.parametrize("receive_count", [1, 2, 3, 5, 8, 20])
def test_failure_visibility_is_exponential_jittered_and_capped(receive_count: int) -> None:
    rng = random.Random(receive_count)
    base, cap = 2.0, 100.0
    full = min(cap, base * 2 ** (receive_count - 1))
    values = {failure_visibility(receive_count, base, cap, rng) for _ in range(200)}
    assert min(values) >= math.ceil(full / 2) - 1
    assert max(values) <= math.ceil(full)
    assert min(values) >= 1
    if full >= 8:
        assert len(values) > 1  # jittered, not one value
