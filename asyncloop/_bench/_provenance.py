"""Where and with what a bench ran, for results.json: the machine, the package versions and
the checkout's commit."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
from typing import Any, Final

from ._node_baseline import node_versions

__all__ = ("git_state", "machine_facts", "versions")


def versions(target: str) -> dict[str, str | None]:
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
    out["asyncloop_git"] = git_state()
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


def git_state(root: str = _CHECKOUT_ROOT) -> str | None:
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


def machine_facts() -> dict[str, Any]:
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
