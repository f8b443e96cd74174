"""The runner: warm up, calibrate, then every contender once per repeat, and the summary.

One run = one contender (the asyncloop consumer at one setting, or a baseline) consuming N
messages from a fresh queue on the target. Its clock starts when the feeder starts and stops
at the N-th successful dispatch (the final flush of deletes is counted in CPU, not in time),
the same for every contender. Repeats are interleaved (repeat 1 of every contender, then
repeat 2...), so a neighbour's load on this shared machine falls on all of them alike.

On the fake target without ``--messages``, each run is sized to last about `run_seconds` at
the rate its setting's ceilings predict (`_messages`), so a sweep from C=1 to C=256 under
AWS-like latencies takes seconds per point, not minutes. With `http_check` (the default
command), the sweep's settings are then run on moto too, where moto's calibrated ceiling
leaves room; the others are reported as emulator-bound, not measured.

After the sweep, `asyncloop._bench._recommend.recommend` picks the smallest setting within 5% of
the best throughput and names the ceiling that bounds it.

Measured per run:
- msgs/s: N / time to the N-th success;
- latency: receive to done and send (``SentTimestamp``) to done, merged over repeats;
- API calls by operation, counted outside the contender (`CountingQueue`,
  `TrackingDispatcher`); the feeder's SendMessageBatch and the worker's deletes apart;
- CPU: the event loop thread's (`time.thread_time`: the contender, aioboto3, aiohttp) and the
  process's (`time.process_time`: adds the feeder thread); the emulator's own CPU from
  /proc for the child-process servers (moto, fauxqs, the Lambda endpoint); for the
  node-sqs-consumer baseline the contender's CPU is its Node process's (added to the process's);
- peak RSS: the process's high-water mark for this run (Linux: reset through
  /proc/self/clear_refs before the run, read from VmHWM after; elsewhere
  ``resource.getrusage``'s lifetime peak).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import anyio

from asyncloop import Consumer, ConsumerConfig, LatencyHistogram, Stats

from ._baselines import BASELINE_RUNNERS
from ._config import BenchConfig, BenchError, Setting
from ._node_baseline import (
    NODE_BASELINE,
    baseline_label,
    baseline_setting,
    node_consumer_for,
    node_versions,
    unavailable_reason,
)
from ._recommend import Point, binding, ceilings, recommend
from ._targets import FakeTarget, Target, make_target, moto_missing
from ._workload import BODY_BYTES, Tracker

__all__ = ("SCHEMA_VERSION", "Progress", "RunResult", "run_bench")

SCHEMA_VERSION: Final = 2
CONTENDER: Final = "asyncloop"
# Operations that are the contender's own SQS calls (not the feeder's, not the worker's).
SQS_OPERATIONS: Final = (
    "ReceiveMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibilityBatch",
    # node-sqs-consumer's: one call per message.
    "DeleteMessage",
    "ChangeMessageVisibility",
)
# The baselines' concurrency, for their Little's-law ceiling.
_BASELINE_CONCURRENCY: Final = {"seed-sequential": 1, "naive-gather": 10}
# The fake target's CPU-ceiling calibration: a zero-latency consumer at its fastest measured
# setting (R=4 C=256 beat R=8 and C=64/1024 here: more receivers cost more per message).
_CPU_CEILING_SETTING: Final = Setting(4, 256, 10)
# A run sized by time has at least this many messages: fewer make a noisy rate.
_MIN_SIZED_MESSAGES: Final = 50
# The HTTP check runs a setting on the emulator only if the fake measured it below this
# share of the emulator's ceiling: above it, the emulator, not the loop, would be measured.
HTTP_CHECK_SHARE: Final = 0.7
_HTTP_CHECK_MESSAGES: Final = (100, 400)


class Progress:
    """A plain progress bar on stderr: redrawn in place on a terminal, a line per step else."""

    def __init__(self, total: int, stream: TextIO | None = None, *, width: int = 30) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = time.monotonic()

    def step(self, label: str, detail: str = "") -> None:
        self.done = min(self.total, self.done + 1)
        filled = self.width * self.done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self._started
        line = f"[{bar}] {self.done}/{self.total} {elapsed:5.0f}s {label}"
        if detail:
            line += f": {detail}"
        if self._tty:
            self.stream.write("\r\x1b[K" + line[:160])
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if self._tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()


@dataclass
class RunResult:
    """One run of one contender."""

    contender: str
    setting: Setting | None
    repeat: int
    messages: int
    succeeded: int
    failed: int
    complete: bool
    duration_s: float
    total_s: float
    cpu_s: float
    process_cpu_s: float
    server_cpu_s: float | None
    peak_rss_bytes: int
    calls: dict[str, int]
    stats: Stats = field(repr=False)

    @property
    def msgs_s(self) -> float:
        return self.succeeded / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        per_k = 1000.0 / self.succeeded if self.succeeded else None
        return {
            "repeat": self.repeat,
            "messages": self.messages,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "complete": self.complete,
            "duration_s": round(self.duration_s, 6),
            "total_s": round(self.total_s, 6),
            "msgs_s": round(self.msgs_s, 3),
            "cpu_s": round(self.cpu_s, 6),
            "process_cpu_s": round(self.process_cpu_s, 6),
            "server_cpu_s": None if self.server_cpu_s is None else round(self.server_cpu_s, 6),
            "cpu_s_per_1k": None if per_k is None else round(self.cpu_s * per_k, 6),
            "peak_rss_bytes": self.peak_rss_bytes,
            "api_calls": dict(sorted(self.calls.items())),
            "consumer_api_calls": dict(sorted(self.stats.api_calls.items())),
            "deleted": self.stats.deleted,
            "released": self.stats.released,
        }


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def _peak_rss_bytes(reset_worked: bool) -> int:
    if reset_worked:
        try:
            with open("/proc/self/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024


async def _watchdog(
    tracker: Tracker, stall_s: float, scope: anyio.CancelScope, stalled: list[float]
) -> None:
    """Cancel `scope` when no message has succeeded for `stall_s` seconds."""
    now = anyio.current_time
    last, since = tracker.done, now()
    while True:
        await anyio.sleep(min(1.0, stall_s / 4))
        if tracker.done != last:
            last, since = tracker.done, now()
        elif now() - since > stall_s:
            stalled.append(now() - since)
            scope.cancel()
            return


def _run_timeout(config: BenchConfig, n: int) -> float:
    if config.run_timeout_s is not None:
        return config.run_timeout_s
    # Generous: a sequential loop at the invoke latency plus 20 ms a call, three times over.
    return max(120.0, 3.0 * n * (config.invoke_model().mean_s + 0.02))


async def _measure(
    target: Target,
    config: BenchConfig,
    contender: str,
    setting: Setting | None,
    n: int,
    repeat: int,
) -> RunResult:
    tracker = Tracker(n)
    wait = config.wait_time_seconds if config.wait_time_seconds is not None else 1
    async with (
        target.run_env(n, tracker) as env,
        node_consumer_for(contender, env, setting, config, n) as node,
    ):
        loop = asyncio.get_running_loop()
        gc.collect()
        reset = _reset_peak_rss()
        server0 = env.server_cpu()
        cpu0, process0 = time.thread_time(), time.process_time()
        started = loop.time()
        env.start_feeding()
        stalled: list[float] = []
        with anyio.move_on_after(_run_timeout(config, n)) as limit:
            async with anyio.create_task_group() as guard:
                guard.start_soon(_watchdog, tracker, config.stall_timeout_s, limit, stalled)
                if contender == CONTENDER:
                    assert setting is not None
                    consumer = Consumer(
                        queue=env.queue,
                        dispatcher=env.dispatcher,
                        config=ConsumerConfig(
                            receivers=setting.receivers,
                            max_in_flight=setting.max_in_flight,
                            batch_size=setting.batch_size,
                            wait_time_seconds=wait,
                            delete_by=config.delete_by,
                            # Past the N-th success nothing is in flight: a receive still
                            # long-polling an empty queue need not be waited for (untimed).
                            shutdown_grace=0.25,
                        ),
                    )
                    stats = consumer.stats

                    async def stop_when_finished() -> None:
                        await tracker.finished.wait()
                        consumer.stop()

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(stop_when_finished)
                        await consumer.run()
                        tg.cancel_scope.cancel()
                elif node is not None:
                    stats = Stats()
                    await node.run(tracker=tracker, stats=stats)
                else:
                    stats = Stats()
                    await BASELINE_RUNNERS[contender](
                        queue=env.queue,
                        dispatcher=env.dispatcher,
                        tracker=tracker,
                        delete_by=config.delete_by,
                        wait_time_seconds=wait,
                        stats=stats,
                    )
                guard.cancel_scope.cancel()
        ended = loop.time()
        cpu1, process1 = time.thread_time(), time.process_time()
        server1 = env.server_cpu()
        rss = _peak_rss_bytes(reset)
        if env.feeder_error:
            raise BenchError(f"the feeder failed: {env.feeder_error[0]!r}")
        if stalled:
            raise BenchError(
                f"{contender}: no message succeeded for {config.stall_timeout_s:g} s "
                f"({tracker.done} of {n} done): is the target still answering?"
            )
    finished = tracker.finished_at
    complete = finished is not None and tracker.done >= n
    return RunResult(
        contender=contender,
        setting=setting,
        repeat=repeat,
        messages=n,
        succeeded=tracker.done,
        failed=stats.failed,
        complete=complete,
        duration_s=(finished if complete and finished is not None else ended) - started,
        total_s=ended - started,
        # The node baseline's CPU is its Node process's; the bench's own is in process_cpu_s.
        cpu_s=cpu1 - cpu0 if node is None or node.cpu_s is None else node.cpu_s,
        process_cpu_s=process1 - process0 + (0.0 if node is None else node.cpu_s or 0.0),
        server_cpu_s=None if server0 is None or server1 is None else server1 - server0,
        peak_rss_bytes=rss,
        calls=dict(tracker.calls),
        stats=stats,
    )


def _versions(target: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (
        "asyncloop",
        "aioboto3",
        "aiobotocore",
        "botocore",
        "boto3",
        "aiohttp",
        "anyio",
        "moto",
        "matplotlib",
    ):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["asyncloop_git"] = _git_state()
    if target == "fauxqs":
        from asyncloop.testing import FAUXQS_VERSION

        out["fauxqs"] = FAUXQS_VERSION
        out.update(node_versions())
        node = shutil.which("node")
        if node:
            try:
                out["node"] = (
                    subprocess.run(
                        [node, "--version"], capture_output=True, text=True, timeout=10, check=False
                    ).stdout.strip()
                    or None
                )
            except (OSError, subprocess.SubprocessError):
                out["node"] = None
    return out


# The directory holding the asyncloop package: the repository root in a checkout.
_CHECKOUT_ROOT: Final = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _git_state(root: str = _CHECKOUT_ROOT) -> str | None:
    """``<commit>`` or ``<commit>+dirty`` of the asyncloop checkout at `root`, when it is one.

    None for an installed wheel (no ``.git`` beside the package) or without git. ``.git`` is a
    directory in a clone and a file (``gitdir: ...``) in a ``git worktree``: either counts.
    """
    git = shutil.which("git")
    if git is None or not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        head = subprocess.run(
            [git, "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--", "asyncloop", "bench"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def _machine() -> dict[str, Any]:
    cpu_model = platform.processor() or None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory,
        "python_implementation": platform.python_implementation(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _merge(histograms: list[LatencyHistogram]) -> dict[str, float | None]:
    merged = LatencyHistogram()
    for histogram in histograms:
        if histogram.count:
            merged.merge(histogram)
    return merged.summary_ms()


def _summarise(
    runs: list[RunResult],
    *,
    concurrency: int,
    invoke_latency_s: float,
    cpu_ceiling: float | None,
    emulator_ceiling: float | None,
    receivers_ceiling: float | None = None,
) -> dict[str, Any]:
    rates = [run.msgs_s for run in runs]
    succeeded = sum(run.succeeded for run in runs)
    calls: Counter[str] = Counter()
    for run in runs:
        calls.update(run.calls)
    per_message = (
        {op: round(n / succeeded, 4) for op, n in sorted(calls.items())} if succeeded else {}
    )
    sqs = sum(calls[op] for op in SQS_OPERATIONS)
    # Every request the target served, the feeder's and the worker's included.
    requests = [sum(run.calls.values()) / run.duration_s for run in runs if run.duration_s > 0]

    def per_1k(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return round(statistics.median(known), 6) if known else None

    median = statistics.median(rates)
    little: dict[str, Any] | None = None
    c_over_l = concurrency / invoke_latency_s if invoke_latency_s > 0 else None
    bounds = [
        b for b in (c_over_l, receivers_ceiling, cpu_ceiling, emulator_ceiling) if b is not None
    ]
    if bounds:
        ceiling = min(bounds)
        little = {
            "concurrency": concurrency,
            "latency_s": round(invoke_latency_s, 6),
            "c_over_l": None if c_over_l is None else round(c_over_l, 3),
            "receivers_ceiling_msgs_s": (
                None if receivers_ceiling is None else round(receivers_ceiling, 3)
            ),
            "cpu_ceiling_msgs_s": None if cpu_ceiling is None else round(cpu_ceiling, 3),
            "emulator_ceiling_msgs_s": (
                None if emulator_ceiling is None else round(emulator_ceiling, 3)
            ),
            "ceiling_msgs_s": round(ceiling, 3),
            "efficiency": round(median / ceiling, 4),
        }
    return {
        "repeats": len(runs),
        "complete": all(run.complete for run in runs),
        "msgs_s": {
            "median": round(median, 3),
            "min": round(min(rates), 3),
            "max": round(max(rates), 3),
        },
        "latency_ms": {
            "receive_to_done": _merge([run.stats.receive_to_done for run in runs]),
            "send_to_done": _merge([run.stats.send_to_done for run in runs]),
        },
        "api_calls_per_message": per_message,
        "sqs_calls_per_message": round(sqs / succeeded, 4) if succeeded else None,
        "cpu_s_per_1k": per_1k(
            [1000 * r.cpu_s / r.succeeded if r.succeeded else None for r in runs]
        ),
        "process_cpu_s_per_1k": per_1k(
            [1000 * r.process_cpu_s / r.succeeded if r.succeeded else None for r in runs]
        ),
        "server_cpu_s_per_1k": per_1k(
            [
                1000 * r.server_cpu_s / r.succeeded
                if r.succeeded and r.server_cpu_s is not None
                else None
                for r in runs
            ]
        ),
        "server_requests_s": round(statistics.median(requests), 3) if requests else None,
        "peak_rss_mb": round(max(run.peak_rss_bytes for run in runs) / 2**20, 2),
        "littles_law": little,
        "emulator_ceiling_ratio": (
            round(median / emulator_ceiling, 4) if emulator_ceiling else None
        ),
        "ratio_to": {},
        "of_best": None,
        "bound": None,
    }


async def _fake_cpu_ceiling(config: BenchConfig, progress: Progress | None) -> dict[str, Any]:
    """The loop's own ceiling on the fake target: a zero-latency consumer, median of 3."""
    zero = replace(
        config,
        profile="zero",
        latency=None,
        invoke_latency=None,
        worker_ms=None,
        delete_by="consumer",
        backlog=max(config.backlog or 0, 2 * _CPU_CEILING_SETTING.max_in_flight),
    )
    target = FakeTarget(zero)
    n = 5_000 if config.sized_by_time else min(max(config.n, 5_000), 50_000)
    rates = []
    cpu = []
    for repeat in range(3):
        run = await _measure(target, zero, CONTENDER, _CPU_CEILING_SETTING, n, repeat)
        rates.append(run.msgs_s)
        cpu.append(1e6 * run.cpu_s / max(1, run.succeeded))
    if progress is not None:
        progress.step("calibration", f"fake CPU ceiling {statistics.median(rates):,.0f} msgs/s")
    return {
        "cpu_ceiling": {
            "setting": _CPU_CEILING_SETTING.label,
            "messages": n,
            "msgs_s": round(statistics.median(rates), 1),
            "cpu_us_per_message": round(statistics.median(cpu), 2),
        }
    }


