"""The `asyncloop` command: parse, build config, handle signals, call the library.

This module is the entry point (the parser, `main`, `console_main`, logging); the flag
machinery is in `_cli_flags`, the `run` command in `_cli_run` (its stats line and metrics
endpoint in `_cli_observe`), the other commands in `_cli_bench`, `_cli_loop`, `_cli_deploy`
and `_cli_redrive`.

Exit codes: 0 after a clean stop (a first SIGINT/SIGTERM drains cleanly), 2 for bad arguments
or configuration, flags and ASYNCLOOP_* variables alike (one line on stderr naming what the user
set), 1 for a failure the consumer cannot recover from (the queue or the function does not
exist, credentials refused) and after a second signal (in-flight work aborted and released).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn, cast

from ._cli_flags import EXIT_USAGE, _Parser, _resolve_env, _usage_error
from ._cli_run import _add_run
from ._exceptions import ConfigError
from ._validate import check_choice

__all__ = ("main",)

logger = logging.getLogger("asyncloop")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="asyncloop",
        description="An asyncio SQS consumer loop for Lambda, and its benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"asyncloop {__version__}")
    # Subcommands use _Parser too, so their usage errors are one line as well.
    subparsers = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser),
    )
    _add_run(subparsers)
    for register in _registrars():
        register(subparsers)
    return parser


def _registrars() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """The other commands' parsers, each in its own module."""
    found = []
    for module_name in ("_cli_bench", "_cli_loop", "_cli_deploy", "_cli_redrive"):
        try:
            module = __import__(f"asyncloop.{module_name}", fromlist=["register"])
        except ImportError as exc:  # an optional command whose dependencies are missing
            logger.debug("command module %s unavailable: %s", module_name, exc)
            continue
        found.append(module.register)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `asyncloop` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _resolve_env(args)
        _configure_logging()
    except ConfigError as exc:
        return _usage_error(str(exc))
    # `run` has a --handler flag, so its function lives in `handler_fn`; the other commands'
    # modules set `handler`.
    command = getattr(args, "handler_fn" if args.command == "run" else "handler", None)
    if not callable(command):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    exit_code: int = command(args)
    return exit_code


def console_main() -> NoReturn:
    """The console script and ``python -m asyncloop``: `main`, then exit without waiting for
    handler threads that a stop abandoned.

    A sync handler blocked in its worker thread is abandoned when its dispatch is cancelled
    (``shutdown_grace`` ran out, a second signal): by then its message was released, and every
    delete flushed. anyio's worker threads are not daemon threads, so a normal exit would wait
    for them, and a handler stuck for good would keep the process alive after a stop that
    finished. So the process exits at once (``os._exit``, after flushing stdout and stderr);
    an abandoned thread's side effects may be cut short, never its message's delete.
    """
    code = main()
    stuck = [
        thread
        for thread in threading.enumerate()
        if thread.name == _ANYIO_WORKER and thread.is_alive() and not thread.daemon
    ]
    if stuck:
        print(
            f"asyncloop: exiting without waiting for {len(stuck)} abandoned handler thread(s)",
            file=sys.stderr,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


# The name anyio gives its worker threads (anyio.to_thread.run_sync), which run sync handlers.
_ANYIO_WORKER = "AnyIO worker thread"

_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _configure_logging() -> None:
    """Log to stderr at ASYNCLOOP_LOG_LEVEL (default info); ConfigError for an unknown level."""
    level = (os.environ.get("ASYNCLOOP_LOG_LEVEL") or "info").strip().lower()
    check_choice("ASYNCLOOP_LOG_LEVEL", level, _LOG_LEVELS)
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The emulators' access logs are noise on a consumer's stderr, and so is the SDK's INFO
    # "Found credentials in environment variables" (aiobotocore's own logger, not botocore's),
    # which otherwise stands beside the one line of an error exit.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("aiobotocore").setLevel(logging.WARNING)
