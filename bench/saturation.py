"""Saturation: `asyncloop run` on fauxqs + a local Lambda endpoint, per transport and process count.

    PYTHONPATH=. python -m bench.saturation [--transports sdk,lean] [--processes 1,2]
        [--event-loops asyncio] [--prefetch 0,10] [--invoke-ms 0] [--messages 10000]
        [--repeats 3] [--receivers 8] [--max-in-flight 256]

Starts fauxqs (`asyncloop.testing.FauxqsServer`, a Node child process) and
`asyncloop.testing.LambdaServer` (a Python child process, each Invoke answered after
`--invoke-ms`), so their CPU is theirs. For every setting (transport x processes x event
loop x prefetch) and every repeat, in an order that rotates between repeats, it creates a
queue, runs ``python -m asyncloop run --until-empty --json --function-name asyncloop-bench
--receivers R --max-in-flight C --prefetch F --transport T --processes P --event-loop L``
once on the empty queue (the start-up cost: imports, wiring, the last empty receives, the
stop), fills the queue with `--messages` messages, runs the same command again, and checks
that every message succeeded and was deleted. Event invokes; the endpoints reach the
children through ``AWS_ENDPOINT_URL_SQS`` / ``AWS_ENDPOINT_URL_LAMBDA`` with fixed test keys.

The table, one row per setting (medians of the repeats; every run's figure in brackets):

- msgs/s: the run's own ``throughput_msgs_s`` (successes from its start to the last one);
- consumer CPU/msg: user + system CPU of the `asyncloop run` process tree (the supervisor and
  its children, from the kernel's accounting of reaped children) of the full run minus that of
  the empty run, over the messages: start-up and imports are not included; the start-up
  column is the empty run's CPU;
- fauxqs CPU and LambdaServer CPU: seconds of CPU the emulators used during the full run.

Then the ratios, each computed within a repeat and the median taken: lean/sdk msgs/s and
sdk/lean CPU per message (same processes, loop and prefetch), P/P1 msgs/s (same transport,
loop and prefetch), prefetch F / prefetch 0 msgs/s (same transport, processes and loop).
With ``--invoke-ms`` above 0, msgs/s is also given as a fraction of C/L, the most
`--max-in-flight` dispatches of that latency can complete per second.
The load average at the start and end is printed: on a shared machine read the ratios, not
the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FUNCTION_NAME = "asyncloop-bench"
REGION = "us-east-1"
# Longer than any run: a message received once is not delivered twice within its run
VISIBILITY_TIMEOUT = 300
_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True, order=True)
class Setting:
    transport: str
    processes: int
    event_loop: str
    prefetch: int = 0

    @property
    def label(self) -> str:
        loop = "" if self.event_loop == "asyncio" else f" {self.event_loop}"
        prefetch = f" prefetch {self.prefetch}" if self.prefetch else ""
        return f"{self.transport} P{self.processes}{loop}{prefetch}"


@dataclass
class Runs:
    """One setting's figures, one entry per repeat."""

    msgs_s: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    startup_s: list[float] = field(default_factory=list)
    fauxqs_s: list[float] = field(default_factory=list)
    lambda_s: list[float] = field(default_factory=list)

    def add(self, figures: tuple[float, float, float, float, float]) -> None:
        """One repeat's (msgs/s, CPU us/msg, start-up s, fauxqs s, LambdaServer s)."""
        for values, value in zip(
            (self.msgs_s, self.cpu_us, self.startup_s, self.fauxqs_s, self.lambda_s),
            figures,
            strict=True,
        ):
            values.append(value)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_consumer(
    setting: Setting, queue_url: str, args: argparse.Namespace, env: Mapping[str, str]
) -> tuple[dict[str, Any], float]:
    """One `asyncloop run`; its JSON summary and the CPU seconds of its process tree."""
    command = [
        sys.executable,
        "-m",
        "asyncloop",
        "run",
        "--queue-url",
        queue_url,
        "--function-name",
        FUNCTION_NAME,
        "--receivers",
        str(args.receivers),
        "--max-in-flight",
        str(args.max_in_flight),
        "--prefetch",
        str(setting.prefetch),
        "--transport",
        setting.transport,
        "--processes",
        str(setting.processes),
        "--event-loop",
        setting.event_loop,
        "--until-empty",
        "--json",
        "--stats-interval",
        "0",
    ]
    # RUSAGE_CHILDREN grows when a child is reaped: the emulators are never reaped meanwhile,
    # so the difference is this run's tree (a supervisor's children are reaped by it first)
    before = _children_cpu()
    completed = subprocess.run(
        command, env=dict(env), capture_output=True, text=True, timeout=args.run_timeout
    )
    cpu = _children_cpu() - before
    if completed.returncode != 0:
        raise RuntimeError(
            f"{setting.label}: asyncloop run exited {completed.returncode}:\n"
            f"{completed.stderr[-3000:]}"
        )
    summary: dict[str, Any] = json.loads(completed.stdout)
    return summary, cpu


