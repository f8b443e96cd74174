"""The `asyncloop` command: parse, build config, handle signals, call the library.

Exit codes: 0 after a clean stop (a first SIGINT/SIGTERM drains cleanly), 2 for bad arguments
or configuration, flags and ASYNCLOOP_* variables alike (one line on stderr naming what the user
set), 1 for a failure the consumer cannot recover from (the queue or the function does not
exist, credentials refused) and after a second signal (in-flight work aborted and released).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from ._config import AwsConfig, ConsumerConfig, LambdaConfig
from ._exceptions import AsyncloopError, ConfigError
from ._validate import check_choice, check_range, parse_bool, parse_value, validate_queue_url

__all__ = ("main",)

logger = logging.getLogger("asyncloop")

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


def _add_run(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run",
        help="consume a queue until a stop condition",
        description=(
            "Receive from an SQS queue with concurrent long polls and dispatch each message "
            "to a Lambda function or an in-process handler, with at most --max-in-flight at "
            "once. Every flag also reads from ASYNCLOOP_<FLAG> (e.g. ASYNCLOOP_MAX_IN_FLIGHT)."
        ),
    )
    defaults = ConsumerConfig()
    _option(run, "--queue-url", help="the queue to consume")
    target = run.add_mutually_exclusive_group()
    _option(target, "--function-name", help="Lambda function to invoke")
    _option(
        target,
        "--handler",
        metavar="MODULE:FUNC",
        help="in-process callable taking an asyncloop.Message (async, or sync in a thread)",
    )
    _option(run, "--endpoint-url", help="one endpoint for SQS and Lambda, e.g. a moto server")
    _option(run, "--region", help="AWS region")
    _option(
        run,
        "--transport",
        default=AwsConfig().transport,
        help="lean (the hot calls signed and sent over aiohttp, less CPU per call) or sdk "
        "(aiobotocore end to end: for proxies, client certificates, other retry modes)",
    )
    _option(run, "--receivers", int, defaults.receivers, "concurrent long polls")
    _option(run, "--max-in-flight", int, defaults.max_in_flight, "messages held at once")
    _option(run, "--batch-size", int, defaults.batch_size, "messages per receive, 1..10")
    _option(run, "--wait-time-seconds", int, defaults.wait_time_seconds, "long-poll wait, 0..20")
    _option(
        run,
        "--visibility-timeout",
        int,
        help="visibility timeout asked on receive, seconds (default: the queue's)",
    )
    _option(
        run,
        "--invocation-type",
        default="Event",
        help="Event (accepted = success) or RequestResponse (returned = success)",
    )
    _option(
        run,
        "--payload",
        default="seed",
        help="seed (the seed's consumer.js record) or sqs-event (Lambda's SQS event shape)",
    )
    _option(
        run,
        "--delete-by",
        default=defaults.delete_by,
        help="consumer (delete after success, batched) or worker (the worker deletes)",
    )
    _switch(run, "--until-empty", "stop once the queue answers empty and nothing is in flight")
    _option(run, "--duration", float, help="stop after this many seconds")
    _switch(run, "--json", "print the statistics as one JSON object, all of stdout")
    _add_observe(run)
    _add_processes(run)
    run.set_defaults(handler_fn=_cmd_run)


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


def _cmd_run(args: argparse.Namespace) -> int:
    if not args.queue_url:
        return _usage_error("--queue-url is required (or ASYNCLOOP_QUEUE_URL)")
    if not args.function_name and not args.handler:
        return _usage_error("one of --function-name or --handler is required")
    if args.function_name and args.handler:
        return _usage_error("--function-name and --handler are exclusive; give one")
    try:
        queue_url = validate_queue_url(args.queue_url)
        # Fields without a flag (failure backoff, heartbeat cap, throttle retries, ...) come
        # from their ASYNCLOOP_* variables; the flags (already defaulted from theirs) win.
        consumer_config = ConsumerConfig.from_env(
            receivers=args.receivers,
            max_in_flight=args.max_in_flight,
            batch_size=args.batch_size,
            wait_time_seconds=args.wait_time_seconds,
            visibility_timeout=args.visibility_timeout,
            delete_by=args.delete_by,
            until_empty=args.until_empty,
            duration=args.duration,
        )
        # The client settings without a flag (retries, timeouts) come from their variables too.
        aws_config = AwsConfig.from_env(
            region=args.region, endpoint_url=args.endpoint_url, transport=args.transport
        )
        lambda_config = (
            LambdaConfig(
                function_name=args.function_name,
                invocation_type=args.invocation_type,
                payload=args.payload,
            )
            if args.function_name
            else None
        )
        handler = None
        if args.handler:
            from ._dispatch import load_handler

            handler = load_handler(args.handler)
        observe = _observe_options(args)
        processes, loop_factory = _process_options(args)
    except ConfigError as exc:
        return _usage_error(_flag_message(exc, args))
    if processes > 1:
        return _cmd_run_processes(args, processes)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            stats, aborted = runner.run(
                _run(queue_url, consumer_config, aws_config, lambda_config, handler, observe)
            )
    except ConfigError as exc:
        return _usage_error(_flag_message(exc, args))
    except AsyncloopError as exc:
        print(f"asyncloop: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("asyncloop: aborted", file=sys.stderr)
        return EXIT_FAILURE
    summary = stats.to_dict()
    if args.emit_state:
        from ._processes import STATE_KEY

        summary[STATE_KEY] = stats.to_state()
    _print_stats(summary, as_json=args.json or args.emit_state)
    if aborted:
        print("asyncloop: aborted by a second signal", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def _run(
    queue_url: str,
    consumer_config: ConsumerConfig,
    aws_config: AwsConfig,
    lambda_config: LambdaConfig | None,
    handler: Callable[..., Any] | None,
    observe: _Observe | None = None,
) -> tuple[Any, bool]:
    from ._wiring import open_consumer

    # The factory checks both ends before consuming anything and sizes the pool
    async with open_consumer(
        queue_url,
        handler=handler,
        config=consumer_config,
        lambda_config=lambda_config,
        aws=aws_config,
    ) as consumer:
        signals = _SignalStop(consumer.stop)
        with signals:
            try:
                async with _observing(consumer, observe or _Observe(stats_interval=0)):
                    await consumer.run()
            except asyncio.CancelledError:
                if not signals.aborted:
                    raise
                # Our own abort: run() already flushed deletes and released what it held.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
        return consumer.stats, signals.aborted


# -- run's processes (--processes N, the supervisor in _processes) and event loop -------------

_EVENT_LOOPS = ("asyncio", "uvloop")


def _add_processes(run: argparse.ArgumentParser) -> None:
    _option(
        run,
        "--processes",
        default="1",
        metavar="N|auto",
        help="consumer processes on the queue, each with its own event loop and clients; "
        "--max-in-flight and --receivers are split among them; auto: one per core",
    )
    _option(
        run,
        "--event-loop",
        default="asyncio",
        help="asyncio, or uvloop (needs asyncloop[uvloop]); every process uses it",
    )
    # A child of the supervisor prints its statistics whole (histograms too), to be merged.
    run.add_argument("--emit-state", action="store_true", help=argparse.SUPPRESS)


def _process_options(args: argparse.Namespace) -> tuple[int, Callable[[], Any] | None]:
    """The process count (validated against the shares: ConfigError for N > max-in-flight)
    and the event loop factory (None: asyncio's own)."""
    from ._processes import parse_processes, plan

    processes = parse_processes(args.processes)
    if processes > 1:
        plan(
            processes,
            max_in_flight=args.max_in_flight,
            receivers=args.receivers,
            metrics_port=args.metrics_port,
        )
    check_choice("event_loop", args.event_loop, _EVENT_LOOPS)
    if args.event_loop != "uvloop":
        return processes, None
    try:
        import uvloop
    except ImportError:
        raise ConfigError(
            "event_loop uvloop needs the uvloop package: pip install 'asyncloop[uvloop]'",
            field="event_loop",
        ) from None
    factory: Callable[[], Any] = uvloop.new_event_loop
    return processes, factory


def _cmd_run_processes(args: argparse.Namespace, processes: int) -> int:
    """`asyncloop run --processes N` (N > 1, flags already validated): the supervisor."""
    from ._processes import Option, child_argv, exit_code, merged_summary, plan, supervise

    options = [
        Option(flag=action.option_strings[0], value=getattr(args, action.dest), switch=switch)
        for action in _run_parser()._actions
        if action.option_strings and action.dest not in ("help", "emit_state")
        for switch in (isinstance(action, argparse._StoreTrueAction),)
    ]
    children = plan(
        processes,
        max_in_flight=args.max_in_flight,
        receivers=args.receivers,
        metrics_port=args.metrics_port,
    )
    argvs = [child_argv(options, child) for child in children]
    results = asyncio.run(supervise(argvs))
    summary = merged_summary(results)
    if summary is not None:
        _print_stats(summary, as_json=args.json)
    return exit_code(results)


def _run_parser() -> argparse.ArgumentParser:
    """The `run` subcommand's parser (its flags are what a child is given)."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            run: argparse.ArgumentParser = action.choices["run"]
            return run
    raise AssertionError("the parser has no run command")


# -- run's self-reporting: the periodic stats line and the Prometheus endpoint ---------------


def _add_observe(run: argparse.ArgumentParser) -> None:
    _option(
        run,
        "--stats-interval",
        float,
        30.0,
        "seconds between the INFO summary lines (rates, in flight, limit, p50/p99); 0: none",
    )
    _option(
        run,
        "--metrics-port",
        int,
        help="serve Prometheus metrics on this port (0: a free one; needs asyncloop[metrics])",
    )
    _option(run, "--metrics-host", default="127.0.0.1", help="the address --metrics-port binds")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Observe:
    """`stats_interval` seconds (0: no stats line; else 0.01..86400, default 30);
    `metrics_port` (None: no endpoint; 0..65535) on `metrics_host` (default 127.0.0.1)."""

    stats_interval: float = 30.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.stats_interval != 0:
            check_range("stats_interval", self.stats_interval, 0.01, 86_400.0)
        if self.metrics_port is not None:
            check_range("metrics_port", self.metrics_port, 0, 65_535)
        if not self.metrics_host:
            raise ConfigError("metrics_host must not be empty", field="metrics_host")


def _observe_options(args: argparse.Namespace) -> _Observe:
    """The flags' values, checked; a --metrics-port without prometheus-client is refused here,
    before anything runs."""
    observe = _Observe(
        stats_interval=args.stats_interval,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    if observe.metrics_port is not None:
        from ._metrics import require

        require()
    return observe


@asynccontextmanager
async def _observing(consumer: Any, observe: _Observe) -> AsyncIterator[None]:
    """Serve metrics and log the stats line while the block runs; both stop when it ends."""
    import anyio

    with ExitStack() as stack:
        if observe.metrics_port is not None:
            from ._metrics import MetricsServer

            server = MetricsServer(consumer, host=observe.metrics_host, port=observe.metrics_port)
            try:
                stack.enter_context(server)
            except OSError as exc:
                raise AsyncloopError(
                    f"--metrics-port: cannot listen on {observe.metrics_host}:"
                    f"{observe.metrics_port}: {exc.strerror or exc}"
                ) from exc
        async with anyio.create_task_group() as group:
            if observe.stats_interval > 0:
                from ._stats_log import StatsReporter

                group.start_soon(StatsReporter(consumer, observe.stats_interval).run)
            try:
                yield
            finally:
                group.cancel_scope.cancel()


class _SignalStop:
    """First SIGINT/SIGTERM: graceful stop. Second: cancel the run (deletes still flush)."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        self._count = 0
        self.aborted = False
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        self._count += 1
        name = signal.Signals(signum).name
        if self._count == 1:
            logger.info("%s: stopping (finishing in-flight work; again to abort)", name)
            self._stop()
        elif self._task is not None and not self.aborted:
            self.aborted = True
            logger.warning("%s again: aborting in-flight work", name)
            self._task.cancel()


def _print_stats(summary: dict[str, Any], *, as_json: bool) -> None:
    """The human summary (two lines), on stdout; with `as_json` on stderr, and stdout gets
    only the JSON object, so ``asyncloop run --json | jq`` reads exactly one document."""
    latency = summary["latency_ms"]
    timing = f"duration {summary['duration_s']:.2f} s  "
    if latency["p50"] is None:
        # Nothing finished: there is no throughput or latency to speak of
        timing += "no messages" if summary["received"] == 0 else "no message finished"
    else:
        timing += (
            f"throughput {summary['throughput_msgs_s']:.1f} msgs/s  "
            f"latency p50/p95/p99 {latency['p50']}/{latency['p95']}/{latency['p99']} ms"
        )
    lines = [
        f"received {summary['received']}  succeeded {summary['succeeded']}  "
        f"failed {summary['failed']}  deleted {summary['deleted']}  "
        f"released {summary['released']}",
        timing,
    ]
    if not as_json:
        print("\n".join(lines))
        return
    print("\n".join(lines), file=sys.stderr)
    print(json.dumps(summary, sort_keys=True))
