"""Runs one emulator in a child process, so its CPU is not the bench's:
``python _server_process.py KIND ARGS...``.

- ``moto``: asyncloop.testing.MotoServer (SQS, Lambda without Docker, IAM).
- ``lambda LATENCY``: asyncloop.testing's LambdaServer, the local Invoke endpoint paired with
  fauxqs; LATENCY is each Invoke's. On uvloop when it is installed (the uvloop extra): it
  costs the endpoint 40% less CPU per Invoke, CPU the consumer under test then has.
- ``proxy UPSTREAM LATENCIES``: a latency-injecting `asyncloop.testing.FaultProxy` in front
  of UPSTREAM (moto or fauxqs). A process of its own: sharing moto's GIL, it would slow both.

LATENCIES is a JSON object, operation -> milliseconds (``"15"`` fixed or ``"15:60"``
p50:p99, lognormal), as `asyncloop._bench._latency_profiles.Profile.proxy_latencies` gives it;
LATENCY one such value. Everything binds 127.0.0.1 on a free port.

Prints one JSON line, ``{"endpoint_url": ..., "pid": ...}``, once it answers; stops when its
stdin closes (the parent exited or is done), so it never outlives the bench.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any


def _sampler(text: str, seed: int) -> Any:
    # Imported here so the parent's import of bench does not depend on this script.
    from asyncloop._bench._config import LatencyModel

    return LatencyModel.parse(text, flag="latency").sampler(seed=seed)


def _samplers(latencies_json: str) -> dict[str, Any]:
    latencies = json.loads(latencies_json)
    out = {}
    for index, (operation, text) in enumerate(sorted(latencies.items())):
        sampler = _sampler(text, os.getpid() * 16 + index)
        if sampler:
            out[operation] = sampler
    return out


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: closed.set() if not os.read(0, 4096) else None)
    await closed.wait()


async def _serve_proxy(upstream: str, latencies_json: str) -> None:
    from asyncloop.testing import FaultProxy

    async with FaultProxy(upstream, latency=_samplers(latencies_json)) as proxy:
        print(json.dumps({"endpoint_url": proxy.endpoint_url, "pid": os.getpid()}), flush=True)
        await _until_stdin_closes()


def _serve_moto() -> None:
    from asyncloop.testing import MotoServer

    with MotoServer() as server:
        print(json.dumps({"endpoint_url": server.endpoint_url, "pid": os.getpid()}), flush=True)
        sys.stdin.read()


async def _serve_lambda(latency_text: str) -> None:
    from asyncloop.testing import LambdaServer

    latency = _sampler(latency_text, os.getpid())
    async with LambdaServer(latency=latency, functions=["asyncloop-bench"]) as server:
        print(json.dumps({"endpoint_url": server.endpoint_url, "pid": os.getpid()}), flush=True)
        await _until_stdin_closes()


def _fastest_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str]) -> int:
    usage = "usage: _server_process.py moto | lambda LATENCY | proxy UPSTREAM LATENCIES"
    if not argv or argv[0] not in ("moto", "lambda", "proxy"):
        print(usage, file=sys.stderr)
        return 2
    kind, *args = argv
    if kind == "moto" and not args:
        _serve_moto()
    elif kind == "lambda" and len(args) == 1:
        with asyncio.Runner(loop_factory=_fastest_loop_factory()) as runner:
            runner.run(_serve_lambda(args[0]))
    elif kind == "proxy" and len(args) == 2:
        asyncio.run(_serve_proxy(args[0], args[1]))
    else:
        print(usage, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # Run as a script: make the directory holding this asyncloop package importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    sys.exit(main(sys.argv[1:]))