async def _fill(sqs: Any, queue_url: str, count: int) -> None:
    pending = iter(range(0, count, 10))

    async def sender() -> None:
        for first in pending:
            entries = [
                {"Id": str(i), "MessageBody": f"saturation message {first + i:08d} " + "x" * 64}
                for i in range(min(10, count - first))
            ]
            answer = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            if answer.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed: {answer['Failed']}")

    await asyncio.gather(*(sender() for _ in range(8)))


async def _left_in_queue(sqs: Any, queue_url: str) -> int:
    answer = await sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(value) for value in answer["Attributes"].values())


async def _one_run(
    setting: Setting,
    sqs: Any,
    args: argparse.Namespace,
    env: Mapping[str, str],
    emulator_cpu: Any,
) -> tuple[float, float, float, float, float]:
    name = f"saturation-{uuid.uuid4().hex[:12]}"
    queue_url = (
        await sqs.create_queue(
            QueueName=name, Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT)}
        )
    )["QueueUrl"]
    try:
        _, startup = await asyncio.to_thread(_run_consumer, setting, queue_url, args, env)
        await _fill(sqs, queue_url, args.messages)
        fauxqs_before, lambda_before = emulator_cpu()
        summary, cpu = await asyncio.to_thread(_run_consumer, setting, queue_url, args, env)
        fauxqs_after, lambda_after = emulator_cpu()
        left = await _left_in_queue(sqs, queue_url)
    finally:
        await sqs.delete_queue(QueueUrl=queue_url)
    if summary["succeeded"] != args.messages or summary["deleted"] != args.messages or left:
        raise RuntimeError(
            f"{setting.label}: {summary['succeeded']} succeeded, {summary['deleted']} deleted, "
            f"{left} left in the queue, of {args.messages}"
        )
    cpu_us = (cpu - startup) / args.messages * 1e6
    return (
        float(summary["throughput_msgs_s"]),
        cpu_us,
        startup,
        fauxqs_after - fauxqs_before,
        lambda_after - lambda_before,
    )


def _ratios(
    results: Mapping[Setting, Runs], pairs: Sequence[tuple[Setting, Setting]], attr: str
) -> list[tuple[Setting, Setting, float, list[float]]]:
    rows = []
    for numerator, denominator in pairs:
        if numerator not in results or denominator not in results:
            continue
        values = [
            a / b
            for a, b in zip(
                getattr(results[numerator], attr), getattr(results[denominator], attr), strict=True
            )
        ]
        rows.append((numerator, denominator, statistics.median(values), values))
    return rows


def _report(results: Mapping[Setting, Runs], args: argparse.Namespace) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(
        f"\n{args.messages} messages, R={args.receivers} C={args.max_in_flight}, Event invokes "
        f"of {args.invoke_ms:g} ms, medians of {args.repeats} (every run in brackets)"
    )
    # C/L: what max-in-flight dispatches of the invoke latency complete per second at most
    ideal = args.max_in_flight / (args.invoke_ms / 1000) if args.invoke_ms else None
    print(
        "| setting | msgs/s | "
        + ("of C/L | " if ideal else "")
        + "consumer CPU/msg (start-up excluded) | start-up CPU | fauxqs CPU | LambdaServer CPU |"
    )
    print("|---|---|" + ("---|" if ideal else "") + "---|---|---|---|")
    for setting, runs in sorted(results.items()):
        of_ideal = f"| {med(runs.msgs_s) / ideal:.3f} " if ideal else ""
        print(
            f"| {setting.label} | {med(runs.msgs_s):,.0f} "
            f"({', '.join(f'{v:,.0f}' for v in runs.msgs_s)}) {of_ideal}"
            f"| {med(runs.cpu_us):.0f} us ({', '.join(f'{v:.0f}' for v in runs.cpu_us)}) "
            f"| {med(runs.startup_s):.2f} s | {med(runs.fauxqs_s):.1f} s "
            f"| {med(runs.lambda_s):.1f} s |"
        )
    settings = list(results)
    lean_pairs = [
        (s, Setting("sdk", s.processes, s.event_loop, s.prefetch))
        for s in settings
        if s.transport == "lean"
    ]
    process_pairs = [
        (s, Setting(s.transport, 1, s.event_loop, s.prefetch)) for s in settings if s.processes > 1
    ]
    prefetch_pairs = [
        (s, Setting(s.transport, s.processes, s.event_loop, 0)) for s in settings if s.prefetch
    ]
    print("\nratios within each repeat (median; per repeat):")
    for a, b, median, values in _ratios(results, lean_pairs, "msgs_s"):
        print(f"  msgs/s {a.label} / {b.label}: {median:.2f}x {[round(v, 2) for v in values]}")
    for a, b, median, values in _ratios(results, [(b, a) for a, b in lean_pairs], "cpu_us"):
        print(f"  CPU/msg {a.label} / {b.label}: {median:.2f}x {[round(v, 2) for v in values]}")
    for a, b, median, values in _ratios(results, process_pairs + prefetch_pairs, "msgs_s"):
        print(f"  msgs/s {a.label} / {b.label}: {median:.2f}x {[round(v, 2) for v in values]}")