def _predicted_msgs_s(
    config: BenchConfig, contender: str, setting: Setting | None, cpu_ceiling: float | None
) -> float | None:
    """The rate the ceilings predict for a contender (None: nothing bounds it)."""
    profile = config.latency_profile()
    invoke, receive, delete = (
        config.invoke_model().mean_s,
        profile.receive.mean_s,
        profile.delete.mean_s,
    )
    if setting is not None:
        bounds = ceilings(
            setting, hold_s=receive + invoke, receive_s=receive, cpu_msgs_s=cpu_ceiling
        )
        found = binding(bounds)
        return None if found is None else found[1]
    # The baselines: a batch of 10 per round of receive, invokes (in turn or gathered), delete.
    # Another baseline is sized as a gathering one: a guess, but never the whole cap of
    # messages at a sequential rate.
    per_batch = {
        "seed-sequential": receive + 10 * invoke + delete,
        "naive-gather": receive + invoke + delete,
    }.get(contender, receive + invoke + delete)
    rates = [r for r in (cpu_ceiling, 10 / per_batch if per_batch else None) if r]
    return min(rates) if rates else None


def _messages(config: BenchConfig, predicted: float | None) -> int:
    """Messages for one run: fixed, or sized to last about `run_seconds` (see the module)."""
    if not config.sized_by_time or predicted is None:
        return config.n
    return int(min(config.n, max(_MIN_SIZED_MESSAGES, predicted * config.run_seconds)))


