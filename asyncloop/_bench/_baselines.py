"""The baselines every sweep is compared with, on the same target, queue, dispatcher and messages.

``seed-sequential``
    A faithful port of the seed's consumer.js: ReceiveMessage (10 messages), then one invoke
    per message *in turn*, each awaited before the next (bluebird's ``.each``); a failed invoke
    rejects the chain, so the rest of that batch is not invoked (SQS delivers it again after its
    visibility timeout); then the next receive. Two things differ, both in the seed's favour or
    for a same-workload comparison:

    - consumer.js is one Lambda invocation per batch, re-triggered through Kinesis
      (``PutRecords`` then the event source's poll, hundreds of milliseconds on AWS). The port
      loops in-process and skips that hop: the baseline is faster than the real seed.
    - consumer.js never deletes (its worker function does: ``--delete-by worker``). With
      ``--delete-by consumer`` (the default), the port deletes each batch's succeeded messages
      with one DeleteMessageBatch after its invokes, the cheapest delete the seed could add, so
      both sides make the same SQS calls for the same messages.

``naive-gather``
    The obvious asyncio version: one receiver; receive 10, ``asyncio.gather`` their dispatches,
    delete the succeeded ones in one DeleteMessageBatch (``--delete-by consumer``), repeat.

Both stop when the tracker has seen the run's N successes, and record the same latencies
(receive to done, send to done) and API calls as the consumer.

``node-sqs-consumer`` (fauxqs target only) is bbc's sqs-consumer in a Node process, not a
coroutine on these wrappers: it lives in `asyncloop._bench._node_baseline`, and the runner starts it
through `node_consumer_for` instead of `BASELINE_RUNNERS`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from asyncloop import Dispatcher, DispatchError, Message, Queue, Stats

from ._workload import Tracker

__all__ = ("BASELINE_RUNNERS", "naive_gather", "seed_sequential")

# The seed's receive: MaxNumberOfMessages from its config; 10 is SQS's maximum and its intent.
_BATCH: Final = 10

Baseline = Callable[..., Awaitable[Stats]]


def _record_success(stats: Stats, message: Message, now: float) -> None:
    stats.succeeded += 1
    stats.receive_to_done.record(now - message.received_at)
    sent = message.sent_timestamp
    if sent is not None:
        stats.send_to_done.record(max(0.0, time.time() - sent))


async def _delete(queue: Queue, stats: Stats, messages: Sequence[Message]) -> None:
    for start in range(0, len(messages), _BATCH):
        chunk = messages[start : start + _BATCH]
        stats.count_call("DeleteMessageBatch")
        failures = await queue.delete_batch(
            [(str(i), message.receipt_handle) for i, message in enumerate(chunk)]
        )
        stats.deleted += len(chunk) - len(failures)
        stats.delete_failed += len(failures)


async def _receive(queue: Queue, stats: Stats, wait_time_seconds: int) -> Sequence[Message]:
    stats.count_call("ReceiveMessage")
    messages = await queue.receive(max_messages=_BATCH, wait_time_seconds=wait_time_seconds)
    stats.received += len(messages)
    return messages


async def seed_sequential(
    *,
    queue: Queue,
    dispatcher: Dispatcher,
    tracker: Tracker,
    delete_by: str,
    wait_time_seconds: int,
    stats: Stats,
) -> Stats:
    """consumer.js: receive 10, invoke each in turn (awaiting each), [delete], repeat.

    Records into `stats` as it goes, so a run cancelled by its timeout still reports."""
    loop = asyncio.get_running_loop()
    stats.started_at = loop.time()
    try:
        while not tracker.finished.is_set():
            messages = await _receive(queue, stats, wait_time_seconds)
            succeeded: list[Message] = []
            for message in messages:
                stats.dispatched += 1
                try:
                    await dispatcher.dispatch(message)
                except DispatchError:
                    # bluebird's .each rejects: the rest of the batch is not invoked.
                    stats.failed += 1
                    break
                _record_success(stats, message, loop.time())
                succeeded.append(message)
            if succeeded and delete_by == "consumer":
                await _delete(queue, stats, succeeded)
    finally:
        stats.stopped_at = loop.time()
    return stats


async def naive_gather(
    *,
    queue: Queue,
    dispatcher: Dispatcher,
    tracker: Tracker,
    delete_by: str,
    wait_time_seconds: int,
    stats: Stats,
) -> Stats:
    """One receiver: receive 10, gather their dispatches, delete the succeeded, repeat."""
    loop = asyncio.get_running_loop()
    stats.started_at = loop.time()

    async def one(message: Message) -> Message | None:
        stats.dispatched += 1
        try:
            await dispatcher.dispatch(message)
        except DispatchError:
            stats.failed += 1
            return None
        _record_success(stats, message, loop.time())
        return message

    try:
        while not tracker.finished.is_set():
            messages = await _receive(queue, stats, wait_time_seconds)
            if not messages:
                continue
            done = await asyncio.gather(*(one(message) for message in messages))
            succeeded = [message for message in done if message is not None]
            if succeeded and delete_by == "consumer":
                await _delete(queue, stats, succeeded)
    finally:
        stats.stopped_at = loop.time()
    return stats


BASELINE_RUNNERS: Final[dict[str, Baseline]] = {
    "seed-sequential": seed_sequential,
    "naive-gather": naive_gather,
}