async def _main(args: argparse.Namespace) -> None:
    import aioboto3

    from asyncloop._bench._targets import proc_cpu_seconds
    from asyncloop._bench._targets.child_server import ChildServer
    from asyncloop.testing import FauxqsServer

    settings = [
        Setting(t, p, e, f)
        for t, p, e, f in itertools.product(
            args.transports, args.processes, args.event_loops, args.prefetch
        )
    ]
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    lambda_server = ChildServer("lambda", [f"{args.invoke_ms:g}"])
    lambda_server.start()
    try:
        with FauxqsServer() as fauxqs:
            fauxqs_pid = fauxqs.pid

            def emulator_cpu() -> tuple[float, float]:
                return (
                    proc_cpu_seconds(fauxqs_pid) or 0.0,
                    proc_cpu_seconds(lambda_server.pid) or 0.0,
                )

            env = {
                **os.environ,
                **_CREDENTIALS,
                "AWS_ENDPOINT_URL_SQS": fauxqs.endpoint_url,
                "AWS_ENDPOINT_URL_LAMBDA": lambda_server.endpoint_url,
                "ASYNCLOOP_LOG_LEVEL": "warning",
            }
            session = aioboto3.Session(
                region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
            )
            async with session.client("sqs", endpoint_url=fauxqs.endpoint_url) as sqs:
                results: dict[Setting, Runs] = {}
                for repeat in range(args.repeats):
                    shift = repeat % len(settings)
                    for setting in settings[shift:] + settings[:shift]:
                        started = time.monotonic()
                        figures = await _one_run(setting, sqs, args, env, emulator_cpu)
                        results.setdefault(setting, Runs()).add(figures)
                        print(
                            f"repeat {repeat + 1} {setting.label}: {figures[0]:,.0f} msgs/s, "
                            f"{figures[1]:.0f} us CPU/msg, start-up {figures[2]:.2f} s "
                            f"({time.monotonic() - started:.0f} s)",
                            flush=True,
                        )
    finally:
        lambda_server.stop()
    # Sorted by setting; the runs were made in rotating order
    _report(results, args)
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _names(text: str, choices: Sequence[str], flag: str) -> list[str]:
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    bad = [name for name in names if name not in choices]
    if not names or bad:
        raise SystemExit(f"{flag} must be a comma-separated list of {', '.join(choices)}")
    return names


def _counts(text: str, flag: str, *, least: int = 1) -> list[int]:
    try:
        counts = list(dict.fromkeys(int(part) for part in text.split(",")))
    except ValueError:
        raise SystemExit(f"{flag} must be a comma-separated list of integers") from None
    if not counts or min(counts) < least:
        raise SystemExit(f"{flag} must list integers >= {least}")
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transports", default="sdk,lean", help="sdk,lean (default both)")
    parser.add_argument("--processes", default="1", help="process counts, e.g. 1,2")
    parser.add_argument("--event-loops", default="asyncio", help="asyncio,uvloop")
    parser.add_argument("--prefetch", default="0", help="prefetch depths, e.g. 0,10")
    parser.add_argument("--invoke-ms", type=float, default=0.0, help="each Invoke's latency")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--receivers", type=int, default=8)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--run-timeout", type=float, default=600.0, help="seconds per run")
    args = parser.parse_args(argv)
    args.transports = _names(args.transports, ("sdk", "lean"), "--transports")
    args.processes = _counts(args.processes, "--processes")
    args.prefetch = _counts(args.prefetch, "--prefetch", least=0)
    args.event_loops = _names(args.event_loops, ("asyncio", "uvloop"), "--event-loops")
    if "uvloop" in args.event_loops and importlib.util.find_spec("uvloop") is None:
        parser.error("--event-loops uvloop needs uvloop: pip install 'asyncloop[uvloop]'")
    if args.messages < 10 or args.repeats < 1 or not 0 <= args.invoke_ms <= 60_000:
        parser.error("--messages must be >= 10, --repeats >= 1, --invoke-ms in 0..60000")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
