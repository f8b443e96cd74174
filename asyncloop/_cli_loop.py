"""The `asyncloop loop` command: start, stop, status and simulate (registered by `asyncloop._cli`).

Each handler takes the parsed arguments and returns the exit code: 0 done, 1 failed (AWS, or
an invariant of the simulation broke), 2 bad arguments or configuration, each failure
reported as one ``asyncloop: error:`` line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ._exceptions import AsyncloopError, ConfigError

if TYPE_CHECKING:
    from ._loop.runner import LoopRuntime

__all__ = ("register",)

_PROG = "asyncloop"


def _error(message: str, code: int) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return code


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn asyncloop's errors into one stderr line and the exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except ConfigError as exc:
            return _error(str(exc), 2)
        except AsyncloopError as exc:
            return _error(str(exc), 1)

    return run


def _add_aws(parser: argparse.ArgumentParser, *, stream: bool) -> None:
    parser.add_argument("--table", required=True, help="the DynamoDB lease table")
    if stream:
        parser.add_argument("--stream", required=True, help="the Kinesis token stream")
    parser.add_argument("--endpoint-url", help="one endpoint for every service (moto)")
    parser.add_argument("--region", help="the AWS region (default: the environment's)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``loop`` and its subcommands to the CLI."""
    loop = subparsers.add_parser(
        "loop",
        help="control the Lambda loop: start, stop, status, simulate",
        description="Control the self-retriggering Lambda loop through its lease table.",
    )
    commands = loop.add_subparsers(dest="loop_command", required=True, metavar="COMMAND")

    start = commands.add_parser("start", help="turn the switch on and seed loops")
    _add_aws(start, stream=True)
    start.add_argument("--loops", type=int, default=1, help="loops to have live (default: 1)")
    start.add_argument(
        "--max-loops", type=int, default=4, help="never more live loops than this (default: 4)"
    )
    start.add_argument(
        "--create-table", action="store_true", help="create the lease table if it is missing"
    )
    start.set_defaults(handler=_guarded(_start))

    stop = commands.add_parser(
        "stop", help="turn the switch off (the kill switch): loops end at their next run"
    )
    _add_aws(stop, stream=False)
    stop.set_defaults(handler=_guarded(_stop))

    status = commands.add_parser("status", help="live loops, generations, heartbeats, backlog")
    _add_aws(status, stream=False)
    status.add_argument("--queue-url", help="also show the queue's backlog")
    status.add_argument("--json", action="store_true", help="one JSON document")
    status.set_defaults(handler=_guarded(_status))

    simulate = commands.add_parser(
        "simulate", help="a simulated year of the control plane, with injected faults"
    )
    simulate.add_argument("--days", type=float, default=365.0, help="days to simulate (365)")
    simulate.add_argument("--seed", type=int, default=1, help="the random seed (1)")
    simulate.add_argument("--min-loops", type=int, default=1)
    simulate.add_argument("--max-loops", type=int, default=4)
    simulate.add_argument(
        "--fault-scale",
        type=float,
        default=1.0,
        help="multiply every fault rate (0 for none; default 1)",
    )
    simulate.add_argument("--json", action="store_true", help="the report as JSON")
    simulate.set_defaults(handler=_guarded(_simulate))


def _run(coro: Coroutine[Any, Any, int]) -> int:
    import asyncio

    return asyncio.run(coro)


async def _with_runtime(
    args: argparse.Namespace, body: Callable[[LoopRuntime], Coroutine[Any, Any, int]]
) -> int:
    from contextlib import AsyncExitStack

    from ._aws import AwsClients
    from ._config import AwsConfig
    from ._loop.control import LoopPolicy
    from ._loop.lease_dynamodb import DynamoLeaseStore
    from ._loop.runner import LoopRuntime
    from ._loop.settings import KinesisTokenSink

    aws = AwsConfig(region=args.region, endpoint_url=args.endpoint_url, read_timeout=30.0)
    policy = LoopPolicy(
        max_loops=getattr(args, "max_loops", 4),
        min_loops=min(getattr(args, "loops", 1), getattr(args, "max_loops", 4)),
    )
    async with AsyncExitStack() as stack:
        clients = await stack.enter_async_context(AwsClients(aws, pool_size=4))
        lease = DynamoLeaseStore(await clients.client("dynamodb"), args.table)
        if getattr(args, "create_table", False):
            await lease.create_table()
        stream = getattr(args, "stream", None)

        async def unused() -> Any:
            raise RuntimeError("the CLI does not consume")

        runtime = LoopRuntime(
            lease=lease,
            sink=KinesisTokenSink(await clients.client("kinesis"), stream or ""),
            consume=lambda _: unused(),
            backlog=unused,
            policy=policy,
            margin=0.0,
            metrics=False,
            write=lambda line: None,
        )
        return await body(runtime)


