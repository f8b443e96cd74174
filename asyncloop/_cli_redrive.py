"""The `asyncloop redrive` command (registered by `asyncloop._cli`).

Moves a dead-letter queue's messages back to their source (or to ``--destination-url``) with
SQS's message move task, or with a receive/send/delete copy where the endpoint lacks it
(`asyncloop._redrive`). ``--status`` lists the move tasks, ``--cancel`` cancels the running one.

Exit codes: 0 done (every message moved, the task started, the status shown or the task
cancelled), 1 a runtime failure (an AWS call failed, a message could not be moved: it is
still in the DLQ; no task to cancel), 2 bad arguments (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from typing import Any

from ._cli_flags import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, _flag_message, _option
from ._config import AwsConfig
from ._exceptions import AsyncloopError, ConfigError

__all__ = ("register",)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``redrive`` to the CLI."""
    parser = subparsers.add_parser(
        "redrive",
        help="move messages from a dead-letter queue back to their source",
        description=(
            "Move the messages of a dead-letter queue back to the queue they came from (or to "
            "--destination-url) with SQS's StartMessageMoveTask, or, where the endpoint lacks "
            "it (moto, fauxqs), by receive, SendMessageBatch, then DeleteMessageBatch of what "
            "was sent. The value flags also read from ASYNCLOOP_<FLAG>."
        ),
    )
    dlq = parser.add_mutually_exclusive_group()
    _option(dlq, "--dlq-url", help="the dead-letter queue, by URL")
    _option(dlq, "--source-arn", help="the dead-letter queue, by ARN (as StartMessageMoveTask)")
    _option(
        parser,
        "--destination-url",
        help="where to move (default: each message's source queue; for the copy, the one "
        "queue whose redrive policy names the DLQ)",
    )
    _option(parser, "--max-per-second", float, help="messages moved per second at most, 1..500")
    _option(
        parser,
        "--visibility-timeout",
        int,
        60,
        "the copy: seconds a received message stays hidden in the DLQ (an unsent one returns "
        "after it)",
    )
    _option(
        parser,
        "--method",
        default="auto",
        help="auto (the move task, else the copy), native (the move task only) or copy",
    )
    _option(parser, "--endpoint-url", help="the SQS endpoint, e.g. a moto server")
    _option(parser, "--region", help="AWS region")
    action = parser.add_mutually_exclusive_group()
    # Plain flags, no variable: an ASYNCLOOP_CANCEL left in the environment must not cancel.
    action.add_argument("--status", action="store_true", help="list the DLQ's move tasks")
    action.add_argument("--cancel", action="store_true", help="cancel the running move task")
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON object on stdout"
    )
    parser.set_defaults(handler=_cmd_redrive)


def _error(message: str, code: int) -> int:
    print(f"asyncloop: error: {message}", file=sys.stderr)
    return code


def _cmd_redrive(args: argparse.Namespace) -> int:
    if not args.dlq_url and not args.source_arn:
        return _error("one of --dlq-url or --source-arn is required", EXIT_USAGE)
    try:
        from ._redrive import METHODS, CopyOptions

        if args.method not in METHODS:
            raise ConfigError(
                f"method must be one of {', '.join(METHODS)}, got {args.method!r}", field="method"
            )
        options = CopyOptions(
            max_per_second=args.max_per_second, visibility_timeout=args.visibility_timeout
        )
        aws_config = AwsConfig.from_env(region=args.region, endpoint_url=args.endpoint_url)
        summary, code = asyncio.run(_redrive(args, aws_config, options))
    except ConfigError as exc:
        return _error(_flag_message(exc, args), EXIT_USAGE)
    except AsyncloopError as exc:
        return _error(str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        print("asyncloop: aborted", file=sys.stderr)
        return EXIT_FAILURE
    _print(summary, as_json=args.json)
    return code


async def _redrive(
    args: argparse.Namespace, aws_config: AwsConfig, options: Any
) -> tuple[dict[str, Any], int]:
    from ._aws import AwsClients
    from ._redrive import cancel_move_task, move_tasks, redrive, resolve_queue

    # The move-task calls get few retries: an endpoint without them answers a bare 500
    # (moto), which botocore would retry with backoff for seconds before the copy starts.
    control_config = dataclasses.replace(aws_config, max_attempts=min(2, aws_config.max_attempts))
    async with (
        AwsClients(aws_config, pool_size=4) as clients,
        AwsClients(control_config, pool_size=1) as control,
    ):
        sqs = clients.sqs
        url, arn = await resolve_queue(
            sqs, url=args.dlq_url, arn=args.source_arn, field="dlq", arn_field="source_arn"
        )
        if args.status:
            tasks = await move_tasks(control.sqs, arn)
            return {"dlq_url": url, "source_arn": arn, "tasks": tasks}, EXIT_OK
        if args.cancel:
            cancelled = await cancel_move_task(control.sqs, arn)
            if cancelled is None:
                raise AsyncloopError(f"no running message move task for {arn}")
            handle, moved = cancelled
            return {"cancelled": handle, "moved": moved}, EXIT_OK
        result = await redrive(
            sqs,
            source_url=url,
            destination_url=args.destination_url,
            method=args.method,
            options=options,
            control_sqs=control.sqs,
        )
        return result.to_dict(), EXIT_OK if result.ok else EXIT_FAILURE


def _print(summary: dict[str, Any], *, as_json: bool) -> None:
    _print_text(summary, file=sys.stderr if as_json else sys.stdout)
    if as_json:
        print(json.dumps(summary, sort_keys=True, default=str))


def _print_text(summary: dict[str, Any], *, file: Any) -> None:
    """The human summary (on stderr beside --json's line); a failure's line always on stderr."""
    if "tasks" in summary:
        tasks = summary["tasks"]
        if tasks is None:
            print(
                f"{summary['dlq_url']}: the endpoint does not support message move tasks", file=file
            )
        elif not tasks:
            print(f"{summary['dlq_url']}: no message move tasks", file=file)
        for task in tasks or ():
            print(
                f"{task.get('Status')}  moved {task.get('ApproximateNumberOfMessagesMoved')}"
                f"/{task.get('ApproximateNumberOfMessagesToMove', '?')}  "
                f"to {task.get('DestinationArn', 'the source queues')}  "
                f"handle {task.get('TaskHandle', '-')}"
                + (f"  failure {task['FailureReason']}" if task.get("FailureReason") else ""),
                file=file,
            )
    elif "cancelled" in summary:
        print(f"cancelled {summary['cancelled']} after moving {summary['moved']}", file=file)
    elif summary["method"] == "native":
        print(
            f"message move task started: {summary['task_handle']} (follow it with --status)",
            file=file,
        )
    else:
        line = (
            f"moved {summary['moved']}  failed {summary['failed']}  "
            f"delete failed {summary['delete_failed']}  to {summary['destination_url']}"
        )
        print(line, file=file)
        if summary["error"]:
            print(f"asyncloop: error: {summary['error']}", file=sys.stderr)
        elif summary["failed"]:
            print(
                f"asyncloop: error: {summary['failed']} message(s) not moved: still in the DLQ",
                file=sys.stderr,
            )