async def run_bench(
    config: BenchConfig,
    *,
    progress_stream: TextIO | None = None,
    argv: list[str] | None = None,
    on_target: Callable[[Target], None] | None = None,
) -> dict[str, Any]:
    """Run the whole benchmark described by `config`; return the results document."""
    config = config.resolved()
    missing = moto_missing(config)
    if missing is not None:
        raise BenchError(missing)
    settings = config.settings()
    skipped = unavailable_reason(config) if NODE_BASELINE in (config.baselines or ()) else None
    if skipped is not None:
        config = replace(
            config, baselines=tuple(b for b in config.baselines or () if b != NODE_BASELINE)
        )
    contenders: list[tuple[str, Setting | None]] = [(CONTENDER, s) for s in settings]
    contenders += [
        (name, baseline_setting(config) if name == NODE_BASELINE else None)
        for name in config.baselines or ()
    ]
    steps = 1 + len(contenders) * config.repeats + (1 if config.calibrate else 0)
    if config.http_check:
        steps += 2 + len(settings)
    progress = Progress(steps, progress_stream)
    if skipped is not None:
        progress.note(f"skipping the {NODE_BASELINE} baseline: {skipped}")
    machine = _machine()
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    runs: list[RunResult] = []
    calibration: dict[str, Any] = {}
    target = make_target(config)
    if on_target is not None:
        on_target(target)
    async with target:
        # Warm-up: imports, connection pools, moto's first-request costs. Not recorded. At
        # the widest setting: the fastest, so it costs the least time.
        widest = max(settings, key=lambda s: (s.max_in_flight, s.receivers))
        warm_n = max(1, min(config.n, config.warmup_messages))
        await _measure(target, config, CONTENDER, widest, warm_n, -1)
        progress.step("warm-up", f"{warm_n} messages")
        if config.calibrate:
            if config.target == "fake":
                calibration = await _fake_cpu_ceiling(config, progress)
            else:
                calibration = await target.calibrate()
                progress.step("calibration", _describe_calibration(calibration))
        cpu_ceiling = _cpu_ceiling(config, calibration)
        sizes = {
            (contender, setting): _messages(
                config, _predicted_msgs_s(config, contender, setting, cpu_ceiling)
            )
            for contender, setting in contenders
        }
        for repeat in range(config.repeats):
            for contender, setting in contenders:
                n = sizes[(contender, setting)]
                run = await _measure(target, config, contender, setting, n, repeat)
                runs.append(run)
                label = setting.label if setting is not None else contender
                state = "" if run.complete else " (INCOMPLETE)"
                progress.step(
                    f"{contender} {label if setting else ''}".strip(),
                    f"{run.msgs_s:,.0f} msgs/s{state} (repeat {repeat + 1}/{config.repeats})",
                )
        description = target.describe()
    check: dict[str, Any] | None = None
    if config.http_check:
        check = await _http_check(config, runs, progress)
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return _document(config, runs, calibration, machine, description, created_at, argv, check)


