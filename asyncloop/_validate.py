"""Validation, once: the range, choice and type checks every config and call uses, the parser
of settings given as text, and the queue-URL, function-name and batch-entry validators.

Every check raises `ConfigError` (a ``ValueError``) whose message names the field, the allowed
range and the value it got, so a message and its check cannot disagree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ._exceptions import ConfigError
from ._limits import MAX_BATCH

__all__ = (
    "check_bool",
    "check_choice",
    "check_entries",
    "check_int",
    "check_range",
    "parse_bool",
    "parse_value",
    "queue_name",
    "validate_function_name",
    "validate_queue_url",
)

_N = TypeVar("_N", int, float)

# https://sqs.<region>.amazonaws.com/<account>/<name>, or any http(s) endpoint for emulators
_QUEUE_URL = re.compile(
    r"^https?://[^/\s]+(?::\d+)?/(?P<account>[^/\s]+)/(?P<name>[A-Za-z0-9_-]{1,80}(?:\.fifo)?)/?$"
)

# Lambda's own FunctionName pattern: name, partial ARN (account:function:name) or full ARN,
# with an optional version or alias.
_FUNCTION_NAME = re.compile(
    r"^(arn:aws[a-zA-Z-]*:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d:)?(\d{12}:)?(function:)?"
    r"[a-zA-Z0-9_-]+(:(\$LATEST|[a-zA-Z0-9_-]+))?$"
)
_FUNCTION_NAME_MAX = 170

# SQS's rule for batch entry Ids (moto does not check it, so we do)
_ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def _allowed(low: float, high: float | None) -> str:
    """The allowed range as the messages state it: ``1..10``, or ``a finite number >= 0``."""
    return f"in {low}..{high}" if high is not None else f"a finite number >= {low}"


def check_range(name: str, value: _N, low: _N, high: _N | None) -> None:
    """Raise ConfigError unless `value` is a finite number in ``low..high`` (no upper bound
    if None); the one source of every range message.

    NaN is refused: every comparison with it is false, so it would pass a plain range check
    and break the code that uses it later (a NaN flush timeout flushes nothing). So is
    +/-inf: no field takes inf as "no limit" (None is that), and inf would break the
    arithmetic on deadlines and poll waits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}", field=name)
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        raise ConfigError(f"{name} must be {_allowed(low, high)}, got {value!r}", field=name)


def check_int(name: str, value: float, low: int, high: int | None) -> None:
    """`check_range` for a whole number: SQS takes these as integers, so 1.5 is refused."""
    check_range(name, value, low, high)
    if not isinstance(value, int):
        raise ConfigError(
            f"{name} must be a whole number {_allowed(low, high)}, got {value!r}", field=name
        )


def check_bool(name: str, value: object) -> None:
    """Raise ConfigError unless `value` is True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}", field=name)


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """Raise ConfigError unless `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}", field=name)


def validate_queue_url(url: str, *, field: str = "queue_url") -> str:
    """Return `url` if it looks like an SQS queue URL, else raise ConfigError."""
    if not isinstance(url, str) or not _QUEUE_URL.match(url):
        raise ConfigError(
            f"{field} must look like https://sqs.<region>.amazonaws.com/<account>/<queue>,"
            f" got {url!r}",
            field=field,
        )
    return url


def queue_name(url: str) -> str:
    """The queue's name: the last path segment of its URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def validate_function_name(name: str, *, field: str = "function_name") -> str:
    """Return `name` if Lambda would take it as a FunctionName (a name, partial ARN or ARN,
    at most 170 characters), else raise ConfigError."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{field} must be a non-empty string, got {name!r}", field=field)
    if len(name) > _FUNCTION_NAME_MAX:
        raise ConfigError(
            f"{field} must be at most {_FUNCTION_NAME_MAX} characters, got {len(name)}",
            field=field,
        )
    if not _FUNCTION_NAME.match(name):
        raise ConfigError(
            f"{field} must be a function name, partial ARN or ARN "
            f"(letters, digits, - and _), got {name!r}",
            field=field,
        )
    return name


def check_entries(operation: str, ids: Sequence[str]) -> None:
    """SQS's rules for a batch call's entry Ids: 1..10 of them, distinct, each 1..80 of
    ``A-Z a-z 0-9 - _``. Checked before sending because moto accepts what SQS rejects."""
    if not ids:
        raise ConfigError(f"{operation} needs 1..{MAX_BATCH} entries, got none")
    if len(ids) > MAX_BATCH:
        raise ConfigError(f"{operation} takes at most {MAX_BATCH} entries, got {len(ids)}")
    seen: set[str] = set()
    for entry_id in ids:
        if not isinstance(entry_id, str) or not _ENTRY_ID.match(entry_id):
            raise ConfigError(
                f"{operation} entry Id must be 1..80 of A-Z a-z 0-9 - _, got {entry_id!r}"
            )
        if entry_id in seen:
            raise ConfigError(f"{operation} entry Ids must be distinct, got {entry_id!r} twice")
        seen.add(entry_id)


def parse_bool(raw: str) -> bool:
    """``1``/``true``/``yes``/``on`` and ``0``/``false``/``no``/``off``/empty, any case;
    ValueError otherwise (a typo must not silently mean off)."""
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


# What each parser accepts, in words, for the error message
_KIND_WORDS: dict[Callable[[str], Any], str] = {
    int: "an integer",
    float: "a number",
    parse_bool: "true or false (1/0, yes/no, on/off)",
}


def parse_value(raw: str, kind: Callable[[str], Any], *, name: str, field: str) -> Any:
    """`kind(raw)`, or ConfigError ``<name> must be an integer, got 'abc'``: the one parser
    of settings given as text (``ASYNCLOOP_*`` variables, for the library and the CLI)."""
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(
            f"{name} must be {_KIND_WORDS.get(kind, 'a valid value')}, got {raw!r}", field=field
        ) from None
