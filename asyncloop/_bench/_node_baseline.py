"""The ``node-sqs-consumer`` baseline: the peer people already use, bbc/sqs-consumer on Node.

On the fauxqs target, beside seed-sequential and naive-gather, the bench runs
``asyncloop/_bench/node/consumer.mjs``: `instances` ``Consumer.create({queueUrl, batchSize: 10, sqs,
handleMessage})`` in one Node process, sharing one ``SQSClient`` and one ``LambdaClient``,
pointed at the endpoints the Python contenders use (`RunEnv.sqs_endpoint`: fauxqs behind the
latency proxy, which holds DeleteMessage as long as DeleteMessageBatch; `RunEnv.lambda_endpoint`:
the local Lambda endpoint with the profile's Invoke latency), each handler awaiting one
``InvokeCommand`` (the run's ``--invocation-type``, Event by default; a RequestResponse
``FunctionError`` fails the message) with the seed's payload, then returning the
message so sqs-consumer deletes it (one DeleteMessage per message, its only way with
``handleMessage``). ``--delete-by worker`` sets ``shouldDeleteMessages: false``.

Concurrency: sqs-consumer handles one received batch at a time per instance, its messages
concurrently, and its README scales by batch size and more instances. So for the sweep's
largest max-in-flight C the baseline runs ``instances = ceil(C / 10)`` instances of batch 10:
at most ``10 x instances`` invokes in flight, recorded as the setting ``R=instances
C=10 x instances B=10`` (R: one poll loop per instance). Both clients' sockets are sized to
that, as asyncloop sizes its pool, so neither waits for the SDK's default 50 sockets.

Measured as the other contenders are: the clock runs from the feeder's start to the N-th
accepted Invoke (Node reports its counts at most every 10 ms and at once at the N-th); the
process is spawned and its modules loaded before the clock starts, as the Python contenders'
imports happen before theirs. CPU (`NodeConsumer.cpu_s`) is the Node process's own, user +
system from its resource usage (``process.cpuUsage``, every thread) between "start" and the
end; API calls are counted in Node by operation.

The packages are pinned in ``asyncloop/_bench/node/package.json`` and ``package-lock.json``:
sqs-consumer 14.2.8 (the newest whose ``engines`` allows Node 20; 15.x needs Node 22) and AWS SDK v3
clients. `ensure_node_baseline` installs them once (``npm ci``) into a cache directory, under a
lock, with `asyncloop.testing.npm_install`, as `asyncloop.testing.ensure_fauxqs` installs
fauxqs. Without Node >= 20 and npm the baseline is skipped with a message
(`unavailable_reason`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread

from asyncloop import Stats
from asyncloop.testing import npm_install

from ._config import BenchConfig, BenchError, Setting
from ._workload import Tracker

if TYPE_CHECKING:
    from ._targets import RunEnv

__all__ = (
    "NODE_BASELINE",
    "NodeConsumer",
    "baseline_label",
    "baseline_setting",
    "default_cache_dir",
    "ensure_node_baseline",
    "node_consumer_for",
    "node_versions",
    "open_node_consumer",
    "unavailable_reason",
)

NODE_BASELINE: Final = "node-sqs-consumer"
# sqs-consumer's batchSize maximum (SQS's receive maximum), the batch its README scales with.
BATCH_SIZE: Final = 10

_SOURCE_DIR: Final = Path(__file__).with_name("node")
_SCRIPT: Final = "consumer.mjs"
_MANIFESTS: Final = ("package.json", "package-lock.json")
_STAMP: Final = ".installed"
# A done line carries every message's latency: far past asyncio's 64 KiB default line limit.
_LINE_LIMIT: Final = 1 << 28
_START_TIMEOUT: Final = 60.0


def default_cache_dir() -> Path:
    """``$ASYNCLOOP_NODE_BASELINE_DIR``, else ``~/.cache/asyncloop/node-baseline``."""
    configured = os.environ.get("ASYNCLOOP_NODE_BASELINE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "asyncloop" / "node-baseline"


def node_versions() -> dict[str, str]:
    """The pinned npm packages, name -> version, from ``asyncloop/_bench/node/package.json``."""
    manifest = json.loads((_SOURCE_DIR / "package.json").read_text(encoding="utf-8"))
    return {str(name): str(version) for name, version in manifest["dependencies"].items()}


def unavailable_reason(config: BenchConfig) -> str | None:
    """Why the node baseline cannot run with `config` (None: it can)."""
    from asyncloop.testing import node_available

    if config.target != "fauxqs":
        return f"it runs on the fauxqs target only, not {config.target}"
    if not node_available():
        return (
            "it needs Node.js >= 20 and npm on PATH (install Node 20 LTS: "
            "https://nodejs.org/en/download, `nvm install 20` or `apt-get install nodejs npm`)"
        )
    return None


def baseline_setting(config: BenchConfig) -> Setting:
    """ceil(C / 10) instances of batch 10 for the sweep's largest max-in-flight C."""
    assert config.max_in_flight, "call resolved() first"
    instances = math.ceil(max(config.max_in_flight) / BATCH_SIZE)
    return Setting(instances, instances * BATCH_SIZE, BATCH_SIZE)


