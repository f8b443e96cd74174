"""One measured run: one contender (the asyncloop consumer at one setting, or a baseline)
consuming N messages from a fresh queue on the target.

Its clock starts when the feeder starts and stops at the N-th successful dispatch (the final
flush of deletes is counted in CPU, not in time), the same for every contender. Measured:

- msgs/s: N / time to the N-th success;
- latency: receive to done and send (``SentTimestamp``) to done;
- API calls by operation, counted outside the contender (`CountingQueue`,
  `TrackingDispatcher`); the feeder's SendMessageBatch and the worker's deletes apart;
- CPU: the event loop thread's (`time.thread_time`: the contender, aioboto3, aiohttp) and the
  process's (`time.process_time`: adds the feeder thread); the emulator's own CPU from
  /proc for the child-process servers (moto, fauxqs, the Lambda endpoint); for the
  node-sqs-consumer baseline the contender's CPU is its Node process's (added to the process's);
- peak RSS: the process's high-water mark for this run (Linux: reset through
  /proc/self/clear_refs before the run, read from VmHWM after; elsewhere
  ``resource.getrusage``'s lifetime peak).

On the HTTP targets the consumer runs on its setting's transport (the run's queue and
dispatcher come from `asyncloop.open_consumer`, see `asyncloop._bench._targets.http`); the
Python baselines on aiobotocore (`BASELINE_TRANSPORT`).

A run in which nothing succeeds for `BenchConfig.stall_timeout_s` fails with `BenchError`; one
that outlasts its time limit is stopped and reported incomplete.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final

import anyio

from asyncloop import Consumer, ConsumerConfig, Stats

from ._baselines import BASELINE_RUNNERS
from ._config import BenchConfig, BenchError, Setting
from ._node_baseline import node_consumer_for
from ._targets import BASELINE_TRANSPORT, Target
from ._workload import Tracker

__all__ = ("CONTENDER", "RunResult", "measure")

CONTENDER: Final = "asyncloop"


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


async def measure(
    target: Target,
    config: BenchConfig,
    contender: str,
    setting: Setting | None,
    n: int,
    repeat: int,
) -> RunResult:
    tracker = Tracker(n)
    wait = config.wait_time_seconds if config.wait_time_seconds is not None else 1
    consumer_config: ConsumerConfig | None = None
    transport = BASELINE_TRANSPORT
    if contender == CONTENDER:
        assert setting is not None
        transport = setting.transport
        consumer_config = ConsumerConfig(
            receivers=setting.receivers,
            max_in_flight=setting.max_in_flight,
            prefetch=setting.prefetch,
            batch_size=setting.batch_size,
            wait_time_seconds=wait,
            delete_by=config.delete_by,
            # Past the N-th success nothing is in flight: a receive still long-polling an
            # empty queue need not be waited for (untimed).
            shutdown_grace=0.25,
        )
    async with (
        target.run_env(n, tracker, transport=transport, consumer=consumer_config) as env,
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
                if consumer_config is not None:
                    consumer = Consumer(
                        queue=env.queue, dispatcher=env.dispatcher, config=consumer_config
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
