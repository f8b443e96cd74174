"""Reliability under HTTP faults: N messages through a fault-injecting proxy, nothing lost.

    python -m bench.reliability --messages 10000 [--fault-rate 0.10] [--seed 1]
        [--transport sdk|lean] [--prefetch N] [--json]

What it measures: whether every message ends where it should when a tenth of all requests
fail. fauxqs (SQS, Node) and asyncloop.testing's `LambdaServer` each sit behind a `FaultProxy`
that answers a share of requests with 500 ``InternalError``, 503 ``ServiceUnavailable``,
``ThrottlingException`` (429 ``TooManyRequestsException`` for Lambda), a connection reset, or an
answer slower than the client's read timeout; a share of the faults happen after the request
reached the server (a delete done, a function run, but the client sees an error: the
duplicates' cause). The consumer invokes the function ``RequestResponse`` per message; one
message in `poison_every` is a deliberate poison that always fails. It is wired by
`asyncloop.open_consumer` on the transport asked for (``sdk``: aiobotocore; ``lean``: the lean
transport), each service reached through its proxy by ``AWS_ENDPOINT_URL_SQS`` and
``AWS_ENDPOINT_URL_LAMBDA`` for the run.

Workload constants: visibility timeout 4 s (heartbeat on), maxReceiveCount 5 (a receive whose
answer a fault lost still counts, so 2 would send unlucky good messages to the DLQ), failure
backoff 1 s, client read timeout 2 s (above the 1 s long poll), slow faults held 2.5 s,
botocore standard retries (5 attempts), 64 in flight, 4 receivers, function latency 2 ms;
`--prefetch` (default 0) holds that many more, waiting for a dispatch.

The run ends when the source queue is empty and the DLQ holds every poison. Outcomes:
``lost`` (sent, neither run successfully nor in the DLQ: must be 0), ``misplaced`` (a good
message in the DLQ, or a poison that ran successfully: must be 0), ``duplicates`` (successful
runs beyond one per message), bounded by the faults that can cause them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, get_args

import anyio

import asyncloop
from asyncloop import AwsClients, AwsConfig, ConsumerConfig, LambdaConfig
from asyncloop._config import Transport
from asyncloop.testing import FaultProxy, Faults, FauxqsServer, LambdaServer, node_available

__all__ = ("FaultReport", "main", "run_fault_scenario")

REGION = "us-east-1"
FUNCTION = "reliability-worker"
VISIBILITY_TIMEOUT = 4
MAX_RECEIVE_COUNT = 5
READ_TIMEOUT = 2.0
SLOW_DELAY = 2.5
FUNCTION_LATENCY = 0.002


@dataclass
class FaultReport:
    """One run's outcome; `ok` says whether it met the contract."""

    messages: int
    poison: int
    fault_rate: float
    transport: str = "sdk"
    prefetch: int = 0
    seconds: float = 0.0
    succeeded_unique: int = 0
    successful_runs: int = 0
    duplicates: int = 0
    in_dlq: int = 0
    lost: int = 0
    misplaced: int = 0
    left_in_queue: int = 0
    faults_sqs: dict[str, int] = field(default_factory=dict)
    faults_lambda: dict[str, int] = field(default_factory=dict)
    faults_after_forward: int = 0
    duplicate_bound: int = 0
    consumer: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.misplaced == 0
            and self.left_in_queue == 0
            and self.duplicates <= self.duplicate_bound
        )


def _faults(rate: float, *, lambda_side: bool) -> Faults:
    # Mixed: a fifth of the rate each, a third of them after the request reached the server.
    share = rate / 5
    return Faults(
        internal_error=share,
        service_unavailable=share,
        throttle=share,
        reset=share,
        slow=share,
        after_forward=1 / 3,
        slow_delay=SLOW_DELAY,
        throttle_status=429 if lambda_side else 400,
    )


async def _create_queues(sqs: Any, prefix: str) -> tuple[str, str]:
    dlq_url: str = (await sqs.create_queue(QueueName=f"{prefix}-dlq"))["QueueUrl"]
    dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    url: str = (
        await sqs.create_queue(
            QueueName=prefix,
            Attributes={
                "VisibilityTimeout": str(VISIBILITY_TIMEOUT),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
                ),
            },
        )
    )["QueueUrl"]
    return url, dlq_url


async def _send(sqs: Any, url: str, bodies: list[str]) -> None:
    async def batch(start: int) -> None:
        chunk = bodies[start : start + 10]
        await sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
        )

    async with anyio.create_task_group() as tg:
        for start in range(0, len(bodies), 10):
            tg.start_soon(batch, start)


async def _count(sqs: Any, url: str) -> int:
    attributes = (
        await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


async def _drain_bodies(sqs: Any, url: str) -> list[str]:
    bodies: list[str] = []
    while True:
        answer = await sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
        )
        got = answer.get("Messages", [])
        if not got:
            return bodies
        bodies.extend(m["Body"] for m in got)