async def _http_check(
    config: BenchConfig, fake_runs: list[RunResult], progress: Progress
) -> dict[str, Any]:
    """The sweep's settings on the HTTP target where its ceiling allows (see the module)."""
    check_config = replace(
        config,
        target=config.http_check or "moto",
        http_check=None,
        messages=_HTTP_CHECK_MESSAGES[1],
        baselines=(),
        repeats=1,
    ).resolved()
    by_setting: dict[Setting, list[float]] = {}
    for run in fake_runs:
        if run.contender == CONTENDER and run.setting is not None:
            by_setting.setdefault(run.setting, []).append(run.msgs_s)
    fake_rate = {s: statistics.median(r) for s, r in by_setting.items()}
    runs: list[RunResult] = []
    skipped: list[dict[str, Any]] = []
    target = make_target(check_config)
    async with target:
        first = min(fake_rate, key=lambda s: (s.max_in_flight, s.receivers))
        await _measure(target, check_config, CONTENDER, first, 50, -1)
        progress.step(f"{check_config.target} warm-up", "50 messages")
        calibration = await target.calibrate()
        progress.step(f"{check_config.target} calibration", _describe_calibration(calibration))
        emulator = calibration.get("emulator_ceiling") or {}
        ceiling = float(emulator.get("msgs_s") or 0.0)
        threshold = HTTP_CHECK_SHARE * ceiling
        low, high = _HTTP_CHECK_MESSAGES
        for setting in sorted(fake_rate, key=lambda s: (s.receivers, s.max_in_flight)):
            rate = fake_rate[setting]
            if rate > threshold:
                skipped.append({"label": setting.label, "fake_msgs_s": round(rate, 3)})
                progress.step(
                    f"{check_config.target} {setting.label}",
                    f"skipped: the fake's {rate:,.0f} msgs/s is above {threshold:,.0f}",
                )
                continue
            n = int(min(high, max(low, rate * config.run_seconds)))
            run = await _measure(target, check_config, CONTENDER, setting, n, 0)
            runs.append(run)
            progress.step(f"{check_config.target} {setting.label}", f"{run.msgs_s:,.0f} msgs/s")
        description = target.describe()
    results = _results(check_config, runs, calibration)
    for result in results:
        setting = Setting(**result["setting"])
        fake = fake_rate.get(setting)
        median = result["summary"]["msgs_s"]["median"]
        result["summary"]["ratio_to"] = {"fake": round(median / fake, 3) if fake else None}
    return {
        "target": description,
        "calibration": calibration,
        "threshold_msgs_s": round(threshold, 3),
        "results": results,
        "skipped": skipped,
    }


