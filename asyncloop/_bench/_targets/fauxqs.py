"""The fauxqs target: fauxqs (Node, `asyncloop.testing.FauxqsServer`) behind a latency proxy
(a child process) for SQS, and asyncloop.testing's local Lambda Invoke endpoint
(`LambdaServer`, in a child process, the profile's Invoke latency) for Lambda."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.to_thread

from .._config import BenchConfig, BenchError
from .child_server import ChildServer
from .http import HttpTarget

__all__ = ("FauxqsTarget",)


class FauxqsTarget(HttpTarget):
    name = "fauxqs"

    def __init__(self, config: BenchConfig) -> None:
        super().__init__(config)
        self._lambda = ChildServer("lambda", [str(config.invoke_model())])
        self._proxy: ChildServer | None = None
        self._fauxqs: Any = None

    async def _start(self) -> None:
        from asyncloop.testing import FauxqsServer, node_available

        if not node_available():
            raise BenchError(
                "the fauxqs target needs Node.js >= 20 and npm on PATH: install Node 20 LTS "
                "(https://nodejs.org/en/download, `nvm install 20`, or `apt-get install nodejs "
                "npm`), or use --target moto"
            )
        self._use_fake_credentials()
        self._fauxqs = await self._stack.enter_async_context(FauxqsServer())
        self._stack.callback(self._lambda.stop)
        await anyio.to_thread.run_sync(self._lambda.start)
        latencies = self.config.latency_profile().proxy_latencies(self.config.invocation_type)
        latencies.pop("Invoke")
        proxy = self._proxy = ChildServer(
            "proxy", [self._fauxqs.endpoint_url, json.dumps(latencies)]
        )
        self._stack.callback(proxy.stop)
        await anyio.to_thread.run_sync(proxy.start)
        self.sqs_endpoint = proxy.endpoint_url
        self.lambda_endpoint = self._lambda.endpoint_url
        for pid in (
            self._fauxqs.pid,
            self._lambda.pid,
            proxy.pid,
        ):
            if pid is not None:
                self._server_pids.append(pid)

    def describe(self) -> dict[str, Any]:
        from asyncloop.testing import FAUXQS_VERSION

        return {
            "name": self.name,
            "server": f"fauxqs {FAUXQS_VERSION} (node) behind a latency proxy + asyncloop "
            "LambdaServer (child processes)",
            "profile": self.config.latency_profile().name,
        }
