"""``asyncloop bench``: parse the flags, build an `asyncloop._bench.BenchConfig`, run it, write
the reports.

The benchmark itself lives in the private ``asyncloop._bench`` package, imported only when the
command runs.
Bad arguments exit 2 with one ``asyncloop: error: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from asyncloop._bench._config import BenchConfig

__all__ = ("register",)

_DESCRIPTION = """\
Measure the consumer against a target and compare it with baselines run on the same workload
in the same invocation: seed-sequential (the seed's consumer.js: receive 10, invoke each in
turn) and naive-gather (receive 10, gather, delete); on fauxqs also node-sqs-consumer (bbc's
sqs-consumer on Node 20+, skipped where Node is missing).

With no flags it answers "what should I set?" in about two minutes: max-in-flight 1..256 at
1 and 4 receivers on the fake target under the aws-like latency profile, then the same
settings over real HTTP on an embedded moto server where moto's own ceiling allows (the
others are reported as emulator-bound), and a recommendation: the smallest setting within 5%
of the best throughput, its p99, and the ceiling that bounds it.

LIST is comma separated (1,16,64,256); the sweep is the product of --receivers,
--max-in-flight, --batch-size, --prefetch (0,10: each setting without and with a prefetch of
10; default 0) and --transport (sdk,lean: each setting on both, side by side; moto, fauxqs
and aws targets only; on moto and fauxqs each transport's CPU floor is measured in the same
run). Latencies are milliseconds, fixed (50) or lognormal given p50:p99 (50:200);
they override the profile's. Defaults depend on the target (see bench/RESULTS.md, which also
cites the aws-like figures).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` command to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the consumer against fake, moto, fauxqs or AWS, with baselines",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Values are parsed by the handler, not argparse, so every bad value gets the CLI's own
    # one-line "asyncloop: error:" and exit code 2.
    parser.add_argument(
        "--target",
        metavar="fake|moto|fauxqs|aws",
        help="where to run (default: fake, then the HTTP check on moto)",
    )
    parser.add_argument(
        "--profile",
        default="aws-like",
        metavar="aws-like|zero",
        help="latency profile: per-operation latencies on fake, moto and fauxqs (default aws-like)",
    )
    parser.add_argument(
        "--http-check",
        metavar="moto|fauxqs|none",
        help="with the fake target: rerun the settings over real HTTP where the emulator's "
        "ceiling allows (default moto without --target, else none)",
    )
    parser.add_argument("--messages", metavar="N", help="messages per run (default per target)")
    parser.add_argument("--receivers", metavar="LIST", help="receivers to sweep")
    parser.add_argument("--max-in-flight", metavar="LIST", help="max in flight (C) to sweep")
    parser.add_argument("--batch-size", metavar="LIST", help="receive batch sizes to sweep (1..10)")
    parser.add_argument(
        "--prefetch",
        metavar="LIST",
        help="the consumer's prefetch depths to sweep (0..100000; default 0)",
    )
    parser.add_argument(
        "--delete-by",
        default="consumer",
        metavar="consumer|worker",
        help="who deletes: the consumer, in batches (default), or the worker (the seed)",
    )
    parser.add_argument(
        "--latency-ms", metavar="L", help="SQS latency per call, instead of the profile's"
    )
    parser.add_argument(
        "--invoke-latency-ms",
        metavar="L",
        help="Invoke latency instead of the profile's (aws: the no-op function's sleep)",
    )
    parser.add_argument(
        "--transport",
        metavar="LIST",
        help="the consumer's transports to sweep: sdk, lean or sdk,lean (moto, fauxqs and aws "
        "only; default: asyncloop's, lean)",
    )
    parser.add_argument(
        "--invocation-type",
        default="Event",
        metavar="Event|RequestResponse",
        help="how the consumer invokes (default Event)",
    )
    parser.add_argument(
        "--worker-ms",
        metavar="MS",
        help="the function's run time added to RequestResponse invokes (profile: 100)",
    )
    parser.add_argument("--repeats", default="1", metavar="K", help="repeats (default 1)")
    parser.add_argument(
        "--baselines",
        default=None,
        metavar="LIST|none",
        help="baselines to run too: seed-sequential, naive-gather, node-sqs-consumer (fauxqs "
        "only); default all that apply to the target",
    )
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="aws target: one endpoint for SQS, Lambda and IAM (e.g. a moto server)",
    )
    parser.add_argument("--region", metavar="NAME", help="aws target: the region")
    parser.add_argument(
        "--out", metavar="DIR", help="output directory (default bench-results/<timestamp>)"
    )
    parser.add_argument(
        "--yes", action="store_true", help="aws target: create resources without asking"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A.json", "B.json"),
        help="print the change per setting from A to B, and run nothing; refuses results "
        "of different targets, profiles or workloads; a setting's transport is part of it "
        "(sdk and lean rows are matched apart)",
    )
    parser.add_argument(
        "--force", action="store_true", help="--compare: compare different runs anyway"
    )
    parser.set_defaults(handler=run_bench_command)


def _error(message: str) -> int:
    print(f"asyncloop: error: {message}", file=sys.stderr)
    return 2


def _int(text: str, flag: str) -> int:
    from asyncloop._bench._config import BenchError

    try:
        return int(text)
    except (TypeError, ValueError):
        raise BenchError(f"{flag} must be an integer, got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The `BenchConfig` for parsed arguments; `bench.BenchError` names a bad one."""
    from asyncloop._bench._config import (
        BASELINES,
        TRANSPORTS,
        BenchConfig,
        BenchError,
        LatencyModel,
        parse_int_list,
        parse_names,
    )

    def ints(value: str | None, flag: str) -> tuple[int, ...] | None:
        return None if value is None else parse_int_list(value, flag=flag)

    def latency(value: str | None, flag: str) -> LatencyModel | None:
        return None if value is None else LatencyModel.parse(value, flag=flag)

    worker_ms = None
    if args.worker_ms is not None:
        try:
            worker_ms = float(args.worker_ms)
        except ValueError:
            raise BenchError(f"--worker-ms must be milliseconds, got {args.worker_ms!r}") from None
    check = args.http_check
    if check is None:
        # The default command checks on moto; an explicit target runs only where it says.
        check = "moto" if args.target is None else "none"
    return BenchConfig(
        target=args.target or "fake",
        profile=args.profile,
        http_check=None if check == "none" else check,
        invocation_type=args.invocation_type,
        worker_ms=worker_ms,
        messages=None if args.messages is None else _int(args.messages, "--messages"),
        receivers=ints(args.receivers, "--receivers"),
        max_in_flight=ints(args.max_in_flight, "--max-in-flight"),
        batch_size=ints(args.batch_size, "--batch-size"),
        prefetch=ints(args.prefetch, "--prefetch"),
        transport=None
        if args.transport is None
        else parse_names(args.transport, flag="--transport", choices=TRANSPORTS, allow_none=False),
        delete_by=args.delete_by,
        latency=latency(args.latency_ms, "--latency-ms"),
        invoke_latency=latency(args.invoke_latency_ms, "--invoke-latency-ms"),
        repeats=_int(args.repeats, "--repeats"),
        baselines=None
        if args.baselines is None
        else parse_names(args.baselines, flag="--baselines", choices=BASELINES),
        endpoint_url=args.endpoint_url,
        region=args.region,
        out=args.out,
        yes=args.yes,
    )


def _check_aws(config: BenchConfig, stdin: TextIO, stderr: TextIO) -> str | None:
    """None when the aws target may go ahead; else the error message."""
    from asyncloop._bench._targets import aws_plan

    if config.endpoint_url is None:
        explicit = any(
            os.environ.get(name)
            for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")
        )
        if not explicit:
            return (
                "the aws target needs explicit credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (instance metadata is not used)"
            )
        if not (config.region or os.environ.get("AWS_REGION")):
            return "the aws target needs --region (or AWS_REGION)"
    # Credentials come from the environment or a profile, never from instance metadata.
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    print(aws_plan(config), file=stderr)
    if config.yes:
        return None
    if not stdin.isatty():
        return "the aws target asks for confirmation: pass --yes to run without a terminal"
    print("Proceed? [y/N] ", end="", file=stderr, flush=True)
    answer = stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        return "not confirmed: nothing was created"
    return None


def _compare(paths: list[str], *, force: bool) -> int:
    from asyncloop._bench._compare import compare
    from asyncloop._bench._report import load_results

    try:
        before, after = (load_results(path) for path in paths)
        print(compare(before, after, force=force))
    except ValueError as exc:
        return _error(str(exc))
    return 0


def run_bench_command(
    args: argparse.Namespace, *, stdin: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """The ``bench`` command: returns the exit code."""
    from asyncloop._bench._config import BenchError

    stdin = stdin if stdin is not None else sys.stdin
    stderr = stderr if stderr is not None else sys.stderr
    if args.compare:
        return _compare(list(args.compare), force=args.force)
    try:
        config = config_from_args(args)
        config.resolved()
    except BenchError as exc:
        return _error(str(exc))
    if config.target == "aws":
        problem = _check_aws(config, stdin, stderr)
        if problem is not None:
            return _error(problem)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(config.out) if config.out else Path("bench-results") / stamp
    try:
        doc = _run(config, stderr)
    except BenchError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print("asyncloop: interrupted (temporary resources were deleted)", file=stderr)
        return 130
    except Exception as exc:
        # The target failed (unreachable endpoint, refused credentials, AWS errors): one line,
        # exit 1. Temporary resources were deleted on the way out.
        if not _is_target_failure(exc):
            raise
        print(f"asyncloop: error: the {config.target} target failed: {exc}", file=stderr)
        return 1
    return _write(doc, out)


def _is_target_failure(exc: BaseException) -> bool:
    from asyncloop import AsyncloopError

    if isinstance(exc, AsyncloopError | OSError):
        return True
    botocore_exceptions = sys.modules.get("botocore.exceptions")
    if botocore_exceptions is not None:
        return isinstance(exc, botocore_exceptions.BotoCoreError | botocore_exceptions.ClientError)
    return False


def _run(config: BenchConfig, stderr: TextIO) -> dict[str, Any]:
    from asyncloop._bench._runner import run_bench

    # The consumer logs its start and stop at INFO: once per run here, noise among the
    # progress bar (and time spent in the measured loop). Warnings still show.
    # The same for botocore's "Found credentials in environment variables".
    loggers = [logging.getLogger(name) for name in ("asyncloop", "aiobotocore", "botocore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.WARNING))
    try:
        return asyncio.run(
            run_bench(config, progress_stream=stderr, argv=["asyncloop", *sys.argv[1:]])
        )
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _write(doc: dict[str, Any], out: Path) -> int:
    from asyncloop._bench._report import write_outputs
    from asyncloop._bench._tables import format_table

    paths = write_outputs(doc, out)
    print(format_table(doc))
    print()
    print(f"results: {paths['results']}")
    print(f"report:  {paths['report']}")
    if paths["plot"] is not None:
        print(f"plot:    {paths['plot']}")
    else:
        print("plot:    none (matplotlib is missing: pip install 'asyncloop[plot]')")
    return 0
