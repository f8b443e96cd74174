"""`ChildServer`: an emulator (moto, the latency proxy, the local Lambda endpoint) run by
``asyncloop/_bench/_server_process.py`` in a child process, so its CPU is not the bench's."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Final

from .._config import BenchError

__all__ = ("ChildServer",)

_SERVER_SCRIPT: Final = Path(__file__).parent.with_name("_server_process.py")


class ChildServer:
    """`_server_process.py` in a child process: `start`, `endpoint_url`, `pid`, `stop`."""

    def __init__(self, kind: str, args: list[str], *, start_timeout: float = 60.0) -> None:
        self.kind = kind
        self.args = args
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint_url = ""
        self.pid: int | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(_SERVER_SCRIPT), self.kind, *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        stdout = self.process.stdout
        assert stdout is not None
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        try:
            announced = json.loads(lines[0])
            self.endpoint_url = str(announced["endpoint_url"])
            self.pid = int(announced["pid"])
        except (IndexError, ValueError, KeyError) as exc:
            self.stop()
            raise BenchError(f"the {self.kind} server did not start") from exc

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
