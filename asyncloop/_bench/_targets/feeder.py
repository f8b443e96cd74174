"""`Feeder`: the HTTP targets' producer, which keeps `backlog` messages visible ahead of the
contender from its own thread and plain boto3 client (`sync_sqs_client`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .._config import BenchError
from .._workload import Tracker, body

__all__ = ("Feeder", "sync_sqs_client")


class Feeder:
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


def sync_sqs_client(endpoint_url: str | None, region: str) -> Any:
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config

    return boto3.session.Session(region_name=region).client(
        "sqs",
        endpoint_url=endpoint_url,
        config=Config(retries={"mode": "standard", "total_max_attempts": 5}),
    )
