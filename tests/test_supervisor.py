"""The supervisor of `asyncloop run --processes` (asyncloop._supervisor), with stand-in
children (small Python scripts)."""

from __future__ import annotations

import io
import os
import sys
import textwrap
from pathlib import Path

import pytest

from asyncloop._processes import STATE_KEY, exit_code
from asyncloop._supervisor import supervise

# -- the supervisor, with stand-in children ---------------------------------------------------

# A stand-in child: says it is ready on stderr, waits for SIGTERM (forever without one), then
# prints its statistics as a real child does, and exits 0.
_WAITS_FOR_SIGTERM = """
import json, signal, sys
from asyncloop._stats import Stats

def stop(signum, frame):
    stats = Stats()
    stats.received = stats.succeeded = {n}
    print("stopping", file=sys.stderr, flush=True)
    print(json.dumps({{{key!r}: stats.to_state()}}), flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
print("ready\\nsecond line", file=sys.stderr, flush=True)
while True:
    signal.pause()
"""

# A stand-in child that fails once the other child is ready (a marker file it waits for).
_FAILS = """
import os, sys, time
print("handler output on stdout")
while not os.path.exists({marker!r}):
    time.sleep(0.01)
print("broken", file=sys.stderr, flush=True)
sys.exit(3)
"""


@pytest.mark.anyio
async def test_a_failed_child_stops_the_others_gracefully_and_the_run_fails(
    tmp_path: Path,
) -> None:
    # GIVEN a child that waits for SIGTERM and one that fails once the first is ready
    marker = tmp_path / "ready"
    waiting = _WAITS_FOR_SIGTERM.format(n=7, key=STATE_KEY)
    # The marker is made after the ready lines are written: a SIGTERM any earlier would
    # stop the child before it printed them.
    ready = 'print("ready\\nsecond line", file=sys.stderr, flush=True)\n'
    assert ready in waiting
    waiting = waiting.replace(ready, ready + f"open({str(marker)!r}, 'w').close()\n")
    argvs = [
        [sys.executable, "-c", textwrap.dedent(waiting)],
        [sys.executable, "-c", _FAILS.format(marker=str(marker))],
    ]
    stderr = io.StringIO()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    # WHEN supervised (a missing forward would leave the first child waiting: the test's
    # timeout fails it)
    results = await supervise(argvs, env=env, stderr=stderr)
    # THEN the first was stopped by SIGTERM and reported, the second failed: the run fails;
    # every child line reached stderr with its prefix, the failed child's stdout too
    assert [r.exit_code for r in results] == [0, 3]
    assert results[0].stats is not None
    assert results[0].stats.succeeded == 7
    assert results[1].stats is None
    assert exit_code(results) == 1
    lines = stderr.getvalue().splitlines()
    assert {"[p0] ready", "[p0] second line", "[p0] stopping", "[p1] broken"} <= set(lines)
    assert "[p1] handler output on stdout" in lines


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