def _start(args: argparse.Namespace) -> int:
    if args.loops < 0 or args.max_loops < 1 or args.loops > args.max_loops:
        return _error(f"--loops must be in 0..--max-loops ({args.max_loops}), got {args.loops}", 2)

    async def body(rt: LoopRuntime) -> int:
        from ._loop.runner import start_loops

        started = await start_loops(rt, args.loops)
        control = await rt.lease.get_control()
        print(f"switch on; started {len(started)} loop(s); {control.live} live")
        return 0

    return _run(_with_runtime(args, body))


def _stop(args: argparse.Namespace) -> int:
    async def body(rt: LoopRuntime) -> int:
        await rt.lease.set_enabled(False)
        control = await rt.lease.get_control()
        print(f"switch off; {control.live} loop(s) live will end at their next run")
        return 0

    return _run(_with_runtime(args, body))


def _status(args: argparse.Namespace) -> int:
    if args.queue_url is not None:
        from ._validate import validate_queue_url

        validate_queue_url(args.queue_url, field="--queue-url")

    async def body(rt: LoopRuntime) -> int:
        control = await rt.lease.get_control()
        leases = sorted(await rt.lease.list_leases(), key=lambda item: item.loop_id)
        now = time.time()
        backlog = None
        if args.queue_url is not None:
            backlog = await _backlog(args)
        loops = [
            {
                "loop_id": item.loop_id,
                "generation": item.generation,
                "heartbeat_age_s": round(now - item.heartbeat, 1),
                "running": item.run_until > now,
                "empty_generations": item.empty_generations,
            }
            for item in leases
        ]
        doc = {
            "enabled": control.enabled,
            "live": control.live,
            "backlog": backlog,
            "loops": loops,
        }
        if args.json:
            print(json.dumps(doc))
            return 0
        switch = "on" if control.enabled else "off"
        print(
            f"switch {switch}; {control.live} live loop(s)"
            + (f"; backlog {backlog}" if backlog is not None else "")
        )
        for loop in loops:
            print(
                f"  {loop['loop_id']}  generation {loop['generation']}  "
                f"heartbeat {loop['heartbeat_age_s']}s ago"
                + ("  running" if loop["running"] else "")
            )
        return 0

    return _run(_with_runtime(args, body))


async def _backlog(args: argparse.Namespace) -> int:
    from ._aws import AwsClients, SqsQueue
    from ._config import AwsConfig

    aws = AwsConfig(region=args.region, endpoint_url=args.endpoint_url, read_timeout=30.0)
    async with AwsClients(aws, pool_size=2) as clients:
        attributes = await SqsQueue(clients.sqs, args.queue_url).get_attributes(
            ["ApproximateNumberOfMessages"]
        )
    return int(attributes.get("ApproximateNumberOfMessages", "0"))


def _simulate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ._loop.simulate import SimConfig, simulate

    if not 0 < args.days <= 3660:
        return _error(f"--days must be in 0..3660, got {args.days}", 2)
    from ._validate import check_range

    # ConfigError, an exit 2 from `_guarded`; a NaN or inf scale would poison every rate
    check_range("--fault-scale", args.fault_scale, 0.0, None)
    base = SimConfig().with_faults_scaled(args.fault_scale)
    policy = replace(base.policy, min_loops=args.min_loops, max_loops=args.max_loops)
    config = replace(base, days=args.days, seed=args.seed, policy=policy)
    report = simulate(config)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _print_report(report)
    return 0 if report.ok else 1


def _print_report(report: Any) -> None:
    r = report
    print(f"simulated {r.days:g} days (seed {r.seed}) in {r.wall_s:.1f} s")
    print(
        f"  invocations {r.invocations:,}; runs {r.runs:,}; takeovers {r.takeovers}; "
        f"stale exits {r.stale_exits}; messages {r.messages:,} (backlog max {r.backlog_max:,})"
    )
    print(
        f"  live loops min {r.live_min} max {r.live_max}; spawned {r.spawned}; "
        f"ended idle {r.ended_idle}, by the switch {r.ended_killed}; re-seeded {r.reseeded} "
        f"(raced by a late copy {r.reseed_races})"
    )
    print(
        f"  longest with zero loops {r.longest_zero_loops_s:.1f} s; longest claim gap "
        f"{r.longest_claim_gap_s:.1f} s (bound {r.claim_gap_bound_s:.0f} s); put-failed runs "
        f"{r.put_failed_runs}; dropped records {r.dropped_records}"
    )
    print("  faults: " + ", ".join(f"{k} {v}" for k, v in r.faults.items()))
    print(
        "  invariants: "
        + ", ".join(f"{k} {'ok' if v else 'BROKEN'}" for k, v in r.invariants.items())
    )
    for line in r.violations:
        print(f"    {line}")
    print("every invariant held" if r.ok else "INVARIANTS BROKEN")
