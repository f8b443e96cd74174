"""`python -m bench.saturation` end to end with tiny settings: it runs, drains every run's
queue through `asyncloop run` on both transports and prints the table and the ratios.

Its figures are not checked (the machines are shared); that it still runs against the code it
measures is: a rename inside the benchmark broke it once without a test noticing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asyncloop.testing import node_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not node_available(), reason="fauxqs needs Node.js >= 20 and npm"),
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_saturation_runs_both_transports_and_prefetches_and_prints_their_ratios() -> None:
    # GIVEN the repository root on the path, as the module's docstring says to run it
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    # WHEN it runs 40 messages per run on both transports, without and with a prefetch, once
    result = subprocess.run(
        [sys.executable, "-m", "bench.saturation", "--messages", "40", "--repeats", "1",
         "--receivers", "2", "--max-in-flight", "8", "--prefetch", "0,4", "--invoke-ms", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=220, check=False,
    )  # fmt: skip
    # THEN it exits 0 with one row per transport and the lean/sdk ratios
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert any(row.startswith("| sdk P1 ") for row in rows), result.stdout
    assert any(row.startswith("| lean P1 ") for row in rows), result.stdout
    assert "msgs/s lean P1 / sdk P1" in result.stdout
    assert "CPU/msg sdk P1 / lean P1" in result.stdout
    # ... and the prefetch's rows, its ratio, and the fraction of C/L the invokes allow
    assert any(row.startswith("| lean P1 prefetch 4 ") for row in rows), result.stdout
    assert "msgs/s lean P1 prefetch 4 / lean P1:" in result.stdout
    assert "| of C/L |" in result.stdout
