"""asyncloop's benchmark suite: ``asyncloop bench`` (see bench/RESULTS.md for measured figures).

Layout (httpcore's scripts/benchmark, split by job):

- `_config`: `BenchConfig`, the parameters and per-target defaults; `LatencyModel`.
- `_workload`: the workload every contender runs (message bodies, the counting wrappers,
  the tracker that ends a run at its N-th success).
- `_targets/`: where the queue and function live, `make_target`: `base` (`Target`,
  `RunEnv`), `fake`, `http` (what moto, fauxqs and aws share), `moto`, `fauxqs`, `aws`,
  `calibration` (the SDK floor, the emulator's ceiling), `feeder` (keeps the queue's
  backlog), `child_server` (an emulator in a child process).
- `_baselines`: ``seed-sequential`` (a port of the seed's consumer.js) and ``naive-gather``.
- `_runner`: warm-up, calibration, the interleaved repeats, the HTTP check.
- `_measure`: one measured run (`RunResult`): its clock, CPU, calls and peak RSS.
- `_summary`: the results document: runs summarised per setting, the recommendation record.
- `_provenance`: the machine, the versions and the checkout's commit.
- `_progress`: the progress bar on stderr.
- `_report`: the outputs, results.json (`results.schema.json`), plot.png and report.md, and
  reading results back.
- `_tables`: the short table (the terminal's) and the full one (report.md's), with notes.
- `_plot`: plot.png, msgs/s and p99 against max in flight.
- `_compare`: ``--compare A.json B.json``.
- `_format`: the tables' cells.
- `_server_process`: runs moto or the local Lambda endpoint in a child process.
- `_latency_profiles`: the latency profiles (``--profile``: aws-like, zero).
- `_recommend`: the recommendation rule and the ceilings that bound a setting.
- `_profile`: cProfile of one consumer run (``python -m asyncloop._bench._profile``).

The repository's ``bench/`` holds the published results (RESULTS.md), the microbenchmarks
(``bench/micro``) and the reliability scenario (``bench/reliability.py``).
"""

from ._compare import compare as compare
from ._config import BenchConfig as BenchConfig
from ._config import BenchError as BenchError
from ._config import LatencyModel as LatencyModel
from ._config import Setting as Setting
from ._report import validate as validate
from ._report import write_outputs as write_outputs
from ._runner import run_bench as run_bench
from ._summary import SCHEMA_VERSION as SCHEMA_VERSION
from ._tables import format_table as format_table

__all__ = (
    "SCHEMA_VERSION",
    "BenchConfig",
    "BenchError",
    "LatencyModel",
    "Setting",
    "compare",
    "format_table",
    "run_bench",
    "validate",
    "write_outputs",
)
