"""Counters and latency histograms of one consumer run.

The histograms are `LatencyHistogram`s (`asyncloop._histogram`): fixed buckets, so a run's
statistics take the same few kilobytes however many messages it handles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._histogram import LatencyHistogram

__all__ = ("Stats",)


# The integer counters of `Stats`, summed by `Stats.merged`.
_COUNTERS = (
    "received",
    "dispatched",
    "succeeded",
    "failed",
    "throttled",
    "deleted",
    "delete_failed",
    "released",
    "release_failed",
    "peak_in_flight",
    "retried",
    "backed_off",
    "extended",
    "extend_failed",
    "lease_lost",
    "concurrency_limit",
    "concurrency_limit_min",
)


class Stats:
    """What one consumer run did. Counters are plain attributes: read them at any time.

    - `received`: messages returned by ReceiveMessage.
    - `dispatched`: dispatches started; `succeeded` + `failed` of them finished.
    - `throttled`: dispatch attempts the target refused for capacity (each attempt: a message
      retried in-process after a throttle counts once per throttle; `failed` counts it only if
      it was finally released).
    - `retried`: in-process re-dispatches after a throttle (they cost no receive).
    - `backed_off`: failed messages whose visibility was set by the failure backoff.
    - `extended`: visibility extensions by the heartbeat; `extend_failed`: extensions that
      failed (the next beat tries again); `lease_lost`: messages whose receipt handle an
      extension found invalid (their dispatch was cancelled; SQS owns them again).
    - `dispatch_limit` / `dispatch_limit_min`: the adaptive dispatch limit now, and the
      lowest it reached (both `max_in_flight` when nothing was throttled); also readable as
      `concurrency_limit` / `concurrency_limit_min`, their former names (and the JSON keys).
    - `deleted`: messages deleted by the consumer; `delete_failed`: deletes given up after
      retries (the message comes back: a duplicate later, never a loss).
    - `released`: messages made visible again at once (unstarted at stop, or cancelled);
      `release_failed`: releases that failed (the message returns after its visibility timeout).
    - `api_calls`: calls made, by operation name (ReceiveMessage, DeleteMessageBatch, Invoke, ...).
    - `api_errors`: calls that failed as a whole (an AWS or transport error, throttles
      included), by operation name; per-entry failures of a batch call are not counted here.
    - `receive_to_done` / `send_to_done`: latency from receive (or from ``SentTimestamp``) to
      the dispatch's success (a message whose ``SentTimestamp`` cannot be read is left out of
      `send_to_done`, and still deleted).
    - `started_at` / `stopped_at` / `last_success_at`: the event loop's clock at the start of
      the run, at its end, and at the last successful dispatch (None before any).
    """

    __slots__ = (
        "api_calls",
        "api_errors",
        "backed_off",
        "delete_failed",
        "deleted",
        "dispatch_limit",
        "dispatch_limit_min",
        "dispatched",
        "extend_failed",
        "extended",
        "failed",
        "last_success_at",
        "lease_lost",
        "peak_in_flight",
        "receive_to_done",
        "received",
        "release_failed",
        "released",
        "retried",
        "send_to_done",
        "started_at",
        "stopped_at",
        "succeeded",
        "throttled",
    )

    def __init__(self) -> None:
        self.received = 0
        self.dispatched = 0
        self.succeeded = 0
        self.failed = 0
        self.throttled = 0
        self.deleted = 0
        self.delete_failed = 0
        self.released = 0
        self.release_failed = 0
        self.peak_in_flight = 0
        self.retried = 0
        self.backed_off = 0
        self.extended = 0
        self.extend_failed = 0
        self.lease_lost = 0
        self.dispatch_limit = 0
        self.dispatch_limit_min = 0
        self.api_calls: dict[str, int] = {}
        self.api_errors: dict[str, int] = {}
        self.receive_to_done = LatencyHistogram()
        self.send_to_done = LatencyHistogram()
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.last_success_at: float | None = None

    @property
    def concurrency_limit(self) -> int:
        """The former name of `dispatch_limit` (an alias, read and write)."""
        return self.dispatch_limit

    @concurrency_limit.setter
    def concurrency_limit(self, value: int) -> None:
        self.dispatch_limit = value

    @property
    def concurrency_limit_min(self) -> int:
        """The former name of `dispatch_limit_min` (an alias, read and write)."""
        return self.dispatch_limit_min

    @concurrency_limit_min.setter
    def concurrency_limit_min(self, value: int) -> None:
        self.dispatch_limit_min = value

    def count_call(self, operation: str, n: int = 1) -> None:
        self.api_calls[operation] = self.api_calls.get(operation, 0) + n

    def count_error(self, operation: str, n: int = 1) -> None:
        self.api_errors[operation] = self.api_errors.get(operation, 0) + n

    @property
    def duration_s(self) -> float:
        """Seconds from the start of the run to its end, the stop included (drain, final
        flush, releases); 0.0 until `run()` has returned."""
        if self.started_at is None or self.stopped_at is None:
            return 0.0
        return self.stopped_at - self.started_at

    @property
    def throughput_msgs_s(self) -> float:
        """Succeeded messages per second, from the start of the run to its last success: an
        idle tail (the last empty receives of `until_empty`, waiting for a `duration` to end)
        and the stop are not counted. 0.0 when nothing succeeded. Stats filled in by other code
        that does not set `last_success_at` are measured over `duration_s`."""
        if self.started_at is None:
            return 0.0
        end = self.last_success_at if self.last_success_at is not None else self.stopped_at
        busy = end - self.started_at if end is not None else 0.0
        return self.succeeded / busy if busy > 0 else 0.0

    def to_state(self) -> dict[str, Any]:
        """Everything `from_state` needs to rebuild these statistics, JSON-ready: counters,
        API calls, both histograms whole, and the clock readings. `asyncloop run --processes`
        children print it so the supervisor can `merged` them."""
        return {
            "counters": {name: getattr(self, name) for name in _COUNTERS},
            "api_calls": dict(self.api_calls),
            "api_errors": dict(self.api_errors),
            "receive_to_done": self.receive_to_done.to_state(),
            "send_to_done": self.send_to_done.to_state(),
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "last_success_at": self.last_success_at,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Stats:
        """The statistics `to_state` described; ValueError for a malformed state."""
        stats = cls()
        try:
            for name in _COUNTERS:
                value = state["counters"][name]
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"counter {name} must be an integer, got {value!r}")
                setattr(stats, name, value)
            stats.api_calls = {str(k): int(v) for k, v in state["api_calls"].items()}
            stats.api_errors = {str(k): int(v) for k, v in state.get("api_errors", {}).items()}
            stats.receive_to_done = LatencyHistogram.from_state(state["receive_to_done"])
            stats.send_to_done = LatencyHistogram.from_state(state["send_to_done"])
            for name in ("started_at", "stopped_at", "last_success_at"):
                value = state[name]
                setattr(stats, name, None if value is None else float(value))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a stats state: {exc!r}") from None
        return stats

    @classmethod
    def merged(cls, parts: Iterable[Stats]) -> Stats:
        """One summary of runs that went side by side (`asyncloop run --processes`).

        Counters and API calls are summed, and so are `peak_in_flight`, `concurrency_limit`
        and `concurrency_limit_min` (each process's own, added up: the peak and the lowest
        limit are upper bounds for the whole, since the processes need not peak together).
        Histograms are merged whole, so percentiles are the run's, not an average of each
        process's. Clocks are per process, so the merged run starts at 0.0, its duration is
        the longest part's, and its busy time (to the last success) is the longest part's:
        `throughput_msgs_s` is then the summed successes over that time.
        """
        out = cls()
        durations: list[float] = []
        busy: list[float] = []
        for part in parts:
            for name in _COUNTERS:
                setattr(out, name, getattr(out, name) + getattr(part, name))
            for operation, n in part.api_calls.items():
                out.count_call(operation, n)
            for operation, n in part.api_errors.items():
                out.count_error(operation, n)
            out.receive_to_done.merge(part.receive_to_done)
            out.send_to_done.merge(part.send_to_done)
            durations.append(part.duration_s)
            if part.started_at is not None and part.last_success_at is not None:
                busy.append(part.last_success_at - part.started_at)
        out.started_at = 0.0
        out.stopped_at = max(durations, default=0.0)
        out.last_success_at = max(busy) if busy else None
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json`` line)."""
        return {
            "received": self.received,
            "dispatched": self.dispatched,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "throttled": self.throttled,
            "deleted": self.deleted,
            "delete_failed": self.delete_failed,
            "released": self.released,
            "release_failed": self.release_failed,
            "peak_in_flight": self.peak_in_flight,
            "retried": self.retried,
            "backed_off": self.backed_off,
            "extended": self.extended,
            "extend_failed": self.extend_failed,
            "lease_lost": self.lease_lost,
            # The JSON keys keep the former name: the CLI's --json contract.
            "concurrency_limit": self.dispatch_limit,
            "concurrency_limit_min": self.dispatch_limit_min,
            "duration_s": round(self.duration_s, 6),
            "throughput_msgs_s": round(self.throughput_msgs_s, 3),
            "latency_ms": self.receive_to_done.summary_ms(),
            "send_to_done_ms": self.send_to_done.summary_ms(),
            "api_calls": dict(sorted(self.api_calls.items())),
        }

    def __repr__(self) -> str:
        return (
            f"Stats(received={self.received}, succeeded={self.succeeded}, failed={self.failed}, "
            f"deleted={self.deleted}, released={self.released})"
        )