def _describe_calibration(calibration: dict[str, Any]) -> str:
    parts = []
    floor = calibration.get("sdk_floor")
    if floor:
        parts.append(f"SDK floor {floor['us_per_message']:.0f} us/msg")
    ceiling = calibration.get("emulator_ceiling")
    if ceiling:
        parts.append(f"emulator ceiling {ceiling['msgs_s']:,.0f} msgs/s")
    return ", ".join(parts) or "none"


def _cpu_ceiling(config: BenchConfig, calibration: dict[str, Any]) -> float | None:
    if "cpu_ceiling" in calibration:
        return float(calibration["cpu_ceiling"]["msgs_s"])
    floor = calibration.get("sdk_floor")
    if floor and floor.get("us_per_message"):
        return 1e6 / float(floor["us_per_message"])
    return None


def _document(
    config: BenchConfig,
    runs: list[RunResult],
    calibration: dict[str, Any],
    machine: dict[str, Any],
    target: dict[str, Any],
    created_at: str,
    argv: list[str] | None,
    check: dict[str, Any] | None = None,
) -> dict[str, Any]:
    latency_s = config.invoke_model().mean_s
    results = _results(config, runs, calibration)
    recommendation = _recommendation(config, results, calibration, check)
    return {
        "schema": "asyncloop-bench",
        "schema_version": SCHEMA_VERSION,
        "created_at": created_at,
        "command": argv,
        "machine": machine,
        "versions": _versions(config.target),
        "target": target,
        "parameters": {
            "target": config.target,
            "profile": config.latency_profile().to_dict(),
            "messages": config.n,
            "sized_by_time": config.sized_by_time,
            "run_seconds": config.run_seconds,
            "receivers": list(config.receivers or ()),
            "max_in_flight": list(config.max_in_flight or ()),
            "batch_size": list(config.batch_size or ()),
            "delete_by": config.delete_by,
            "invoke_latency_ms": str(config.invoke_model()),
            "invoke_latency_mean_s": round(latency_s, 6),
            "slot_latency_mean_s": round(latency_s + config.latency_profile().receive.mean_s, 6),
            "repeats": config.repeats,
            "baselines": list(config.baselines or ()),
            "http_check": config.http_check,
            "endpoint_url": config.endpoint_url,
            "region": config.region,
            "backlog": config.backlog,
            "wait_time_seconds": config.wait_time_seconds,
            "warmup_messages": config.warmup_messages,
            "body_bytes": BODY_BYTES,
            "invocation_type": config.invocation_type,
            "payload": "seed",
        },
        "calibration": calibration,
        "results": results,
        "recommendation": recommendation,
        "http_check": check,
    }


