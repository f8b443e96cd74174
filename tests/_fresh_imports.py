"""What a fresh interpreter has imported after some statements: the import-cost tests' probe
(a cold start in Lambda pays for every module the entry points load)."""

from __future__ import annotations

import subprocess
import sys

__all__ = ("loaded_after",)

_PROBE = """
import sys
{statements}
prefixes = {prefixes!r}
print("\\n".join(sorted(
    m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in prefixes)
)))
"""


def loaded_after(statements: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules named `prefix` or `prefix.*`, for each of `prefixes`, that a new Python
    process has in ``sys.modules`` after running `statements`, sorted."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(statements=statements, prefixes=prefixes)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.split()
