"""The `asyncloop run` command: its flags, building the config, signals, the summary.

Registered by `asyncloop._cli`; `--processes N` hands over to the supervisor in `_processes`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from ._cli_flags import (
    EXIT_FAILURE,
    EXIT_OK,
    _flag_message,
    _option,
    _switch,
    _usage_error,
)
from ._cli_observe import _add_observe, _Observe, _observe_options, _observing
from ._config import AwsConfig, ConsumerConfig, LambdaConfig
from ._exceptions import AsyncloopError, ConfigError
from ._validate import check_choice, validate_queue_url

logger = logging.getLogger("asyncloop")


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
        help="lean (the hot calls signed and sent on asyncloop's own HTTP/1.1 connections, "
        "less CPU per call) or sdk (aiobotocore end to end: for proxies, client "
        "certificates, other retry modes)",
    )
    _option(run, "--receivers", int, defaults.receivers, "concurrent long polls")
    _option(run, "--max-in-flight", int, defaults.max_in_flight, "dispatches under way at once")
    _option(
        run,
        "--prefetch",
        int,
        defaults.prefetch,
        "messages held beyond --max-in-flight, so a finished dispatch starts the next at once "
        "(per process)",
    )
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
            prefetch=args.prefetch,
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
    from ._processes import Option, child_argv, exit_code, merged_summary, plan
    from ._supervisor import supervise

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
    # _cli imports this module to register `run`, so its parser is imported when needed.
    from ._cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            run: argparse.ArgumentParser = action.choices["run"]
            return run
    raise AssertionError("the parser has no run command")


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
