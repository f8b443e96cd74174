"""Targets: where the benchmark's queue and function live.

``fake``
    `BenchFakeQueue` and `asyncloop.testing.FakeLambda` in the bench's event loop, with the
    latency profile's figure on each call: isolates the loop's own cost.
``moto``
    moto's server in a child process (`_server_process.py`; Lambda without Docker) behind a
    latency-injecting `FaultProxy` in the same child, which holds each request for the
    profile's figure for its operation; reached over real HTTP with aioboto3. A child, not a
    thread: moto's CPU (and its GIL) stay out of the bench's measurements.
``fauxqs``
    fauxqs (Node, `asyncloop.testing.FauxqsServer`) behind a latency proxy (a child process)
    for SQS, and asyncloop.testing's local Lambda Invoke endpoint (`LambdaServer`, in a child
    process, the profile's Invoke latency) for Lambda.
``aws``
    Real AWS (or any endpoint given with ``--endpoint-url``): creates a queue per run, a DLQ,
    a tiny no-op function and its role, all named with a unique prefix, and deletes them all
    on the way out, even when interrupted.

On the HTTP targets a feeder thread (plain boto3, its own connection) keeps `backlog`
messages visible ahead of the contender: moto's cost per request grows with its backlog, and
every contender meets the same queue depth. Its CPU is on its own thread: the bench reports
the event loop thread's CPU (`time.thread_time`) as the loop's, and the process's as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.to_thread

from asyncloop import AwsConfig, LambdaConfig, LambdaDispatcher, Message, build_payload
from asyncloop.testing import FakeLambda

from ._config import BenchConfig, BenchError
from ._latency_profiles import OPERATIONS
from ._workload import BenchFakeQueue, CountingQueue, Tracker, TrackingDispatcher, body

__all__ = ("RunEnv", "Target", "make_target", "moto_missing", "proc_cpu_seconds")

logger = logging.getLogger("asyncloop.bench")

FUNCTION_NAME: Final = "asyncloop-bench"
# Longer than any run: a message received once is never delivered again during its run.
_HTTP_VISIBILITY_TIMEOUT: Final = 300
# The fake's: short, so its heap of in-flight messages stays small on long runs.
_FAKE_VISIBILITY_TIMEOUT: Final = 5
_SERVER_SCRIPT: Final = Path(__file__).with_name("_server_process.py")
_CLK_TCK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Raw workers of the emulator-ceiling calibration, each receive 10 / invoke 10 / delete 10.
_CEILING_WORKERS: Final = 16

_NOOP_SOURCE: Final = """\
import os, time
def handler(event, context):
    time.sleep(float(os.environ.get("SLEEP_MS", "0")) / 1000)
"""
_ASSUME_LAMBDA: Final = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
_FAKE_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def proc_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` (Linux /proc), or None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[11], fields[12]: utime, stime (the 14th and 15th of the full line)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


@dataclass
class RunEnv:
    """One run's queue and dispatcher (both counting into `tracker`), and its feeder."""

    queue: CountingQueue
    dispatcher: TrackingDispatcher
    tracker: Tracker
    start_feeding: Callable[[], None] = lambda: None
    server_pids: list[int] = field(default_factory=list)
    feeder_error: list[BaseException] = field(default_factory=list)
    # The HTTP targets' endpoints, for a contender in another process (node-sqs-consumer).
    sqs_endpoint: str | None = None
    lambda_endpoint: str | None = None
    function_name: str | None = None
    region: str | None = None

    def server_cpu(self) -> float | None:
        """CPU seconds used so far by the emulator processes, or None (fake, aws)."""
        if not self.server_pids:
            return None
        total = 0.0
        for pid in self.server_pids:
            seconds = proc_cpu_seconds(pid)
            if seconds is None:
                return None
            total += seconds
        return total