def baseline_label(setting: Setting) -> str:
    """The row's label, ``node-sqs-consumer 26x10`` (instances x batch): not an asyncloop
    setting's ``R=.. C=.. B=..``, which the short table and --compare show alone."""
    return f"{NODE_BASELINE} {setting.receivers}x{setting.batch_size}"


def _manifest_digest() -> str:
    digest = hashlib.sha256()
    for name in _MANIFESTS:
        digest.update((_SOURCE_DIR / name).read_bytes())
    return digest.hexdigest()


def _installed(root: Path, digest: str) -> bool:
    try:
        return (root / _STAMP).read_text(encoding="ascii").strip() == digest and (
            root / "node_modules" / "sqs-consumer" / "package.json"
        ).is_file()
    except OSError:
        return False


def _copy_script(root: Path) -> Path:
    # ESM resolves "sqs-consumer" next to the importing file: the script runs from the cache.
    source = (_SOURCE_DIR / _SCRIPT).read_bytes()
    target = root / _SCRIPT
    with contextlib.suppress(OSError):
        if target.read_bytes() == source:
            return target
    partial = root / f".{_SCRIPT}.{os.getpid()}"
    partial.write_bytes(source)
    partial.replace(target)
    return target


def ensure_node_baseline(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Install the pinned packages into `cache_dir` unless they are there; return the script.

    `cache_dir` defaults to `default_cache_dir`. Copies ``package.json`` and
    ``package-lock.json`` there and runs ``npm ci --ignore-scripts`` (blocking, once per
    change of the two files, which a stamp file records). Raises `BenchError` when npm is
    missing or fails.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    digest = _manifest_digest()

    def copy_manifests() -> None:
        for name in _MANIFESTS:
            shutil.copyfile(_SOURCE_DIR / name, root / name)
        (root / _STAMP).unlink(missing_ok=True)

    def write_stamp() -> None:
        (root / _STAMP).write_text(digest + "\n", encoding="ascii")

    npm_install(
        root,
        ["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        installed=lambda: _installed(root, digest),
        error=BenchError,
        missing=f"the {NODE_BASELINE} baseline needs Node.js >= 20 and npm",
        prepare=copy_manifests,
        finish=write_stamp,
    )
    return _copy_script(root)


class NodeConsumer:
    """One run's Node process: spawned and ready (not yet consuming) by `open_node_consumer`.

    `run` starts its consumers, feeds `tracker` from its progress lines until it reports done,
    and fills `stats`; afterwards `cpu_s` is the process's CPU seconds for the run and
    `calls` its API calls by operation.
    """

    def __init__(
        self, process: asyncio.subprocess.Process, stderr: IO[bytes], setting: Setting
    ) -> None:
        self.process = process
        self.setting = setting
        self.cpu_s: float | None = None
        self.calls: dict[str, int] = {}
        self._stderr = stderr

    async def _line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await self.process.stdout.readline()
        if not raw:
            code = await self.process.wait()
            raise BenchError(f"{NODE_BASELINE} exited with {code}{self.stderr_tail()}")
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise BenchError(f"{NODE_BASELINE} printed {raw[:200]!r}") from exc
        if not isinstance(line, dict):
            raise BenchError(f"{NODE_BASELINE} printed {raw[:200]!r}")
        return line

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return f"; its stderr:\n{text[-2000:]}" if text else ""

    async def wait_ready(self) -> None:
        line = await self._line()
        if line.get("event") != "ready":
            raise BenchError(f"{NODE_BASELINE} did not start: {line}")

    async def run(self, *, tracker: Tracker, stats: Stats) -> Stats:
        """Consume until Node has invoked and deleted `tracker.target` messages."""
        loop = asyncio.get_running_loop()
        stats.started_at = loop.time()
        assert self.process.stdin is not None
        self.process.stdin.write(b"start\n")
        await self.process.stdin.drain()
        received = tracker.received
        try:
            while True:
                line = await self._line()
                # The feeder keeps `backlog` visible by `tracker.received`; the clock stops at
                # the tracker's N-th success: both follow Node's cumulative counts.
                tracker.received = received + int(line["received"])
                for _ in range(int(line["invoked"]) - tracker.done):
                    tracker.succeeded()
                if line["event"] == "done":
                    break
        finally:
            stats.stopped_at = loop.time()
        stats.received = int(line["received"])
        stats.dispatched = stats.succeeded = int(line["invoked"])
        stats.deleted = int(line["deleted"])
        stats.failed = int(line["errors"])
        for value in line["latencies_ms"]:
            stats.receive_to_done.record(float(value) / 1e3)
        for value in line["send_latencies_ms"]:
            stats.send_to_done.record(float(value) / 1e3)
        self.calls = {str(op): int(n) for op, n in line["calls"].items()}
        for op, n in self.calls.items():
            stats.count_call(op, n)
            tracker.calls[op] += n
        self.cpu_s = float(line["cpu_s"])
        return stats


@contextlib.asynccontextmanager
async def open_node_consumer(
    *,
    queue_url: str,
    sqs_endpoint: str,
    lambda_endpoint: str,
    function_name: str,
    region: str,
    setting: Setting,
    expected: int,
    delete_by: str,
    wait_time_seconds: int,
    invocation_type: str = "Event",
    cache_dir: str | os.PathLike[str] | None = None,
) -> AsyncIterator[NodeConsumer]:
    """A ready `NodeConsumer` for one run (installed first if needed); killed on exit.

    `setting.receivers` instances of batch `setting.batch_size` consume `expected` messages
    from `queue_url`, invoking `function_name` at `lambda_endpoint` with `invocation_type`
    (``Event`` or ``RequestResponse``)."""
    node = shutil.which("node")
    if node is None:
        raise BenchError(f"the {NODE_BASELINE} baseline needs Node.js >= 20 on PATH")
    script = await anyio.to_thread.run_sync(ensure_node_baseline, cache_dir)
    config = {
        "sqsEndpoint": sqs_endpoint,
        "lambdaEndpoint": lambda_endpoint,
        "queueUrl": queue_url,
        "functionName": function_name,
        "region": region,
        "instances": setting.receivers,
        "batchSize": setting.batch_size,
        "expected": expected,
        # sqs-consumer checks 1..20 (its message says 0..20): 0 would be refused.
        "waitTimeSeconds": max(1, wait_time_seconds),
        "deleteMessages": delete_by == "consumer",
        "invocationType": invocation_type,
    }
    with tempfile.TemporaryFile() as stderr:
        process = await asyncio.create_subprocess_exec(
            node,
            str(script),
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            limit=_LINE_LIMIT,
        )
        consumer = NodeConsumer(process, stderr, setting)
        try:
            with anyio.fail_after(_START_TIMEOUT):
                await consumer.wait_ready()
            yield consumer
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    # Closing stdin tells the script to exit; a kill if it does not.
                    if process.stdin is not None:
                        process.stdin.close()
                    with anyio.move_on_after(5):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()


@contextlib.asynccontextmanager
async def node_consumer_for(
    contender: str, env: RunEnv, setting: Setting | None, config: BenchConfig, n: int
) -> AsyncIterator[NodeConsumer | None]:
    """The runner's hook: a ready `NodeConsumer` for the node baseline's run, else None."""
    if contender != NODE_BASELINE:
        yield None
        return
    if setting is None or env.sqs_endpoint is None or env.lambda_endpoint is None:
        raise BenchError(f"{NODE_BASELINE}: {unavailable_reason(config) or 'no HTTP endpoints'}")
    async with open_node_consumer(
        queue_url=env.queue.queue_url,
        sqs_endpoint=env.sqs_endpoint,
        lambda_endpoint=env.lambda_endpoint,
        function_name=env.function_name or "",
        region=env.region or "us-east-1",
        setting=setting,
        expected=n,
        delete_by=config.delete_by,
        wait_time_seconds=config.wait_time_seconds or 1,
        invocation_type=config.invocation_type,
    ) as consumer:
        yield consumer
