"""The text of a failed dispatch for the log: type and text of the exception and of its
causes, with the message's body and receipt handle cut out wherever they appear whole (a body
under 8 characters that appears withholds the text), and its traceback (frames show code,
never values)."""

from __future__ import annotations

import traceback

from ._types import Message

__all__ = ("exception_text", "failure_text", "failure_traceback")

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