class Target(ABC):
    """A place to run: entered once per bench, `run_env` once per run."""

    name: str

    def __init__(self, config: BenchConfig) -> None:
        self.config = config

    async def __aenter__(self) -> Target:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    @abstractmethod
    def run_env(self, n: int, tracker: Tracker) -> contextlib.AbstractAsyncContextManager[RunEnv]:
        """A fresh queue holding the first `backlog` of `n` messages, before timing starts."""

    async def calibrate(self) -> dict[str, Any]:
        """Target-specific reference figures measured in the same run (see the runner)."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


# -- fake ---------------------------------------------------------------------------------


class FakeTarget(Target):
    name = "fake"

    @contextlib.asynccontextmanager
    async def run_env(self, n: int, tracker: Tracker) -> AsyncIterator[RunEnv]:
        config = self.config
        profile = config.latency_profile()
        latency = {
            op: profile.sqs(op).sampler(seed=seed) for seed, op in enumerate(OPERATIONS, start=1)
        }
        queue = BenchFakeQueue(visibility_timeout=_FAKE_VISIBILITY_TIMEOUT, latency=latency)
        lambda_ = FakeLambda(latency=config.invoke_model().sampler(seed=len(OPERATIONS) + 1))
        if config.delete_by == "worker":

            async def worker(event: Any) -> None:
                # The seed's worker: delete the message it was given once its work is done.
                tracker.calls["DeleteMessageBatch (worker)"] += 1
                await queue.delete_batch([("0", event["Records"][0]["sqs"]["ReceiptHandle"])])

            lambda_.add_function(FUNCTION_NAME, worker)
        else:
            lambda_.add_function(FUNCTION_NAME)

        def top_up(received: int) -> None:
            # The producer: keep `backlog` messages visible, in the receive's own turn.
            count = min(received, n - tracker.sent)
            for _ in range(count):
                queue.send(body(tracker.sent))
                tracker.sent += 1

        backlog = config.backlog or 1
        for _ in range(min(n, backlog)):
            queue.send(body(tracker.sent))
            tracker.sent += 1
        dispatcher = LambdaDispatcher(
            invoker=lambda_,
            config=LambdaConfig(
                function_name=FUNCTION_NAME, invocation_type=config.invocation_type
            ),
            queue_url=queue.queue_url,
        )
        yield RunEnv(
            queue=CountingQueue(queue, tracker, after_receive=top_up),
            dispatcher=TrackingDispatcher(dispatcher, tracker),
            tracker=tracker,
        )


# -- the HTTP targets -----------------------------------------------------------------------


class _ChildServer:
    """`_server_process.py` in a child process: `start`, `endpoint_url`, `pid`, `stop`."""

    def __init__(self, kind: str, args: list[str], *, start_timeout: float = 60.0) -> None:
        self.kind = kind
        self.args = args
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint_url = ""
        self.pid: int | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(_SERVER_SCRIPT), self.kind, *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        stdout = self.process.stdout
        assert stdout is not None
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        try:
            announced = json.loads(lines[0])
            self.endpoint_url = str(announced["endpoint_url"])
            self.pid = int(announced["pid"])
        except (IndexError, ValueError, KeyError) as exc:
            self.stop()
            raise BenchError(f"the {self.kind} server did not start") from exc

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


class _Feeder:
    """Keeps `backlog` messages visible (sent minus received) until `n` were sent.

    Runs in its own thread with a plain boto3 client, so its CPU is off the event loop's
    thread. `prefill` sends the first `backlog` before a run is timed.
    """

    def __init__(
        self,
        client: Any,
        queue_url: str,
        tracker: Tracker,
        n: int,
        backlog: int,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.client = client
        self.queue_url = queue_url
        self.tracker = tracker
        self.n = n
        self.backlog = backlog
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _send(self, count: int) -> None:
        tracker = self.tracker
        first = tracker.sent
        entries = [{"Id": str(i), "MessageBody": body(first + i)} for i in range(count)]
        response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        if response.get("Failed"):
            raise BenchError(f"SendMessageBatch failed: {response['Failed'][:1]}")
        tracker.sent += count
        tracker.calls["SendMessageBatch (feeder)"] += 1

    def prefill(self) -> None:
        while self.tracker.sent < min(self.n, self.backlog):
            self._send(min(10, min(self.n, self.backlog) - self.tracker.sent))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tracker = self.tracker
        try:
            while not self._stop.is_set() and tracker.sent < self.n:
                left = self.n - tracker.sent
                want = min(self.backlog - tracker.backlog, left)
                if want >= 10 or (want > 0 and want == left):
                    self._send(min(10, want))
                else:
                    self._stop.wait(0.002)
        except BaseException as exc:
            self.on_error(exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


def _sync_sqs_client(endpoint_url: str | None, region: str) -> Any:
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config

    return boto3.session.Session(region_name=region).client(
        "sqs",
        endpoint_url=endpoint_url,
        config=Config(retries={"mode": "standard", "total_max_attempts": 5}),
    )


def _handler_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("handler.py", _NOOP_SOURCE)
    return buffer.getvalue()


class _HttpTarget(Target):
    """A target reached over HTTP with aioboto3: moto, fauxqs, aws."""

    region = "us-east-1"

    def __init__(self, config: BenchConfig) -> None:
        super().__init__(config)
        self.region = config.region or os.environ.get("AWS_REGION") or "us-east-1"
        self.prefix = f"asyncloop-bench-{uuid.uuid4().hex[:8]}"
        self.sqs_endpoint: str | None = None
        self.lambda_endpoint: str | None = None
        self.function_name = FUNCTION_NAME
        self._stack = contextlib.AsyncExitStack()
        self._sqs_clients: Any = None
        self._lambda_clients: Any = None
        self._feeder_client: Any = None
        self._server_pids: list[int] = []
        self._saved_env: dict[str, str | None] = {}
        self._runs = 0
        self.dlq_arn: str | None = None
        self.created: list[tuple[str, str]] = []

    # Subclasses start servers / create resources here.
    async def _start(self) -> None:
        return None

    async def __aenter__(self) -> _HttpTarget:
        try:
            await self._start()
            await self._open_clients()
            await self._setup()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self._close()

    async def _setup(self) -> None:
        return None

    async def _teardown(self) -> None:
        return None

    async def _close(self) -> None:
        try:
            await self._teardown()
        finally:
            await self._stack.aclose()
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._saved_env.clear()

    def _use_fake_credentials(self) -> None:
        for name, value in _FAKE_CREDENTIALS.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    async def _open_clients(self) -> None:
        from asyncloop import AwsClients

        # Room for every receive and invoke of the widest setting: requests beyond the pool
        # would wait silently (DESIGN.md).
        widest = max(self.config.max_in_flight or (1,)) + max(self.config.receivers or (1,))
        pool = max(widest, _CEILING_WORKERS * 10) + 16
        sqs_config = AwsConfig(region=self.region, endpoint_url=self.sqs_endpoint)
        self._sqs_clients = await self._stack.enter_async_context(
            AwsClients(sqs_config, pool_size=pool)
        )
        if self.lambda_endpoint == self.sqs_endpoint:
            self._lambda_clients = self._sqs_clients
        else:
            lambda_config = AwsConfig(region=self.region, endpoint_url=self.lambda_endpoint)
            self._lambda_clients = await self._stack.enter_async_context(
                AwsClients(lambda_config, pool_size=pool)
            )
        self._feeder_client = await anyio.to_thread.run_sync(
            _sync_sqs_client, self.sqs_endpoint, self.region
        )

    @property
    def sqs(self) -> Any:
        return self._sqs_clients.sqs

    @property
    def lambda_(self) -> Any:
        return self._lambda_clients.lambda_

    async def _create_queue(self) -> str:
        self._runs += 1
        attributes = {"VisibilityTimeout": str(_HTTP_VISIBILITY_TIMEOUT)}
        if self.dlq_arn is not None:
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": self.dlq_arn, "maxReceiveCount": "5"}
            )
        response = await self.sqs.create_queue(
            QueueName=f"{self.prefix}-{self._runs}", Attributes=attributes
        )
        return str(response["QueueUrl"])

    async def _delete_queue(self, url: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            try:
                await self.sqs.delete_queue(QueueUrl=url)
            except Exception as exc:
                logger.warning("could not delete queue %s: %s", url, exc)

    @contextlib.asynccontextmanager
    async def _queue(self) -> AsyncIterator[str]:
        url = await self._create_queue()
        try:
            yield url
        finally:
            await self._delete_queue(url)

    def _feeder(
        self, url: str, tracker: Tracker, n: int, on_error: Callable[[BaseException], None]
    ) -> _Feeder:
        return _Feeder(self._feeder_client, url, tracker, n, self.config.backlog or 100, on_error)

    def _dispatcher(self, url: str) -> LambdaDispatcher:
        from asyncloop import AioLambdaInvoker

        return LambdaDispatcher(
            invoker=AioLambdaInvoker(self.lambda_),
            config=LambdaConfig(
                function_name=self.function_name, invocation_type=self.config.invocation_type
            ),
            queue_url=url,
            region=self.region,
        )

    @contextlib.asynccontextmanager
    async def run_env(self, n: int, tracker: Tracker) -> AsyncIterator[RunEnv]:
        from asyncloop import SqsQueue

        async with self._queue() as url:
            loop = asyncio.get_running_loop()
            env = RunEnv(
                queue=CountingQueue(SqsQueue(self.sqs, url), tracker),
                dispatcher=TrackingDispatcher(self._dispatcher(url), tracker),
                tracker=tracker,
                server_pids=list(self._server_pids),
                sqs_endpoint=self.sqs_endpoint,
                lambda_endpoint=self.lambda_endpoint,
                function_name=self.function_name,
                region=self.region,
            )

            def on_error(exc: BaseException) -> None:
                env.feeder_error.append(exc)
                # Wake the runner: the run cannot finish without its messages.
                loop.call_soon_threadsafe(tracker.finished.set)

            feeder = self._feeder(url, tracker, n, on_error)
            await anyio.to_thread.run_sync(feeder.prefill)
            env.start_feeding = feeder.start
            try:
                yield env
            finally:
                # Shielded: a cancelled run must still stop its feeder thread.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(feeder.stop)

    # -- calibration ------------------------------------------------------------------

    async def calibrate(self) -> dict[str, Any]:
        n = self.config.n
        floor = await self._sdk_floor(batches=max(2, min(20, n // 10)))
        ceiling = await self._emulator_ceiling(min(n, 500))
        return {"sdk_floor": floor, "emulator_ceiling": ceiling}

    async def _sdk_floor(self, batches: int = 20, concurrency: int = 8) -> dict[str, Any]:
        """Event-loop CPU of the bare aioboto3 calls the loop makes, each kind timed alone:
        ReceiveMessage(10), Invoke, DeleteMessageBatch(10)."""
        count = batches * 10
        async with self._queue() as url:
            tracker = Tracker(count)
            feeder = self._feeder(url, tracker, count, lambda exc: None)
            feeder.backlog = count
            await anyio.to_thread.run_sync(feeder.prefill)
            limit = asyncio.Semaphore(concurrency)
            sqs, lambda_ = self.sqs, self.lambda_
            received: list[dict[str, Any]] = []

            async def receive() -> None:
                async with limit:
                    response = await sqs.receive_message(
                        QueueUrl=url,
                        MaxNumberOfMessages=10,
                        WaitTimeSeconds=1,
                        MessageSystemAttributeNames=["All"],
                        AttributeNames=["All"],
                        MessageAttributeNames=["All"],
                    )
                    received.extend(response.get("Messages", ()))

            async def invoke(payload: bytes) -> None:
                async with limit:
                    response = await lambda_.invoke(
                        FunctionName=self.function_name, InvocationType="Event", Payload=payload
                    )
                    stream = response.get("Payload")
                    if stream is not None:
                        async with stream:
                            await stream.read()

            async def delete(chunk: list[dict[str, Any]]) -> None:
                async with limit:
                    await sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(chunk)
                        ],
                    )

            async def timed(calls: list[Any]) -> float:
                start = time.thread_time()
                await asyncio.gather(*calls)
                return (time.thread_time() - start) / max(1, len(calls))

            receive_cpu = await timed([receive() for _ in range(batches)])
            if len(received) < 10:
                raise BenchError("calibration: the queue returned no messages")
            sample = received[0]
            payload = build_payload(
                Message(
                    message_id=sample["MessageId"],
                    receipt_handle=sample["ReceiptHandle"],
                    body=sample["Body"],
                    md5_of_body=sample.get("MD5OfBody", ""),
                ),
                queue_url=url,
                payload="seed",
            )
            invoke_cpu = await timed([invoke(payload) for _ in range(count)])
            chunks = [received[i : i + 10] for i in range(0, len(received), 10)]
            delete_cpu = await timed([delete(chunk) for chunk in chunks])
            per_message = len(received) / max(1, batches)
        return {
            "receive_us_per_call": round(receive_cpu * 1e6, 1),
            "invoke_us_per_call": round(invoke_cpu * 1e6, 1),
            "delete_us_per_call": round(delete_cpu * 1e6, 1),
            "messages_per_receive": round(per_message, 2),
            "us_per_message": round((receive_cpu / 10 + invoke_cpu + delete_cpu / 10) * 1e6, 1),
        }

    async def _emulator_ceiling(self, n: int) -> dict[str, Any]:
        """The emulator's own rate: `_CEILING_WORKERS` bare workers (receive 10, gather their
        invokes, delete 10) plus the feeder, no consumer logic, for `n` messages."""
        async with self._queue() as url:
            tracker = Tracker(n)
            errors: list[BaseException] = []
            feeder = self._feeder(url, tracker, n, errors.append)
            await anyio.to_thread.run_sync(feeder.prefill)
            sqs, lambda_ = self.sqs, self.lambda_
            calls = 0

            async def invoke(message: dict[str, Any]) -> None:
                payload = json.dumps({"Records": [{"sqs": message}]}).encode()
                response = await lambda_.invoke(
                    FunctionName=self.function_name, InvocationType="Event", Payload=payload
                )
                stream = response.get("Payload")
                if stream is not None:
                    async with stream:
                        await stream.read()

            async def worker() -> None:
                nonlocal calls
                while tracker.done < n and not errors:
                    response = await sqs.receive_message(
                        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                    )
                    calls += 1
                    messages = response.get("Messages", ())
                    if not messages:
                        continue
                    tracker.received += len(messages)
                    await asyncio.gather(*(invoke(m) for m in messages))
                    calls += len(messages)
                    await sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )
                    calls += 1
                    tracker.done += len(messages)
                    if tracker.done >= n and not finished:
                        finished.append(time.perf_counter())
                        # The others may be long-polling an empty queue: don't wait for them.
                        tg.cancel_scope.cancel()

            finished: list[float] = []
            server_cpu_start = self._server_cpu()
            start = time.perf_counter()
            feeder.start()
            try:
                with anyio.fail_after(max(60.0, n / 5)):
                    async with anyio.create_task_group() as tg:
                        for _ in range(_CEILING_WORKERS):
                            tg.start_soon(worker)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(feeder.stop)
            elapsed = (finished[0] if finished else time.perf_counter()) - start
            server_cpu_end = self._server_cpu()
            if errors:
                raise BenchError(f"calibration feeder failed: {errors[0]}")
            requests = calls + tracker.calls["SendMessageBatch (feeder)"]
        result: dict[str, Any] = {
            "workers": _CEILING_WORKERS,
            "messages": n,
            "msgs_s": round(tracker.done / elapsed, 1),
            "requests_s": round(requests / elapsed, 1),
            "server_cpu_utilisation": None,
        }
        if server_cpu_start is not None and server_cpu_end is not None:
            result["server_cpu_utilisation"] = round(
                (server_cpu_end - server_cpu_start) / elapsed, 3
            )
        return result

    def _server_cpu(self) -> float | None:
        if not self._server_pids:
            return None
        values = [proc_cpu_seconds(pid) for pid in self._server_pids]
        if any(value is None for value in values):
            return None
        return sum(value for value in values if value is not None)

    # -- resources on Lambda/IAM (moto and aws) --------------------------------------------

    async def _create_function(self, *, wait_for_role: float) -> None:
        iam = await self._sqs_clients.client("iam")
        role_name = f"{self.prefix}-role"
        role = await iam.create_role(
            RoleName=role_name, AssumeRolePolicyDocument=_ASSUME_LAMBDA, Path="/"
        )
        self.created.append(("role", role_name))
        name = f"{self.prefix}-fn"
        deadline = time.monotonic() + wait_for_role
        while True:
            try:
                await self.lambda_.create_function(
                    FunctionName=name,
                    Runtime="python3.12",
                    Role=role["Role"]["Arn"],
                    Handler="handler.handler",
                    Code={"ZipFile": _handler_zip()},
                    Timeout=10,
                    MemorySize=128,
                    Environment={"Variables": {"SLEEP_MS": str(self._function_sleep_ms())}},
                )
                break
            except Exception as exc:
                # A new IAM role takes seconds to be assumable by Lambda on AWS.
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code != "InvalidParameterValueException" or time.monotonic() > deadline:
                    raise
                await anyio.sleep(2)
        self.created.append(("function", name))
        self.function_name = name
        while time.monotonic() < deadline:
            state = (await self.lambda_.get_function(FunctionName=name))["Configuration"].get(
                "State", "Active"
            )
            if state == "Active":
                break
            await anyio.sleep(1)

    def _function_sleep_ms(self) -> float:
        # Only aws runs the function's code: its sleep is --invoke-latency-ms, else the
        # profile's worker duration for RequestResponse (Event: the caller never waits).
        if self.config.invoke_latency is not None:
            return self.config.invoke_latency.p50_ms
        if self.config.invocation_type == "RequestResponse":
            return self.config.latency_profile().worker_ms
        return 0.0

    async def _delete_created(self) -> list[str]:
        """Delete every resource this target created, newest first; returns what is left."""
        left: list[str] = []
        while self.created:
            kind, name = self.created.pop()
            try:
                with anyio.move_on_after(30):
                    if kind == "function":
                        await self.lambda_.delete_function(FunctionName=name)
                    elif kind == "role":
                        iam = await self._sqs_clients.client("iam")
                        await iam.delete_role(RoleName=name)
                    elif kind == "queue":
                        await self.sqs.delete_queue(QueueUrl=name)
            except Exception as exc:
                logger.warning("could not delete %s %s: %s", kind, name, exc)
                left.append(f"{kind} {name}")
        return left


class MotoTarget(_HttpTarget):
    name = "moto"

    def __init__(self, config: BenchConfig) -> None:
        super().__init__(config)
        self._server = _ChildServer("moto", [])
        self._proxy: _ChildServer | None = None

    async def _start(self) -> None:
        self._use_fake_credentials()
        self._stack.callback(self._server.stop)
        await anyio.to_thread.run_sync(self._server.start)
        latencies = self.config.latency_profile().proxy_latencies(self.config.invocation_type)
        proxy = self._proxy = _ChildServer(
            "proxy", [self._server.endpoint_url, json.dumps(latencies)]
        )
        self._stack.callback(proxy.stop)
        await anyio.to_thread.run_sync(proxy.start)
        self.sqs_endpoint = self.lambda_endpoint = proxy.endpoint_url
        for pid in (self._server.pid, proxy.pid):
            if pid is not None:
                self._server_pids.append(pid)

    async def _setup(self) -> None:
        await self._create_function(wait_for_role=0)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "server": "moto (child process, Lambda without Docker) behind a latency proxy "
            "(its own child process)",
            "profile": self.config.latency_profile().name,
        }


class FauxqsTarget(_HttpTarget):
    name = "fauxqs"

    def __init__(self, config: BenchConfig) -> None:
        super().__init__(config)
        self._lambda = _ChildServer("lambda", [str(config.invoke_model())])
        self._proxy: _ChildServer | None = None
        self._fauxqs: Any = None

    async def _start(self) -> None:
        from asyncloop.testing import FauxqsServer, node_available

        if not node_available():
            raise BenchError(
                "the fauxqs target needs Node.js >= 20 and npm on PATH: install Node 20 LTS "
                "(https://nodejs.org/en/download, `nvm install 20`, or `apt-get install nodejs "
                "npm`), or use --target moto"
            )
        self._use_fake_credentials()
        self._fauxqs = await self._stack.enter_async_context(FauxqsServer())
        self._stack.callback(self._lambda.stop)
        await anyio.to_thread.run_sync(self._lambda.start)
        latencies = self.config.latency_profile().proxy_latencies(self.config.invocation_type)
        latencies.pop("Invoke")
        proxy = self._proxy = _ChildServer(
            "proxy", [self._fauxqs.endpoint_url, json.dumps(latencies)]
        )
        self._stack.callback(proxy.stop)
        await anyio.to_thread.run_sync(proxy.start)
        self.sqs_endpoint = proxy.endpoint_url
        self.lambda_endpoint = self._lambda.endpoint_url
        for pid in (
            getattr(getattr(self._fauxqs, "_process", None), "pid", None),
            self._lambda.pid,
            proxy.pid,
        ):
            if pid is not None:
                self._server_pids.append(pid)

    def describe(self) -> dict[str, Any]:
        from asyncloop.testing import FAUXQS_VERSION

        return {
            "name": self.name,
            "server": f"fauxqs {FAUXQS_VERSION} (node) behind a latency proxy + asyncloop "
            "LambdaServer (child processes)",
            "profile": self.config.latency_profile().name,
        }


class AwsTarget(_HttpTarget):
    """Real AWS, or `--endpoint-url` (moto in the tests). Everything it creates is deleted
    in `__aexit__`, shielded, even when the run is cancelled."""

    name = "aws"

    def __init__(self, config: BenchConfig) -> None:
        super().__init__(config)
        self.sqs_endpoint = self.lambda_endpoint = config.endpoint_url
        self.left_behind: list[str] = []

    async def _setup(self) -> None:
        response = await self.sqs.create_queue(QueueName=f"{self.prefix}-dlq")
        dlq_url = str(response["QueueUrl"])
        self.created.append(("queue", dlq_url))
        attributes = await self.sqs.get_queue_attributes(
            QueueUrl=dlq_url, AttributeNames=["QueueArn"]
        )
        self.dlq_arn = attributes["Attributes"]["QueueArn"]
        await self._create_function(wait_for_role=90)

    async def _create_queue(self) -> str:
        url = await super()._create_queue()
        self.created.append(("queue", url))
        return url

    async def _delete_queue(self, url: str) -> None:
        await super()._delete_queue(url)
        with contextlib.suppress(ValueError):
            self.created.remove(("queue", url))

    async def _teardown(self) -> None:
        if self._sqs_clients is None:
            return
        self.left_behind = await self._delete_created()
        if self.left_behind:
            logger.error("left behind (delete by hand): %s", ", ".join(self.left_behind))

    async def calibrate(self) -> dict[str, Any]:
        # Real AWS scales past one client: no ceiling to measure, and calls cost money.
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "endpoint_url": self.config.endpoint_url,
            "region": self.region,
            "prefix": self.prefix,
        }


# moto's server (moto[server]: moto and flask) is a test dependency, not the library's: an
# installed wheel has it only with the bench extra.
_MOTO_MODULES: Final = ("moto", "flask")


def moto_missing(config: BenchConfig) -> str | None:
    """Why `config` cannot run here (it needs moto's server, which is not installed), or None.

    Checked before the run starts, so the default sweep does not run for minutes first and then
    fail at its HTTP check. Looks the modules up without importing them: moto runs in a child.
    """
    if config.target != "moto" and config.http_check != "moto":
        return None
    if all(importlib.util.find_spec(module) is not None for module in _MOTO_MODULES):
        return None
    need = "the moto target needs" if config.target == "moto" else "the HTTP check on moto needs"
    hint = "" if config.target == "moto" else ", or pass --http-check none"
    return f"{need} moto's server, which is not installed: pip install 'asyncloop[bench]'{hint}"


def make_target(config: BenchConfig) -> Target:
    targets: dict[str, type[Target]] = {
        "fake": FakeTarget,
        "moto": MotoTarget,
        "fauxqs": FauxqsTarget,
        "aws": AwsTarget,
    }
    return targets[config.target](config)


def aws_plan(config: BenchConfig, prefix: str = "asyncloop-bench-<id>") -> str:
    """What the aws target will create, and what it will cost, for the confirmation prompt."""
    cfg = config.resolved()
    runs = (len(cfg.settings()) + len(cfg.baselines or ())) * cfg.repeats + 1
    messages = cfg.n * runs + cfg.warmup_messages
    # Per message: one Invoke, about 0.1 send, 0.1 receive, 0.1 delete (+ empty receives).
    sqs_requests = messages * 0.5
    lambda_requests = messages
    # us-east-1 list prices: SQS $0.40 per million requests; Lambda $0.20 per million
    # requests + 128 MB x about 1 ms billed each ($0.0000166667 per GB-s).
    cost = sqs_requests * 0.40e-6 + lambda_requests * (0.20e-6 + 0.125 * 0.001 * 0.0000166667)
    return (
        f"The aws target will create, in region "
        f"{config.region or os.environ.get('AWS_REGION') or 'us-east-1'}"
        f" (endpoint {config.endpoint_url or 'AWS'}):\n"
        f"  - an SQS dead-letter queue and one SQS queue per run ({runs} runs), "
        f"named {prefix}-*\n"
        f"  - an IAM role {prefix}-role and a no-op Lambda function {prefix}-fn "
        "(python3.12, 128 MB)\n"
        f"It sends and consumes about {messages:,} messages ({lambda_requests:,} invokes, about "
        f"{sqs_requests:,.0f} SQS requests): about ${cost:.4f} at us-east-1 list prices, "
        "excluding any free tier.\nEverything is deleted at the end, even on Ctrl-C."
    )
