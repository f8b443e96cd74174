"""Runs one emulator in a child process, so its CPU is not the bench's: ``python _server_process.py
KIND LATENCY``.

KIND is ``moto`` (asyncloop.testing.MotoServer: SQS, Lambda without Docker, IAM; LATENCY is
added on moto's side of every Invoke, in moto's request thread) or ``lambda``
(asyncloop.testing's LambdaServer, the local Invoke endpoint paired with fauxqs). LATENCY is
milliseconds, ``50`` or ``50:200`` (p50:p99, lognormal). Both bind 127.0.0.1 on a free port.

Prints one JSON line, ``{"endpoint_url": ..., "pid": ...}``, once it answers; stops when its
stdin closes (the parent exited or is done), so it never outlives the bench.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any


def _sampler(text: str) -> Any:
    # Imported here so the parent's import of bench does not depend on this script.
    from bench._config import LatencyModel

    return LatencyModel.parse(text, flag="invoke latency").sampler(seed=os.getpid())


def _serve_moto(latency_text: str) -> None:
    from asyncloop.testing._moto import MotoServer

    latency = _sampler(latency_text)
    if latency:
        from moto.awslambda.responses import LambdaResponse

        original = LambdaResponse.invoke

        def invoke(self: Any) -> Any:
            # Sleeps in moto's request thread: a stand-in for a function's run time.
            time.sleep(latency() if callable(latency) else latency)
            return original(self)

        LambdaResponse.invoke = invoke  # type: ignore[method-assign]
    with MotoServer() as server:
        print(json.dumps({"endpoint_url": server.endpoint_url, "pid": os.getpid()}), flush=True)
        sys.stdin.read()


async def _serve_lambda(latency_text: str) -> None:
    from asyncloop.testing._lambda_server import LambdaServer

    latency = _sampler(latency_text)
    async with LambdaServer(latency=latency, functions=["asyncloop-bench"]) as server:
        print(json.dumps({"endpoint_url": server.endpoint_url, "pid": os.getpid()}), flush=True)
        loop = asyncio.get_running_loop()
        closed = asyncio.Event()
        loop.add_reader(sys.stdin.fileno(), lambda: closed.set() if not os.read(0, 4096) else None)
        await closed.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("moto", "lambda"):
        print("usage: _server_process.py moto|lambda LATENCY_MS", file=sys.stderr)
        return 2
    kind, latency = argv
    if kind == "moto":
        _serve_moto(latency)
    else:
        asyncio.run(_serve_lambda(latency))
    return 0


if __name__ == "__main__":
    # Run as a script: make the repository root (bench's parent) importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main(sys.argv[1:]))
