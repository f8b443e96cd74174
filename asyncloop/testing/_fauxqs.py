"""fauxqs, a fast in-memory SQS emulator (npm ``fauxqs``), run as a Node subprocess on 127.0.0.1.

``with FauxqsServer() as server:`` (or ``async with``) installs fauxqs once into a cache
directory if needed (`ensure_fauxqs`), starts it on a free port bound to 127.0.0.1 only, and
stops it on exit. Point aioboto3 at `FauxqsServer.endpoint_url`. It needs Node >= 20 and npm;
`node_available` lets callers skip when they are missing.

fauxqs's CLI listens on every interface, so the server is started through the package's
`buildApp` export by ``fauxqs_launcher.mjs`` (next to this module).

What fauxqs 1.9.2 answers, checked through aioboto3 (aiobotocore 2.25, SQS JSON protocol).
SQS's JSON protocol is "query compatible": the error's ``x-amzn-query-error`` header makes
botocore's ``Error.Code`` the legacy query code and ``Error.QueryErrorCode`` the JSON one,
as real SQS does; the modeled exception class is named after the JSON code:

- A repeated batch entry Id (SendMessageBatch, DeleteMessageBatch,
  ChangeMessageVisibilityBatch): HTTP 400, ``BatchEntryIdsNotDistinct`` exception,
  ``Code = "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"``, ``Type = "Sender"``.
- More than 10 entries: HTTP 400, ``TooManyEntriesInBatchRequest`` exception,
  ``Code = "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"``.
- No entries: HTTP 400, ``EmptyBatchRequest`` (``AWS.SimpleQueueService.EmptyBatchRequest``).
- ReceiveMessage with ``MaxNumberOfMessages`` outside 1..10:
  ``AWS.SimpleQueueService.InvalidParameterValue``.
- A missing queue: ``QueueDoesNotExist`` exception,
  ``Code = "AWS.SimpleQueueService.NonExistentQueue"``.
- DeleteMessageBatch with an unknown or stale receipt handle succeeds for that entry (as SQS
  often does), so tests cannot rely on fauxqs to flag a stale handle.
- Queue URLs look like ``http://sqs.us-east-1.localhost:<port>/000000000000/<name>`` and are
  matched exactly as strings: use `endpoint_url` for connections, never the queue URL's host.
- Only the JSON protocol reaches SQS: a form-encoded (query protocol) request goes to SNS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Final

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._exceptions import AsyncloopError, ClosedError
from ._npm import npm_install

__all__ = (
    "FAUXQS_VERSION",
    "FauxqsError",
    "FauxqsServer",
    "default_cache_dir",
    "ensure_fauxqs",
    "node_available",
)

#: The newest fauxqs that runs on Node 20.
FAUXQS_VERSION: Final = "1.9.2"
MIN_NODE_MAJOR: Final = 20

_LAUNCHER: Final = Path(__file__).with_name("fauxqs_launcher.mjs")
_INSTALL_HINT: Final = (
    f"fauxqs needs Node.js >= {MIN_NODE_MAJOR} and npm on PATH. Install Node {MIN_NODE_MAJOR} "
    "LTS from https://nodejs.org/en/download (or `nvm install 20`, or your system's package "
    "manager, e.g. `apt-get install nodejs npm`), or skip these tests when "
    "`asyncloop.testing.node_available()` is False."
)


class FauxqsError(AsyncloopError):
    """fauxqs could not be installed or started (Node missing, npm failed, no answer)."""


def default_cache_dir() -> Path:
    """Where fauxqs is installed: ``$ASYNCLOOP_FAUXQS_DIR``, else ``~/.cache/asyncloop/fauxqs``."""
    configured = os.environ.get("ASYNCLOOP_FAUXQS_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "asyncloop" / "fauxqs"


def _node_major(node: str) -> int | None:
    try:
        completed = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.", completed.stdout.strip())
    return int(match.group(1)) if match else None


def node_available() -> bool:
    """True when ``node`` (>= 20) and ``npm`` are on PATH: fauxqs can be installed and run."""
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        return False
    major = _node_major(node)
    return major is not None and major >= MIN_NODE_MAJOR


def _installed_version(package_dir: Path) -> str | None:
    try:
        manifest = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    return version if isinstance(version, str) else None


def ensure_fauxqs(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Install fauxqs `FAUXQS_VERSION` into `cache_dir` unless it is there; return its package dir.

    `cache_dir` defaults to `default_cache_dir`. Runs
    ``npm install --no-audit --no-fund --save-exact --ignore-scripts fauxqs@1.9.2`` there
    (blocking, once, under `npm_install`'s lock). Raises `FauxqsError` when node or npm is
    missing or npm fails.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    package_dir = root / "node_modules" / "fauxqs"

    def write_manifest() -> None:
        manifest = root / "package.json"
        if not manifest.exists():
            # Without a package.json here, npm installs into the nearest parent that has one.
            manifest.write_text('{"private": true}\n', encoding="utf-8")

    npm_install(
        root,
        [
            "install",
            "--no-audit",
            "--no-fund",
            "--save-exact",
            "--ignore-scripts",
            "--loglevel=error",
            f"fauxqs@{FAUXQS_VERSION}",
        ],
        installed=lambda: _installed_version(package_dir) == FAUXQS_VERSION,
        error=FauxqsError,
        missing=_INSTALL_HINT,
        prepare=write_manifest,
    )
    installed = _installed_version(package_dir)
    if installed != FAUXQS_VERSION:
        raise FauxqsError(f"npm installed fauxqs {installed!r} in {root}, not {FAUXQS_VERSION}")
    return package_dir


class FauxqsServer:
    """fauxqs on 127.0.0.1 and a free port, for the life of a ``with`` or ``async with`` block.

    Entering installs fauxqs if needed (`ensure_fauxqs`, into `cache_dir`), starts
    ``node fauxqs_launcher.mjs``, waits for its port and for ``GET /health`` to answer, and
    sets `endpoint_url`. Exiting terminates the process (SIGTERM; the launcher closes the
    server), then kills it if it has not exited within `stop_timeout` seconds. The launcher
    also exits when its stdin closes, so a crashed parent does not leave it running.
    Raises `FauxqsError` if Node is missing or fauxqs does not answer within `start_timeout`.
    """

    def __init__(
        self,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self._cache_dir = cache_dir
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ClosedError("FauxqsServer is not running: use it as `with` or `async with`")
        return self._port

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; only while the server runs."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The Node process's id while it runs (to read its CPU time), else None."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Install if needed and start; blocking. Prefer the context managers."""
        if self._process is not None:
            raise RuntimeError("FauxqsServer is already running")
        node = shutil.which("node")
        if node is None:
            raise FauxqsError(_INSTALL_HINT)
        package_dir = ensure_fauxqs(self._cache_dir)
        # Kept open while node runs (its stderr, read only to explain a failed start).
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [node, str(_LAUNCHER), str(package_dir), "127.0.0.1", "0"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
            self._port = self._read_port(self._process)
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _read_port(self, process: subprocess.Popen[bytes]) -> int:
        assert process.stdout is not None
        stdout = process.stdout
        lines: list[bytes] = []
        # A thread, not select(): it works on every platform's pipes.
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self._start_timeout)
        if reader.is_alive():
            process.kill()
            reader.join()
            raise FauxqsError(
                f"fauxqs did not report its port within {self._start_timeout} s"
                f"{self._stderr_tail()}"
            )
        try:
            port = json.loads(lines[0])["port"]
        except (IndexError, ValueError, KeyError, TypeError) as exc:
            raise FauxqsError(
                f"fauxqs exited before listening (exit code {process.poll()}){self._stderr_tail()}"
            ) from exc
        if not isinstance(port, int):
            raise FauxqsError(f"fauxqs reported a bad port: {lines[0]!r}")
        return port

    def _wait_healthy(self) -> None:
        # The launcher reports its port after listen() resolved, so one answer is expected;
        # the HTTP check proves the process we talk to is fauxqs. No proxies for 127.0.0.1.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.endpoint_url}/health", timeout=self._start_timeout) as answer:
                status = answer.status
                body = answer.read()
        except (OSError, urllib.error.URLError) as exc:
            raise FauxqsError(
                f"fauxqs at {self.endpoint_url} did not answer /health: {exc}{self._stderr_tail()}"
            ) from exc
        if status != 200 or b"ok" not in body:
            raise FauxqsError(f"fauxqs /health answered {status}: {body[:200]!r}")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return f"; its stderr:\n{text[-2000:]}" if text else ""

    def stop(self) -> None:
        """Terminate, then kill after `stop_timeout`; blocking and idempotent."""
        process, self._process = self._process, None
        self._port = None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(self._stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> FauxqsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FauxqsServer:
        await anyio.to_thread.run_sync(self.start)
        try:
            # A cancel that arrived while the thread started node is delivered here: stop it.
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.stop)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shielded: a cancelled test must still not leave node running.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)
