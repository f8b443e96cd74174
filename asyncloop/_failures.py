"""Failed dispatches: the failure's log lines, and its backoff.

A failed dispatch is logged at WARNING with the type and text of the exception and of its
causes, and at DEBUG with the traceback (frames show code, never values); the message's body
and receipt handle are cut out of that text wherever they appear whole (a body under 8
characters that appears withholds the text), so a handler whose exception quotes a *part* of
the body (one field) puts that part in the log. With `failure_backoff_base` set, the message
gets a visibility by receive count (see `_backoff.failure_visibility`).

`FailedDispatch` is a part of `Consumer` (a mixin over its state).
"""

from __future__ import annotations

import logging
import math
import traceback
from typing import TYPE_CHECKING

from ._acker import Outcome, outcome_code
from ._backoff import failure_visibility
from ._config import ConsumerConfig
from ._exceptions import AwsError, PayloadTooLarge
from ._limits import MAX_VISIBILITY
from ._stats import Stats
from ._types import Message

if TYPE_CHECKING:
    from ._acker import Acker

__all__ = (
    "FailedDispatch",
    "exception_text",
    "failure_text",
    "failure_traceback",
    "log_receive_error",
)

logger = logging.getLogger("asyncloop")

# A failure's exception text in the log is cut to this many characters.
_MAX_ERROR_TEXT = 500
# Bodies shorter than this are not cut out of an exception's text (a two-letter body would
# match everywhere); when one occurs in it, the text is withheld instead.
_MIN_REDACTED_BODY = 8


def _redact(text: str, message: Message | None) -> str | None:
    """`text` with `message`'s body and receipt handle cut out wherever they appear whole;
    None when a body too short to cut out (under `_MIN_REDACTED_BODY` characters) occurs."""
    if message is None:
        return text
    handle = message.receipt_handle
    if handle and handle in text:
        text = text.replace(handle, "<receipt handle>")
    body = message.body
    if body and body in text:
        if len(body) < _MIN_REDACTED_BODY:
            return None
        text = text.replace(body, "<body>")
    return text


def exception_text(exc: BaseException, message: Message | None = None) -> str:
    """``Type: text`` of one exception for a log line: the text cut to `_MAX_ERROR_TEXT`
    characters, without `message`'s body or receipt handle (see `_redact`)."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break the failure path
        text = "<unprintable>"
    if not text:
        return name
    redacted = _redact(text, message)
    if redacted is None:
        return f"{name}: <text withheld: it quotes the body>"
    if len(redacted) > _MAX_ERROR_TEXT:
        redacted = redacted[:_MAX_ERROR_TEXT] + "..."
    return f"{name}: {redacted}"


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it came from (``__cause__``, else an unsuppressed
    ``__context__``), outermost first, at most 5."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 5 and all(current is not e for e in chain):
        chain.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None
    return chain


def failure_text(exc: BaseException, message: Message) -> str:
    """A failed dispatch for a WARNING line: ``Type: text from Type: text ...``."""
    return " from ".join(exception_text(link, message) for link in _chain(exc))


def failure_traceback(exc: BaseException, message: Message) -> str:
    """The traceback of a failed dispatch, innermost cause first as Python prints it, with
    each exception's text as `exception_text` gives it (frames show code, never values)."""
    parts: list[str] = []
    for link in reversed(_chain(exc)):
        if parts:
            parts.append("\nwhich led to:\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(link.__traceback__))
        parts.append(exception_text(link, message) + "\n")
    return "".join(parts).rstrip("\n")


def log_receive_error(exc: Exception, delay: float) -> None:
    """A failed receive at WARNING: the error's type and code, or for a non-AWS error its
    text (a receive holds no message yet, so the text cannot quote a body)."""
    if isinstance(exc, AwsError):
        logger.warning(
            "ReceiveMessage failed (%s: %s); retrying in %.2fs",
            type(exc).__name__,
            exc.code or "no code",
            delay,
        )
    else:
        # Not an AWS error: a broken connection, or a bug in a custom Queue.
        logger.warning("ReceiveMessage raised %s; retrying in %.2fs", exception_text(exc), delay)
        logger.debug("ReceiveMessage traceback", exc_info=exc)


class FailedDispatch:
    """Consumer's part for failed dispatches (and for a latency that cannot be recorded)."""

    config: ConsumerConfig
    stats: Stats
    _acker: Acker | None
    _bad_timestamps: int

    if TYPE_CHECKING:

        def _done(self, message: Message) -> None: ...

    def _bad_timestamp(self, message: Message, exc: Exception) -> None:
        self._bad_timestamps += 1
        log = logger.warning if self._bad_timestamps == 1 else logger.debug
        log(
            "latency of message %s not recorded (%s); its delete goes ahead",
            message.message_id,
            type(exc).__name__,
        )

    def _failed(self, message: Message, exc: BaseException) -> None:
        self.stats.failed += 1
        # The type and text of the exception and of its causes; the body and the receipt
        # handle are cut out of the text (see `exception_text`).
        logger.warning(
            "dispatch of message %s failed (%s); SQS will deliver it again",
            message.message_id,
            failure_text(exc, message),
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "dispatch of message %s failed; traceback:\n%s",
                message.message_id,
                failure_traceback(exc, message),
            )
        visibility = self._failure_visibility(message, exc)
        if visibility is not None:
            assert self._acker is not None
            self._acker.release(message, visibility, self._backed_off)
        self._done(message)

    def _failure_visibility(self, message: Message, exc: BaseException) -> int | None:
        config = self.config
        base = config.failure_backoff_base
        if not base:
            return None
        if isinstance(exc, PayloadTooLarge):
            # It will never fit: wait the longest, and let maxReceiveCount take it to the DLQ.
            logger.error(
                "message %s can never be dispatched (PayloadTooLarge); it goes to the DLQ "
                "once its receive count reaches the queue's maxReceiveCount",
                message.message_id,
            )
            return max(1, min(MAX_VISIBILITY, math.ceil(config.failure_backoff_cap)))
        try:
            receive_count = message.receive_count
        except ValueError:  # a garbage ApproximateReceiveCount: back off as on a first receive
            receive_count = 1
        return failure_visibility(receive_count, base, config.failure_backoff_cap)

    def _backed_off(self, message: Message, outcome: Outcome) -> None:
        if outcome is None:
            self.stats.backed_off += 1
            return
        self.stats.release_failed += 1
        logger.warning(
            "failure backoff of message %s failed (%s); it returns after its visibility timeout",
            message.message_id,
            outcome_code(outcome),
        )
