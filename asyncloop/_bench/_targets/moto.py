"""The moto target: moto's server in a child process (`ChildServer`; Lambda without Docker)
behind a latency-injecting `asyncloop.testing.FaultProxy` in the same child, which holds each
request for the profile's figure for its operation; reached over real HTTP with aioboto3. A
child, not a thread: moto's CPU (and its GIL) stay out of the bench's measurements."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.to_thread

from .._config import BenchConfig
from .child_server import ChildServer
from .http import HttpTarget

__all__ = ("MotoTarget",)


class MotoTarget(HttpTarget):
    name = "moto"

    def __init__(self, config: BenchConfig) -> None:
        super().__init__(config)
        self._server = ChildServer("moto", [])
        self._proxy: ChildServer | None = None

    async def _start(self) -> None:
        self._use_fake_credentials()
        self._stack.callback(self._server.stop)
        await anyio.to_thread.run_sync(self._server.start)
        latencies = self.config.latency_profile().proxy_latencies(self.config.invocation_type)
        proxy = self._proxy = ChildServer(
            "proxy", [self._server.endpoint_url, json.dumps(latencies)]
        )
        self._stack.callback(proxy.stop)
        await anyio.to_thread.run_sync(proxy.start)
        self.sqs_endpoint = self.lambda_endpoint = proxy.endpoint_url
        for pid in (self._server.pid, proxy.pid):
            if pid is not None:
                self._server_pids.append(pid)

    async def _setup(self) -> None:
        await self._create_function(wait_for_role=0)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "server": "moto (child process, Lambda without Docker) behind a latency proxy "
            "(its own child process)",
            "profile": self.config.latency_profile().name,
        }
