"""`npm_install`: npm packages installed once into a cache directory that parallel processes
share (test workers, the bench), as fauxqs and the bench's Node baseline are."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

__all__ = ("npm_install",)


@contextlib.contextmanager
def _install_lock(root: Path) -> Iterator[None]:
    # Parallel test workers share the cache: one installs, the others wait for it.
    with (root / ".install.lock").open("a+b") as lock_file:
        try:
            import fcntl
        except ImportError:  # Windows: no lock, npm's own locking has to do.
            yield
            return
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def npm_install(
    root: str | os.PathLike[str],
    args: Sequence[str],
    *,
    installed: Callable[[], bool],
    error: Callable[[str], Exception],
    missing: str,
    prepare: Callable[[], None] | None = None,
    finish: Callable[[], None] | None = None,
    timeout: float = 600.0,
) -> bool:
    """Run ``npm ARGS`` in `root` unless `installed()` says it is done; True if npm ran.

    `root` is created if needed. The install holds an exclusive lock on
    ``root/.install.lock``, so of several processes sharing `root` one installs and the others
    wait, then find `installed()` true. Under the lock, `prepare()` runs just before npm (copy
    the manifests, say) and `finish()` just after it succeeded (write a stamp). Without
    ``npm`` or ``node`` on PATH it raises ``error(missing)`` before creating anything; when
    npm cannot start, times out (`timeout` seconds) or fails, ``error(text)``, the text naming
    the command and the end of npm's stderr.
    """
    if installed():
        return False
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise error(missing)
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    with _install_lock(path):
        if installed():
            return False
        if prepare is not None:
            prepare()
        command = [npm, *args]
        try:
            completed = subprocess.run(
                command, cwd=path, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise error(f"`{' '.join(command)}` in {path} failed: {exc}") from exc
        if completed.returncode != 0:
            raise error(
                f"`{' '.join(command)}` in {path} exited with {completed.returncode}:\n"
                f"{completed.stderr.strip()[-2000:]}"
            )
        if finish is not None:
            finish()
    return True
