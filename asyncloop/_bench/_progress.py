"""`Progress`: the bench's progress bar on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ("Progress",)


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
