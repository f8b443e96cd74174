"""AWS Lambda entry points (the public facade; the template's handler strings name these).

- `loop_handler`: the seed's Kinesis-triggered loop, made safe: claims its generation in the
  lease table, consumes until the invocation's deadline less a safety margin, re-triggers
  itself with ``put_record`` (0, 1 or 2 tokens by the backlog), obeys the kill switch. Also
  startable by a direct invoke: ``{"action": "start", "loops": 2}``, or a token.
- `watchdog_handler`: for a one-minute schedule; re-seeds silent loops, keeps ``min_loops``.
- `worker(func)`: the seed's worker: runs ``func(message)`` on a seed payload and deletes the
  message with its receipt handle when ``func`` returns.
- `sqs_batch_handler(func, max_concurrency=...)`: for Lambda's own SQS event source mapping,
  with bounded concurrency and ``batchItemFailures``.
- `example_worker`: ``worker`` around a function that logs each message's id and size.

The loop lives in `asyncloop._loop`, the SQS-side handlers in `asyncloop._handlers`.
One event loop (an `asyncio.Runner`) and one set of AWS clients serve every warm invocation
of the process: ``asyncio.run`` per invocation would close the loop the clients are bound to.
Configuration comes from ``ASYNCLOOP_*`` variables, read on the first invocation; a bad value
fails it with a `ConfigError` naming the variable. Importing this module loads no AWS SDK
(botocore and aioboto3 are most of a cold start) and not the loop: they load on the first
invocation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import _lambda_process
from ._handlers import example_worker as example_worker
from ._handlers import sqs_batch_handler as sqs_batch_handler
from ._handlers import worker as worker

if TYPE_CHECKING:
    from ._loop.app import LoopApp

__all__ = ("example_worker", "loop_handler", "sqs_batch_handler", "watchdog_handler", "worker")

_app: LoopApp | None = None


def _loop_app() -> LoopApp:
    global _app
    if _app is None:
        from ._loop.app import LoopApp

        _app = LoopApp(environ=os.environ, runner=_lambda_process.shared_runner())
    return _app


def loop_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The loop: one run per token record; ``batchItemFailures`` names records to retry."""
    return _loop_app().loop_handler(event, context)


def watchdog_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The watchdog: re-seeds loops silent for ``ASYNCLOOP_HEARTBEAT_LIMIT``, keeps
    ``ASYNCLOOP_MIN_LOOPS``; with the switch off, ends silent loops."""
    return _loop_app().watchdog_handler(event, context)


def _close_shared() -> None:
    """Close the loop's app, the worker's clients and the event loop (tests; Lambda just
    freezes the process)."""
    global _app
    app, _app = _app, None
    if app is not None:
        app.close()
    _lambda_process.close()
