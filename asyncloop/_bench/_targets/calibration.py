"""Reference figures measured on an HTTP target in the same run as the contenders.

- `floor`: the event-loop CPU of the bare calls the loop makes (ReceiveMessage of 10, Invoke,
  DeleteMessageBatch of 10), each kind timed alone, 64 at once, on one transport, after a
  warm-up pass and as the median of three: what no consumer on that transport can go below.
  ``sdk``: the aioboto3 clients' own calls; ``lean``: the lean transport's `Queue` and
  `LambdaInvoker` calls (``receive``, ``invoke``, ``delete_batch``: the lowest it offers, so
  a receive includes building its `Message`s), as `asyncloop.open_consumer` wires them.
- `emulator_ceiling`: the emulator's own rate, bare workers with no consumer logic: where the
  emulator, not the loop, is the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import anyio.to_thread

from asyncloop import ConsumerConfig, LambdaDispatcher, Message, build_payload

from .._config import BenchError
from .._workload import Tracker

if TYPE_CHECKING:
    from .http import HttpTarget

__all__ = ("CEILING_WORKERS", "FLOOR_CONCURRENCY", "FLOOR_PASSES", "emulator_ceiling", "floor")

# Raw workers of the emulator-ceiling calibration, each receive 10 / invoke 10 / delete 10.
CEILING_WORKERS: Final = 16
# Timed passes of a CPU floor, after its untimed warm-up pass: figures are their medians.
FLOOR_PASSES: Final = 3
# A floor's calls at once. Per call, the CPU falls as more calls share each turn of the event
# loop (on fauxqs here, sdk 0.9-1.0 ms a message at 8, 0.73-0.77 at 64 and 256; lean 0.31-0.34,
# 0.19-0.20): 64 stands for the wide settings whose CPU the floor is read against.
FLOOR_CONCURRENCY: Final = 64


class _BareCalls(Protocol):
    """The three calls a floor times, on one transport, for one queue."""

    def receive(self) -> Awaitable[list[Any]]: ...
    def invoke(self, payload: bytes) -> Awaitable[None]: ...
    def delete(self, chunk: list[Any]) -> Awaitable[None]: ...
    def message(self, item: Any) -> Message: ...


class _SdkCalls:
    """The aioboto3 clients' calls, answers as the client returns them."""

    def __init__(self, target: HttpTarget, url: str) -> None:
        self.sqs, self.lambda_ = target.sqs, target.lambda_
        self.url = url
        self.function_name = target.function_name

    async def receive(self) -> list[Any]:
        response = await self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", ()))

    async def invoke(self, payload: bytes) -> None:
        response = await self.lambda_.invoke(
            FunctionName=self.function_name, InvocationType="Event", Payload=payload
        )
        stream = response.get("Payload")
        if stream is not None:
            async with stream:
                await stream.read()

    async def delete(self, chunk: list[Any]) -> None:
        await self.sqs.delete_message_batch(
            QueueUrl=self.url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
            ],
        )

    def message(self, item: Any) -> Message:
        return Message(
            message_id=item["MessageId"],
            receipt_handle=item["ReceiptHandle"],
            body=item["Body"],
            md5_of_body=item.get("MD5OfBody", ""),
        )


class _WiredCalls:
    """The `Queue` and `LambdaInvoker` that `asyncloop.open_consumer` wires on a transport."""

    def __init__(self, queue: Any, invoker: Any, function_name: str) -> None:
        self.queue, self.invoker = queue, invoker
        self.function_name = function_name

    async def receive(self) -> list[Any]:
        return list(await self.queue.receive(max_messages=10, wait_time_seconds=1))

    async def invoke(self, payload: bytes) -> None:
        await self.invoker.invoke(
            function_name=self.function_name, payload=payload, invocation_type="Event"
        )

    async def delete(self, chunk: list[Any]) -> None:
        await self.queue.delete_batch([(str(i), m.receipt_handle) for i, m in enumerate(chunk)])

    def message(self, item: Any) -> Message:
        assert isinstance(item, Message)
        return item


@contextlib.asynccontextmanager
async def _bare_calls(
    target: HttpTarget, url: str, transport: str, concurrency: int
) -> AsyncIterator[_BareCalls]:
    if transport == "sdk":
        yield _SdkCalls(target, url)
        return
    room = ConsumerConfig(receivers=concurrency, max_in_flight=concurrency)
    async with target.wiring(url, transport=transport, consumer=room) as wired:
        dispatcher = wired.dispatcher
        assert isinstance(dispatcher, LambdaDispatcher)
        yield _WiredCalls(wired.queue, dispatcher.invoker, target.function_name)


async def floor(
    target: HttpTarget,
    transport: str,
    batches: int = 20,
    concurrency: int = FLOOR_CONCURRENCY,
) -> dict[str, Any]:
    """Event-loop CPU of the bare calls the loop makes on `transport`, each kind timed
    alone: ReceiveMessage(10), Invoke, DeleteMessageBatch(10) (see the module), at most
    `concurrency` calls at once.

    One untimed pass first opens the connections and pays the calls' first-use costs; then
    `FLOOR_PASSES` timed passes of `batches` receives, their invokes and deletes, each on a
    queue refilled for it; each figure is the passes' median. The collector's debt is paid
    before each timed step (as before each measured run), so garbage the runs before left
    is not charged to the calls.
    """
    async with (
        target.temporary_queue() as url,
        _bare_calls(target, url, transport, concurrency) as calls,
    ):
        limit = asyncio.Semaphore(concurrency)

        async def refill(count: int) -> None:
            feeder = target.feeder(url, Tracker(count), count, lambda exc: None)
            feeder.backlog = count
            await anyio.to_thread.run_sync(feeder.prefill)

        async def bounded(call: Awaitable[Any]) -> Any:
            async with limit:
                return await call

        async def timed(work: list[Awaitable[Any]]) -> tuple[float, list[Any]]:
            gc.collect()
            start = time.thread_time()
            answers = await asyncio.gather(*(bounded(call) for call in work))
            return (time.thread_time() - start) / max(1, len(work)), answers

        figures: list[tuple[float, float, float, float]] = []
        for size in [batches] * (1 + FLOOR_PASSES):
            await refill(size * 10)
            receive_cpu, answers = await timed([calls.receive() for _ in range(size)])
            received = [item for answer in answers for item in answer]
            if len(received) < 10:
                raise BenchError("calibration: the queue returned no messages")
            payload = build_payload(calls.message(received[0]), queue_url=url, payload="seed")
            invoke_cpu, _ = await timed([calls.invoke(payload) for _ in range(size * 10)])
            chunks = [received[i : i + 10] for i in range(0, len(received), 10)]
            delete_cpu, _ = await timed([calls.delete(chunk) for chunk in chunks])
            figures.append((receive_cpu, invoke_cpu, delete_cpu, len(received) / size))
    receive_cpu, invoke_cpu, delete_cpu, per_receive = (
        statistics.median(column) for column in zip(*figures[1:], strict=True)
    )
    return {
        "transport": transport,
        "passes": FLOOR_PASSES,
        "receive_us_per_call": round(receive_cpu * 1e6, 1),
        "invoke_us_per_call": round(invoke_cpu * 1e6, 1),
        "delete_us_per_call": round(delete_cpu * 1e6, 1),
        "messages_per_receive": round(per_receive, 2),
        "us_per_message": round((receive_cpu / 10 + invoke_cpu + delete_cpu / 10) * 1e6, 1),
    }


async def emulator_ceiling(target: HttpTarget, n: int) -> dict[str, Any]:
    """The emulator's own rate: `CEILING_WORKERS` bare workers (receive 10, gather their
    invokes, delete 10) plus the feeder, no consumer logic, for `n` messages."""
    async with target.temporary_queue() as url:
        tracker = Tracker(n)
        errors: list[BaseException] = []
        feeder = target.feeder(url, tracker, n, errors.append)
        await anyio.to_thread.run_sync(feeder.prefill)
        sqs, lambda_ = target.sqs, target.lambda_
        calls = 0

        async def invoke(message: dict[str, Any]) -> None:
            payload = json.dumps({"Records": [{"sqs": message}]}).encode()
            response = await lambda_.invoke(
                FunctionName=target.function_name, InvocationType="Event", Payload=payload
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
        server_cpu_start = target.server_cpu()
        start = time.perf_counter()
        feeder.start()
        try:
            with anyio.fail_after(max(60.0, n / 5)):
                async with anyio.create_task_group() as tg:
                    for _ in range(CEILING_WORKERS):
                        tg.start_soon(worker)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(feeder.stop)
        elapsed = (finished[0] if finished else time.perf_counter()) - start
        server_cpu_end = target.server_cpu()
        if errors:
            raise BenchError(f"calibration feeder failed: {errors[0]}")
        requests = calls + tracker.calls["SendMessageBatch (feeder)"]
    result: dict[str, Any] = {
        "workers": CEILING_WORKERS,
        "messages": n,
        "msgs_s": round(tracker.done / elapsed, 1),
        "requests_s": round(requests / elapsed, 1),
        "server_cpu_utilisation": None,
    }
    if server_cpu_start is not None and server_cpu_end is not None:
        result["server_cpu_utilisation"] = round((server_cpu_end - server_cpu_start) / elapsed, 3)
    return result
