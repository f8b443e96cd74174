"""What moto, fauxqs and aws share: `HttpTarget`, reached over HTTP with aioboto3.

It starts its servers (`_start`, in the subclasses), opens the clients and a boto3 client for
the `Feeder`, creates its resources (`_setup`), gives each run a fresh queue, and deletes what
it created on the way out (`_teardown`), even when interrupted. The calibration lives in
`calibration.py`.

Each run's queue and dispatcher come from `asyncloop.open_consumer` (`wiring`), on clients of
their own and the run's transport, as a user's consumer gets them: the consumer's calls go
through what the library wires, not through a copy of it. So the run's connections are made
inside it, as a fresh consumer's are; the target's shared clients serve the calibration and
the queues' creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Final, Literal, cast

import anyio
import anyio.to_thread

from asyncloop import AwsConfig, Consumer, ConsumerConfig, LambdaConfig

from .._config import BenchConfig
from .._workload import CountingQueue, Tracker, TrackingDispatcher
from .base import BASELINE_TRANSPORT, FUNCTION_NAME, RunEnv, Target, proc_cpu_seconds
from .calibration import CEILING_WORKERS, emulator_ceiling, floor
from .feeder import Feeder, sync_sqs_client

__all__ = ("HttpTarget",)

logger = logging.getLogger("asyncloop.bench")

# Longer than any run: a message received once is never delivered again during its run.
_HTTP_VISIBILITY_TIMEOUT: Final = 300

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


def _handler_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("handler.py", _NOOP_SOURCE)
    return buffer.getvalue()


class HttpTarget(Target):
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
        self._wiring_endpoint: str | None = None
        self._runs = 0
        self.dlq_arn: str | None = None
        self.created: list[tuple[str, str]] = []

    # Subclasses start servers / create resources here.
    async def _start(self) -> None:
        return None

    async def __aenter__(self) -> HttpTarget:
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

    def _set_env(self, name: str, value: str) -> None:
        # Restored by _close.
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def _use_fake_credentials(self) -> None:
        for name, value in _FAKE_CREDENTIALS.items():
            self._set_env(name, value)

    async def _open_clients(self) -> None:
        from asyncloop import AwsClients

        # Room for every receive and invoke of the widest setting: requests beyond the pool
        # would wait silently (DESIGN.md).
        widest = max(self.config.max_in_flight or (1,)) + max(self.config.receivers or (1,))
        pool = max(widest, CEILING_WORKERS * 10) + 16
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
            sync_sqs_client, self.sqs_endpoint, self.region
        )
        if self.sqs_endpoint != self.lambda_endpoint:
            # AwsConfig has one endpoint for every service: the wiring's clients read each
            # service's own from botocore's per-service variables (fauxqs + LambdaServer).
            self._wiring_endpoint = None
            for name, value in (
                ("AWS_ENDPOINT_URL_SQS", self.sqs_endpoint),
                ("AWS_ENDPOINT_URL_LAMBDA", self.lambda_endpoint),
            ):
                if value is not None:
                    self._set_env(name, value)
        else:
            self._wiring_endpoint = self.sqs_endpoint

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
    async def temporary_queue(self) -> AsyncIterator[str]:
        url = await self._create_queue()
        try:
            yield url
        finally:
            await self._delete_queue(url)

    def feeder(
        self, url: str, tracker: Tracker, n: int, on_error: Callable[[BaseException], None]
    ) -> Feeder:
        return Feeder(self._feeder_client, url, tracker, n, self.config.backlog or 100, on_error)

    def wiring(
        self,
        url: str,
        *,
        transport: str,
        consumer: ConsumerConfig | None = None,
    ) -> contextlib.AbstractAsyncContextManager[Consumer]:
        """`asyncloop.open_consumer` on `url` and this target's function: the queue and the
        dispatcher a user's consumer gets on `transport`, on clients of its own whose pool is
        sized to `consumer` (default: ``ConsumerConfig()``)."""
        from asyncloop import open_consumer

        return open_consumer(
            url,
            lambda_config=LambdaConfig(
                function_name=self.function_name,
                invocation_type=self.config.invocation_type,
            ),
            config=consumer or ConsumerConfig(),
            aws=AwsConfig(
                region=self.region,
                endpoint_url=self._wiring_endpoint,
                transport=cast(Literal["sdk", "lean"], transport),
            ),
        )

    @contextlib.asynccontextmanager
    async def run_env(
        self,
        n: int,
        tracker: Tracker,
        *,
        transport: str = BASELINE_TRANSPORT,
        consumer: ConsumerConfig | None = None,
    ) -> AsyncIterator[RunEnv]:
        async with (
            self.temporary_queue() as url,
            self.wiring(url, transport=transport, consumer=consumer) as wired,
        ):
            loop = asyncio.get_running_loop()
            env = RunEnv(
                queue=CountingQueue(wired.queue, tracker),
                dispatcher=TrackingDispatcher(wired.dispatcher, tracker),
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

            feeder = self.feeder(url, tracker, n, on_error)
            await anyio.to_thread.run_sync(feeder.prefill)
            env.start_feeding = feeder.start
            try:
                yield env
            finally:
                # Shielded: a cancelled run must still stop its feeder thread.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(feeder.stop)

    # -- calibration (`calibration.py`) -----------------------------------------------

    async def calibrate(self) -> dict[str, Any]:
        """The CPU floor of each transport in the sweep (``sdk_floor`` always: the SDK's CPU
        ceiling is reported whatever the sweep; ``lean_floor`` when lean is swept), then the
        emulator's ceiling."""
        n = self.config.n
        out: dict[str, Any] = {}
        for transport in dict.fromkeys(("sdk", *(self.config.transport or ()))):
            out[f"{transport}_floor"] = await floor(
                self, transport, batches=max(2, min(20, n // 10))
            )
        out["emulator_ceiling"] = await emulator_ceiling(self, min(n, 500))
        return out

    def server_cpu(self) -> float | None:
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
