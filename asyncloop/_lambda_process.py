"""The Lambda process's shared state: one event loop and the worker's AWS clients.

One event loop (an `asyncio.Runner`) and one set of AWS clients serve every warm invocation
of the process: ``asyncio.run`` per invocation would close the loop the clients are bound to.
The Kinesis loop (`asyncloop._loop.app`) and the SQS-side handlers (`asyncloop._handlers`) run
on the same loop. Nothing here imports an AWS SDK until the clients open.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AsyncExitStack

    from ._aws import AwsClients

__all__ = ("aws_clients", "close", "remaining_seconds", "shared_runner")

_runner: asyncio.Runner | None = None
_clients: AwsClients | None = None
_clients_stack: AsyncExitStack | None = None


def shared_runner() -> asyncio.Runner:
    """The process's one event loop, created on first use and kept while the process lives."""
    global _runner
    if _runner is None:
        _runner = asyncio.Runner()
    return _runner


async def aws_clients() -> AwsClients:
    """The worker's clients, opened once in the shared loop (``ASYNCLOOP_*`` AwsConfig)."""
    global _clients, _clients_stack
    if _clients is None:
        from contextlib import AsyncExitStack

        from ._aws import AwsClients
        from ._config import AwsConfig

        stack = AsyncExitStack()
        clients = await stack.enter_async_context(AwsClients(AwsConfig.from_env(), pool_size=16))
        _clients, _clients_stack = clients, stack
    return _clients


def remaining_seconds(context: Any, default: float) -> float:
    """The invocation's remaining time from a Lambda `context`, or `default` without one."""
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter() / 1000.0 if callable(getter) else default


def close() -> None:
    """Close the worker's clients and the event loop (tests; Lambda just freezes the process)."""
    global _runner, _clients, _clients_stack
    runner, stack = _runner, _clients_stack
    _runner, _clients, _clients_stack = None, None, None
    if runner is not None:
        if stack is not None:
            runner.run(stack.aclose())
        runner.close()