def _results(
    config: BenchConfig, runs: list[RunResult], calibration: dict[str, Any]
) -> list[dict[str, Any]]:
    """One entry per contender and setting: its summary (with ceilings) and its runs."""
    cpu_ceiling = _cpu_ceiling(config, calibration)
    emulator = calibration.get("emulator_ceiling")
    emulator_ceiling = float(emulator["msgs_s"]) if emulator else None
    receive_s = config.latency_profile().receive.mean_s
    # L of Little's law: a slot is held over the receive and the invoke (see _recommend).
    latency_s = receive_s + config.invoke_model().mean_s
    groups: dict[tuple[str, Setting | None], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.contender, run.setting), []).append(run)
    results: list[dict[str, Any]] = []
    for (contender, setting), group in groups.items():
        concurrency = (
            setting.max_in_flight if setting is not None else _BASELINE_CONCURRENCY[contender]
        )
        receivers_ceiling = (
            setting.receivers * setting.batch_size / receive_s
            if setting is not None and receive_s > 0
            else None
        )
        # The CPU ceiling is the Python SDK's (aioboto3's floor): not the Node process's.
        own_cpu_ceiling = None if contender == NODE_BASELINE else cpu_ceiling
        summary = _summarise(
            group,
            concurrency=concurrency,
            invoke_latency_s=latency_s,
            cpu_ceiling=own_cpu_ceiling,
            emulator_ceiling=emulator_ceiling,
            receivers_ceiling=receivers_ceiling,
        )
        if setting is not None:
            found = binding(
                ceilings(
                    setting,
                    hold_s=latency_s,
                    receive_s=receive_s,
                    cpu_msgs_s=own_cpu_ceiling,
                    emulator_msgs_s=emulator_ceiling,
                )
            )
            if found is not None:
                summary["bound"] = {"name": found[0], "msgs_s": round(found[1], 3)}
        results.append(
            {
                "contender": contender,
                "kind": "consumer" if contender == CONTENDER else "baseline",
                "label": (
                    contender
                    if setting is None
                    else setting.label
                    if contender == CONTENDER
                    else baseline_label(setting)
                ),
                "setting": None
                if setting is None
                else {
                    "receivers": setting.receivers,
                    "max_in_flight": setting.max_in_flight,
                    "batch_size": setting.batch_size,
                },
                "summary": summary,
                "runs": [run.to_dict() for run in group],
            }
        )
    baselines = {
        r["contender"]: r["summary"]["msgs_s"]["median"] for r in results if r["kind"] == "baseline"
    }
    for result in results:
        median = result["summary"]["msgs_s"]["median"]
        result["summary"]["ratio_to"] = {
            name: round(median / value, 3) if value else None for name, value in baselines.items()
        }
    best = max((r["summary"]["msgs_s"]["median"] for r in results), default=0.0)
    for result in results:
        median = result["summary"]["msgs_s"]["median"]
        result["summary"]["of_best"] = round(median / best, 4) if best else None
    return results


