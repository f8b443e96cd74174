"""Dispatchers: a Lambda ``Invoke`` per message, or an in-process callable.

Both raise `DispatchError` subclasses on failure and nothing else, so the consumer's
contract is simple: returned means done (delete), raised means leave it to SQS.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ._config import LambdaConfig
from ._exceptions import (
    AwsError,
    ConfigError,
    DispatchError,
    DispatchThrottled,
    HandlerFailed,
    PayloadTooLarge,
)
from ._limits import EVENT_PAYLOAD_LIMIT, REQUEST_RESPONSE_PAYLOAD_LIMIT
from ._payload import build_payload, queue_arn
from ._protocols import LambdaInvoker
from ._types import Message
from ._user_call import UserCall
from ._validate import check_range

__all__ = ("CallableDispatcher", "LambdaDispatcher", "load_handler")

logger = logging.getLogger("asyncloop")


Handler = Callable[[Message], Any]


class LambdaDispatcher:
    """Invokes `config.function_name` once per message.

    Success is a 202 for ``Event`` (accepted), a 200 without ``FunctionError`` for
    ``RequestResponse`` (the function returned). A 429 raises `DispatchThrottled`, a
    ``FunctionError`` `HandlerFailed`, a payload over the limit `PayloadTooLarge`.
    """

    operation = "Invoke"

    def __init__(
        self,
        *,
        invoker: LambdaInvoker,
        config: LambdaConfig,
        queue_url: str,
        region: str | None = None,
        event_payload_limit: int = EVENT_PAYLOAD_LIMIT,
    ) -> None:
        self.invoker = invoker
        self.config = config
        self.queue_url = queue_url
        self._source_arn = queue_arn(queue_url, region)
        self._expected_status = 202 if config.invocation_type == "Event" else 200
        self._limit = (
            event_payload_limit
            if config.invocation_type == "Event"
            else REQUEST_RESPONSE_PAYLOAD_LIMIT
        )

    async def dispatch(self, message: Message) -> None:
        config = self.config
        payload = build_payload(
            message, queue_url=self.queue_url, payload=config.payload, source_arn=self._source_arn
        )
        if len(payload) > self._limit:
            raise PayloadTooLarge(
                f"payload of message {message.message_id} is {len(payload)} bytes; "
                f"{config.invocation_type} invokes take at most {self._limit}",
                message_id=message.message_id,
            )
        try:
            result = await self.invoker.invoke(
                function_name=config.function_name,
                payload=payload,
                invocation_type=config.invocation_type,
            )
        except AwsError as exc:
            kind = DispatchThrottled if exc.throttled else DispatchError
            raise kind(
                f"Invoke of {config.function_name} failed: {exc.code or type(exc).__name__}",
                message_id=message.message_id,
            ) from exc
        if result.function_error:
            raise HandlerFailed(
                f"{config.function_name} reported {result.function_error}",
                message_id=message.message_id,
            )
        if result.status_code != self._expected_status:
            raise DispatchError(
                f"Invoke of {config.function_name} answered {result.status_code}, "
                f"expected {self._expected_status}",
                message_id=message.message_id,
            )


class CallableDispatcher:
    """Runs a Python callable per message: awaited if async, else in a worker thread.

    Sync callables share a `thread_limit` of worker threads (their own limit, not anyio's
    default one). A sync callable that returns an awaitable (a `functools.wraps` wrapper or a
    lambda around an async function) has it awaited on the event loop: the dispatch succeeds
    only once the awaitable did. Any exception the callable (or its awaitable) raises is a
    failure (`HandlerFailed`). The rules live in `asyncloop._user_call`, shared with the
    Lambda entry points.

    A dispatch cancelled while its thread runs (``shutdown_grace`` ran out, `Consumer.run`
    was cancelled, the lease was lost) is abandoned: the cancellation goes on at once and
    the message is not deleted (the consumer releases it), but the thread runs on until the
    function returns, so its side effects may still happen and the message may run twice.
    An abandoned thread gives back its `thread_limit` slot at once: while it runs, more than
    `thread_limit` threads may exist, and a function that never returns leaks its thread,
    never a slot, so later dispatches (and later runs) are not starved.
    """

    operation = None

    def __init__(self, func: Handler, *, thread_limit: int = 16) -> None:
        if not callable(func):
            raise ConfigError(f"handler must be callable, got {func!r}", field="handler")
        check_range("thread_limit", thread_limit, 1, 1024)
        self.func = func
        self._start = UserCall(func, limiter=anyio.CapacityLimiter(thread_limit)).start

    async def dispatch(self, message: Message) -> None:
        try:
            pending = self._start(message)
            if pending is not None:
                await pending
        except DispatchError:
            raise
        except Exception as exc:
            raise HandlerFailed(
                f"handler raised {type(exc).__name__}", message_id=message.message_id
            ) from exc


def load_handler(spec: str) -> Callable[[Message], Awaitable[None] | None]:
    """Import ``module:function`` (dots allowed on both sides); ConfigError if it fails.

    The module is imported from `sys.path` as it is; if it is not found there, and the
    current directory is not on `sys.path` (the ``asyncloop`` console script, unlike
    ``python -m asyncloop``, does not put it there), the current directory is put first on
    `sys.path` and the import tried again, so ``--handler mymod:func`` finds ``./mymod.py``
    as ``python -m``, uvicorn and celery would. The directory stays on `sys.path` when the
    module was found there (the handler's own imports of its neighbours need it); it is
    taken off again when the import fails. Only when the module itself is missing: a module
    that is found but fails on an import of its own is reported as it is.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"handler must look like module:function, got {spec!r}", field="handler")
    try:
        target: Any = _import_handler_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"handler module {module_name!r} cannot be imported: {exc}", field="handler"
        ) from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"handler {spec!r}: {module_name} has no attribute {attr!r}", field="handler"
            ) from None
    if not callable(target):
        raise ConfigError(f"handler {spec!r} is not callable", field="handler")
    return target  # type: ignore[no-any-return]


def _import_handler_module(module_name: str) -> Any:
    """`importlib.import_module`, retried with the current directory first on `sys.path`
    when the module (or a package above it) is not found and that directory is not there."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not missing or not (module_name == missing or module_name.startswith(missing + ".")):
            raise  # found, but one of its own imports is missing
        cwd = os.getcwd()
        if cwd in {os.path.abspath(entry or os.curdir) for entry in sys.path}:
            raise
        sys.path.insert(0, cwd)
        importlib.invalidate_caches()
        try:
            module = importlib.import_module(module_name)
        except BaseException:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)
            raise
        logger.info(
            "handler module %s found in the current directory %s, which now leads sys.path",
            module_name,
            cwd,
        )
        return module
