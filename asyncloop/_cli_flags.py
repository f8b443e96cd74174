"""The CLI's flag machinery: ASYNCLOOP_* defaults, one-line usage errors, exit codes.

Every command module (`_cli_run`, `_cli_redrive`, ...) defines its flags with `_option` and
`_switch`; `asyncloop._cli.main` resolves the variables (`_resolve_env`) after parsing.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from ._exceptions import ConfigError
from ._validate import parse_bool, parse_value

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"asyncloop: error: {message}\n")


def _env_name(flag: str) -> str:
    """``--max-in-flight`` -> ``ASYNCLOOP_MAX_IN_FLIGHT``."""
    return "ASYNCLOOP_" + flag.lstrip("-").upper().replace("-", "_")


class _FromEnv:
    """A flag's default read from its ASYNCLOOP_* variable, parsed only after argparse (by
    `_resolve_env`), so a bad value is reported under the variable's name, not the flag's."""

    __slots__ = ("kind", "raw", "variable")

    def __init__(self, variable: str, raw: str, kind: Callable[[str], Any]) -> None:
        self.variable = variable
        self.raw = raw
        self.kind = kind


def _option(
    parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup,
    flag: str,
    kind: Callable[[str], Any] = str,
    default: Any = None,
    help: str = "",
    **kwargs: Any,
) -> None:
    """A flag whose default comes from its ASYNCLOOP_* variable (an empty one is unset), then
    from `default`; `_resolve_env` parses the variable, so a bad one is a usage error naming it."""
    variable = _env_name(flag)
    raw = os.environ.get(variable) or None
    shown = f" (default {default})" if default is not None else ""
    value = _FromEnv(variable, raw, kind) if raw is not None else default
    parser.add_argument(flag, type=kind, default=value, help=help + shown, **kwargs)


def _switch(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """An on/off flag; its variable says 1/true/yes/on or 0/false/no/off (anything else is a
    usage error naming the variable, never a silent off)."""
    variable = _env_name(flag)
    raw = os.environ.get(variable) or None
    value = _FromEnv(variable, raw, parse_bool) if raw is not None else False
    parser.add_argument(flag, action="store_true", default=value, help=help)


def _resolve_env(args: argparse.Namespace) -> None:
    """Parse the defaults `_option` and `_switch` took from variables, in place; remember in
    ``args.from_env`` which destination came from which variable, for `_flag_message`.
    Raises ConfigError naming the variable."""
    sources: dict[str, str] = {}
    for dest, value in vars(args).items():
        if isinstance(value, _FromEnv):
            setattr(args, dest, parse_value(value.raw, value.kind, name=value.variable, field=dest))
            sources[dest] = value.variable
    args.from_env = sources


def _usage_error(message: str) -> int:
    print(f"asyncloop: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _flag_message(exc: ConfigError, args: argparse.Namespace) -> str:
    """Name what the user set: "batch_size must be ..." becomes "--batch-size must be ...",
    or "ASYNCLOOP_BATCH_SIZE must be ..." when the flag's value came from its variable. A
    field without a flag is left alone (the config already named its variable)."""
    message = str(exc)
    field = exc.field
    if field and message.startswith(field) and hasattr(args, field):
        name = getattr(args, "from_env", {}).get(field) or "--" + field.replace("_", "-")
        return name + message[len(field) :]
    return message