def _recommendation(
    config: BenchConfig,
    results: list[dict[str, Any]],
    calibration: dict[str, Any],
    check: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """The recommendation record: `asyncloop._bench._recommend.recommend` over the consumer's
    points."""
    points = {}
    for r in results:
        if r["kind"] != "consumer":
            continue
        point = Point(
            setting=Setting(**r["setting"]),
            msgs_s=r["summary"]["msgs_s"]["median"],
            p99_ms=r["summary"]["latency_ms"]["receive_to_done"]["p99"],
            complete=r["summary"]["complete"],
        )
        points[point.setting] = (point, r)
    chosen = recommend([point for point, _ in points.values()])
    if chosen is None:
        return None
    summary = points[chosen.point.setting][1]["summary"]
    sdk_ceiling = None
    floor = ((check or {}).get("calibration") or calibration).get("sdk_floor")
    if floor and floor.get("us_per_message"):
        sdk_ceiling = round(1e6 / float(floor["us_per_message"]), 1)
    emulator = ((check or {}).get("calibration") or calibration).get("emulator_ceiling")
    return {
        "rule": "the smallest setting (by max in flight, then receivers, then batch size) "
        f"whose median msgs/s is within {chosen.tolerance:.0%} of the best",
        "tolerance": chosen.tolerance,
        "label": chosen.point.setting.label,
        "setting": {
            "receivers": chosen.point.setting.receivers,
            "max_in_flight": chosen.point.setting.max_in_flight,
            "batch_size": chosen.point.setting.batch_size,
        },
        "msgs_s": chosen.point.msgs_s,
        "p99_ms": chosen.point.p99_ms,
        "best_label": chosen.best.setting.label,
        "best_msgs_s": chosen.best.msgs_s,
        "bound": summary["bound"],
        "sdk_cpu_ceiling_msgs_s": sdk_ceiling,
        "emulator_ceiling_msgs_s": None if not emulator else emulator.get("msgs_s"),
    }