@contextmanager
def _service_endpoints(*, sqs: str, lambda_: str) -> Iterator[None]:
    # botocore's per-service endpoint variables: AwsConfig has one endpoint for both services
    names = {"AWS_ENDPOINT_URL_SQS": sqs, "AWS_ENDPOINT_URL_LAMBDA": lambda_}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def run_fault_scenario(
    *,
    messages: int = 2000,
    fault_rate: float = 0.10,
    poison_every: int = 100,
    seed: int = 1,
    max_seconds: float = 300.0,
    transport: Transport | None = None,
    prefetch: int = 0,
) -> FaultReport:
    """Run the scenario against a fauxqs it starts, on `transport` (default: `AwsConfig`'s),
    the consumer prefetching `prefetch` messages; needs Node (see `node_available`)."""
    aws = AwsConfig(region=REGION, read_timeout=READ_TIMEOUT)
    if transport is not None:
        aws = replace(aws, transport=transport)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
    }.items():
        os.environ.setdefault(name, value)
    bodies = [
        f"poison-{i}" if poison_every and i % poison_every == 0 else f"good-{i}"
        for i in range(messages)
    ]
    poison = {b for b in bodies if b.startswith("poison")}
    report = FaultReport(
        messages=messages,
        poison=len(poison),
        fault_rate=fault_rate,
        transport=aws.transport,
        prefetch=prefetch,
    )
    runs: Counter[str] = Counter()

    def on_invoke(name: str, payload: bytes) -> None:
        body = json.loads(payload)["Records"][0]["sqs"]["Body"]
        if body.startswith("poison"):
            raise RuntimeError("deliberate poison")
        runs[body] += 1

    async with (
        FauxqsServer() as fauxqs,
        LambdaServer(latency=FUNCTION_LATENCY, on_invoke=on_invoke, functions=[FUNCTION]) as lam,
        FaultProxy(fauxqs.endpoint_url, seed=seed) as sqs_proxy,
        FaultProxy(lam.endpoint_url, seed=seed + 1) as lambda_proxy,
    ):
        consumer_config = ConsumerConfig(
            receivers=4,
            max_in_flight=64,
            prefetch=prefetch,
            wait_time_seconds=1,
            failure_backoff_base=1.0,
            failure_backoff_cap=1.0,
            shutdown_grace=5.0,
        )
        async with AsyncExitStack() as stack:
            admin = await stack.enter_async_context(
                AwsClients(AwsConfig(region=REGION, endpoint_url=fauxqs.endpoint_url), pool_size=16)
            )
            url, dlq_url = await _create_queues(admin.sqs, f"reliability-{seed}")
            await _send(admin.sqs, url, bodies)
            stack.enter_context(
                _service_endpoints(sqs=sqs_proxy.endpoint_url, lambda_=lambda_proxy.endpoint_url)
            )
            consumer = await stack.enter_async_context(
                asyncloop.open_consumer(
                    url,
                    lambda_config=LambdaConfig(
                        function_name=FUNCTION, invocation_type="RequestResponse"
                    ),
                    config=consumer_config,
                    aws=aws,
                )
            )
            # Faults only from here: the setup (queues, messages, the wiring's checks) is not
            # under test.
            sqs_proxy.faults = _faults(fault_rate, lambda_side=False)
            lambda_proxy.faults = _faults(fault_rate, lambda_side=True)
            started = time.perf_counter()

            async def watch() -> None:
                # Done when the source is empty and the DLQ holds every poison.
                while True:
                    await anyio.sleep(0.25)
                    if await _count(admin.sqs, url) == 0 and await _count(
                        admin.sqs, dlq_url
                    ) >= len(poison):
                        consumer.stop()
                        return

            with anyio.move_on_after(max_seconds):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch)
                    await consumer.run()
                    tg.cancel_scope.cancel()
            consumer.stop()
            report.seconds = round(time.perf_counter() - started, 3)
            sqs_proxy.faults = Faults()
            lambda_proxy.faults = Faults()
            report.left_in_queue = await _count(admin.sqs, url)
            dlq_bodies = await _drain_bodies(admin.sqs, dlq_url)

    succeeded = set(runs)
    in_dlq = set(dlq_bodies)
    report.succeeded_unique = len(succeeded)
    report.successful_runs = sum(runs.values())
    report.duplicates = report.successful_runs - report.succeeded_unique
    report.in_dlq = len(dlq_bodies)
    report.lost = len(set(bodies) - succeeded - in_dlq)
    report.misplaced = len(in_dlq - poison) + len(succeeded & poison)
    report.faults_sqs = {k: v for k, v in sqs_proxy.injected.items() if v}
    report.faults_lambda = {k: v for k, v in lambda_proxy.injected.items() if v}
    report.faults_after_forward = sum(sqs_proxy.injected_after_forward.values()) + sum(
        lambda_proxy.injected_after_forward.values()
    )
    # A duplicate needs a fault: a function run whose answer was lost (after-forward), an
    # invoke held past the client's timeout (retried, then forwarded late: two runs), or a
    # delete that never landed (each delete failure, a duplicate at most).
    stats = consumer.stats
    report.duplicate_bound = (
        report.faults_after_forward
        + lambda_proxy.injected["slow"]
        + stats.delete_failed
        + stats.lease_lost
    )
    report.consumer = {
        key: value
        for key, value in stats.to_dict().items()
        if key not in ("latency_ms", "send_to_done_ms")
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--fault-rate", type=float, default=0.10)
    parser.add_argument("--poison-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--transport",
        choices=get_args(Transport),
        default=AwsConfig().transport,
        help="how the consumer's hot calls are sent (default: %(default)s, AwsConfig's)",
    )
    parser.add_argument(
        "--prefetch", type=int, default=0, help="the consumer's prefetch (default 0)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if not node_available():
        print("bench.reliability needs Node.js >= 20 for fauxqs", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR)
    report = anyio.run(
        lambda: run_fault_scenario(
            messages=args.messages,
            fault_rate=args.fault_rate,
            poison_every=args.poison_every,
            seed=args.seed,
            max_seconds=args.timeout,
            transport=args.transport,
            prefetch=args.prefetch,
        )
    )
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    else:
        for key, value in asdict(report).items():
            print(f"{key:>22}: {value}")
        print(f"{'ok':>22}: {report.ok}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
