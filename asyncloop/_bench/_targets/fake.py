"""The fake target: `asyncloop.testing.FakeQueue` and `FakeLambda` in the bench's event
loop, with the latency profile's figure on each call: isolates the loop's own cost."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

from asyncloop import ConsumerConfig, LambdaConfig, LambdaDispatcher
from asyncloop.testing import FakeLambda, FakeQueue

from .._latency_profiles import OPERATIONS
from .._workload import CountingQueue, Tracker, TrackingDispatcher, body
from .base import BASELINE_TRANSPORT, FUNCTION_NAME, RunEnv, Target

__all__ = ("FakeTarget",)

# The fake's: short, so its heap of in-flight messages stays small on long runs.
_FAKE_VISIBILITY_TIMEOUT: Final = 5


class FakeTarget(Target):
    name = "fake"

    @contextlib.asynccontextmanager
    async def run_env(
        self,
        n: int,
        tracker: Tracker,
        *,
        transport: str = BASELINE_TRANSPORT,
        consumer: ConsumerConfig | None = None,
    ) -> AsyncIterator[RunEnv]:
        # In memory: no transport, no connection pool.
        del transport, consumer
        config = self.config
        profile = config.latency_profile()
        latency = {
            op: profile.sqs(op).sampler(seed=seed) for seed, op in enumerate(OPERATIONS, start=1)
        }
        queue = FakeQueue(visibility_timeout=_FAKE_VISIBILITY_TIMEOUT, latency=latency)
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
