"""Fixtures for the hot-path microbenchmarks (run with `pytest bench/micro --benchmark-enable`).

bench/micro is part of the repository's test suite, not of the installed benchmark
(`asyncloop._bench`, which imports public names only): it times the library's internals, so
its modules may import private ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for a module's benchmarks: pytest-benchmark does not run coroutines,
    so each round is ``runner.run(workload())``, without paying for a new loop."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner
