"""Reference figures measured on an HTTP target in the same run as the contenders.

- `sdk_floor`: the event-loop CPU of the bare aioboto3 calls the loop makes (ReceiveMessage
  of 10, Invoke, DeleteMessageBatch of 10), each kind timed alone: what no consumer on the
  SDK can go below.
- `emulator_ceiling`: the emulator's own rate, bare workers with no consumer logic: where the
  emulator, not the loop, is the limit.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread

from asyncloop import Message, build_payload

from .._config import BenchError
from .._workload import Tracker

if TYPE_CHECKING:
    from .http import HttpTarget

__all__ = ("CEILING_WORKERS", "emulator_ceiling", "sdk_floor")

# Raw workers of the emulator-ceiling calibration, each receive 10 / invoke 10 / delete 10.
CEILING_WORKERS: Final = 16


async def sdk_floor(target: HttpTarget, batches: int = 20, concurrency: int = 8) -> dict[str, Any]:
    """Event-loop CPU of the bare aioboto3 calls the loop makes, each kind timed alone:
    ReceiveMessage(10), Invoke, DeleteMessageBatch(10)."""
    count = batches * 10
    async with target.temporary_queue() as url:
        tracker = Tracker(count)
        feeder = target.feeder(url, tracker, count, lambda exc: None)
        feeder.backlog = count
        await anyio.to_thread.run_sync(feeder.prefill)
        limit = asyncio.Semaphore(concurrency)
        sqs, lambda_ = target.sqs, target.lambda_
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
                    FunctionName=target.function_name, InvocationType="Event", Payload=payload
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
