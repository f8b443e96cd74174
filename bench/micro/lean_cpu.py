"""CPU per call, lean transport vs the sdk path, measured in one run (not a test).

    PYTHONPATH=. python -m bench.micro.lean_cpu [--invokes 2000] [--batches 500] [--repeats 3]
        [--gc-freeze]

- signing: us per signature (median of 5 x 3,000): botocore ``SigV4Auth``, botocore's CRT
  signer and raw ``awscrt`` when ``awscrt`` is installed, the lean signer for one request
  (``sign``) and for a request shape prepared once (``SigningShape.signature``, what the
  lean transport does per request);
- Invoke: `--invokes` Event invokes at concurrency 32 against `LambdaServer` (run on its own
  thread and event loop, so its CPU is not counted), us of the client thread's CPU
  (``time.thread_time``) per call; the floor row is a plain, unsigned aiohttp POST of the
  same request to the same endpoint (a default aiohttp ``ClientSession``, reading the body),
  what the HTTP costs through aiohttp (the lean transport has its own HTTP/1.1 pool, so it
  can cost less than this floor);
- SQS: `--batches` receive(10) + delete_batch(10) pairs against fauxqs (a Node process),
  us per SQS call.
Each figure is the median of `--repeats`; floor, sdk and lean alternate within a repeat.
``--gc-freeze`` calls ``gc.freeze()`` after the warm-up: the clients' long-lived objects
(botocore's loaded models, about 100,000) leave the cyclic collector's full passes, which
otherwise land on the measured calls (all three rows pay them alike).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

REGION = "us-east-1"


def _sign_figures() -> dict[str, float]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import ReadOnlyCredentials

    from asyncloop._lean.signing import Credentials, SigV4Signer

    keys = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "token")
    host = "lambda.us-east-1.amazonaws.com"
    path = "/2015-03-31/functions/my-fn/invocations"
    headers = {"X-Amz-Invocation-Type": "Event"}
    body = b'{"Records": [{"sqs": {"Body": "hello"}}]}'
    creds = ReadOnlyCredentials(*keys)

    def botocore_v4() -> None:
        request = AWSRequest("POST", f"https://{host}{path}", headers=dict(headers), data=body)
        SigV4Auth(creds, "lambda", REGION).add_auth(request)

    lean = SigV4Signer(service="lambda", region=REGION)
    lean_creds = Credentials(*keys)
    shape = lean.shape(method="POST", host=host, path=path, headers=headers)

    def lean_v4() -> None:
        lean.sign(
            method="POST", host=host, path=path, headers=headers, body=body, credentials=lean_creds
        )

    def lean_shape() -> None:
        shape.signature(body, lean_creds)

    candidates: dict[str, Callable[[], None]] = {"botocore SigV4Auth": botocore_v4}
    try:
        import io

        import awscrt.auth
        import awscrt.http
        from botocore.crt.auth import CrtSigV4Auth

        def botocore_crt() -> None:
            request = AWSRequest("POST", f"https://{host}{path}", headers=dict(headers), data=body)
            CrtSigV4Auth(creds, "lambda", REGION).add_auth(request)

        def raw_crt() -> None:
            provider = awscrt.auth.AwsCredentialsProvider.new_static(*keys)
            config = awscrt.auth.AwsSigningConfig(
                algorithm=awscrt.auth.AwsSigningAlgorithm.V4,
                signature_type=awscrt.auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
                credentials_provider=provider,
                region=REGION,
                service="lambda",
                date=datetime.now(UTC),
            )
            request = awscrt.http.HttpRequest(
                "POST",
                path,
                headers=awscrt.http.HttpHeaders([("host", host), *headers.items()]),
                body_stream=io.BytesIO(body),
            )
            awscrt.auth.aws_sign_request(request, config).result()

        candidates["botocore CrtSigV4Auth"] = botocore_crt
        candidates["awscrt aws_sign_request"] = raw_crt
    except ImportError:
        pass
    candidates["lean SigV4Signer.sign"] = lean_v4
    candidates["lean SigningShape.signature"] = lean_shape
    figures = {}
    for name, sign in candidates.items():
        runs = []
        for _ in range(5):
            start = time.process_time()
            for _ in range(3000):
                sign()
            runs.append((time.process_time() - start) / 3000 * 1e6)
        figures[name] = statistics.median(runs)
    return figures


class _ServerThread:
    """`LambdaServer` on its own thread and event loop."""

    def __init__(self) -> None:
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        from asyncloop.testing import LambdaServer

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with LambdaServer(latency=0.0, functions=["bench"]) as server:
            self.url = server.endpoint_url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> _ServerThread:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


async def _paths(stack: AsyncExitStack, sqs_url: str, lambda_url: str) -> dict[str, Any]:
    import aioboto3
    from aiobotocore.config import AioConfig

    from asyncloop import AioLambdaInvoker, SqsQueue
    from asyncloop._lean import LeanTransport

    config = AioConfig(
        max_pool_connections=64, retries={"mode": "standard", "total_max_attempts": 3}
    )
    # Local endpoints only: fixed keys, so the run needs no AWS configuration
    session = aioboto3.Session(
        region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    sqs = await stack.enter_async_context(
        session.client("sqs", endpoint_url=sqs_url, config=config)
    )
    lam = await stack.enter_async_context(
        session.client("lambda", endpoint_url=lambda_url, config=config)
    )
    lean = await stack.enter_async_context(LeanTransport(sqs_client=sqs, lambda_client=lam))
    return {
        "floor": (None, await stack.enter_async_context(_PlainPost(lambda_url))),
        "sdk": (lambda url: SqsQueue(sqs, url), AioLambdaInvoker(lam)),
        "lean": (lean.queue, lean.invoker()),
        "admin": sqs,
    }


class _PlainPost:
    """The floor: the Invoke request as a plain aiohttp POST, unsigned, body read."""

    def __init__(self, endpoint_url: str) -> None:
        self._endpoint_url = endpoint_url
        self._session: Any = None

    async def __aenter__(self) -> _PlainPost:
        import aiohttp

        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def invoke(self, *, function_name: str, payload: bytes, invocation_type: str) -> None:
        url = f"{self._endpoint_url}/2015-03-31/functions/{function_name}/invocations"
        headers = {"X-Amz-Invocation-Type": invocation_type}
        async with self._session.post(url, data=payload, headers=headers) as response:
            await response.read()


async def _cpu(work: Callable[[], Awaitable[int]]) -> float:
    # Each row starts with the collector's debt paid: the sdk row's garbage would otherwise
    # trigger a full pass inside the next row
    gc.collect()
    start = time.thread_time()
    calls = await work()
    return (time.thread_time() - start) / calls * 1e6


async def _invokes(invoker: Any, count: int) -> int:
    semaphore = asyncio.Semaphore(32)

    async def one() -> None:
        async with semaphore:
            await invoker.invoke(
                function_name="bench", payload=b'{"x": 1}', invocation_type="Event"
            )

    await asyncio.gather(*(one() for _ in range(count)))
    return count


async def _sqs_batches(admin: Any, queue: Any, url: str, batches: int) -> int:
    calls = 0
    for _ in range(batches):
        messages = await queue.receive(max_messages=10, wait_time_seconds=0)
        calls += 1
        if messages:
            await queue.delete_batch([(str(i), m.receipt_handle) for i, m in enumerate(messages)])
            calls += 1
    return calls


async def _main(args: argparse.Namespace) -> None:
    from asyncloop.testing import FauxqsServer

    print("signing, us per signature (median of 5):")
    for name, us in _sign_figures().items():
        print(f"  {name:30s} {us:7.1f}")
    results: dict[str, dict[str, list[float]]] = {"invoke": {}, "sqs": {}}
    with _ServerThread() as lambda_server, FauxqsServer() as fauxqs:
        async with AsyncExitStack() as stack:
            paths = await _paths(stack, fauxqs.endpoint_url, lambda_server.url)
            admin = paths["admin"]
            url = (await admin.create_queue(QueueName="bench-lean"))["QueueUrl"]
            for name in ("floor", "sdk", "lean"):  # warm-up: connections, imports
                await _invokes(paths[name][1], 200)
            if args.gc_freeze:
                gc.collect()
                gc.freeze()
            for _ in range(args.repeats):
                for name in ("floor", "sdk", "lean"):
                    queue_factory, invoker = paths[name]
                    us = await _cpu(lambda inv=invoker: _invokes(inv, args.invokes))
                    results["invoke"].setdefault(name, []).append(us)
                    if queue_factory is None:
                        continue
                    # Refill: 10 messages per batch the run will receive
                    for _ in range(args.batches):
                        await admin.send_message_batch(
                            QueueUrl=url,
                            Entries=[{"Id": str(i), "MessageBody": "x" * 100} for i in range(10)],
                        )
                    queue = queue_factory(url)
                    us = await _cpu(lambda q=queue: _sqs_batches(admin, q, url, args.batches))
                    results["sqs"].setdefault(name, []).append(us)
    for kind, label in (("invoke", "per Invoke"), ("sqs", "per SQS call")):
        sdk = statistics.median(results[kind]["sdk"])
        lean = statistics.median(results[kind]["lean"])
        runs = {k: [round(v) for v in vs] for k, vs in results[kind].items()}
        floor = ""
        if "floor" in results[kind]:
            # Paired within a repeat: steadier than the difference of medians on a loaded box
            over = statistics.median(
                lv - fv
                for lv, fv in zip(results[kind]["lean"], results[kind]["floor"], strict=True)
            )
            floor = (
                f"floor {statistics.median(results[kind]['floor']):.0f} us "
                f"(lean - floor, paired: {over:+.0f} us), "
            )
        print(
            f"CPU {label}: {floor}sdk {sdk:.0f} us, lean {lean:.0f} us, "
            f"sdk/lean {sdk / lean:.1f}x  {runs}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invokes", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after warm-up")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
