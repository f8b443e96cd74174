"""Latency profiles: a latency distribution per operation, applied to every target alike.

A profile gives ReceiveMessage, DeleteMessageBatch, ChangeMessageVisibilityBatch and Invoke
(one figure per invocation type) a `LatencyModel` each; at the proxy, DeleteMessage and
ChangeMessageVisibility (node-sqs-consumer's single-message calls) take the batch calls'. The
fake target sleeps it inside the fake's calls; moto and fauxqs get it from a latency-injecting
proxy in front of the emulator (`asyncloop.testing.FaultProxy`, ``latency=``), so a
real-HTTP run sees real-looking round trips on top of the emulator's own time.

Built-ins (`PROFILES`):

``aws-like``
    Round trips of an in-region client, as published measurements put them (the sources are
    in bench/RESULTS.md, "Latency profiles"): SQS calls about 10-20 ms at p50 with a long
    tail, Invoke (Event: acceptance only) about 20 ms. RequestResponse adds the function's
    own duration, `worker_ms` (default 100 ms).
``zero``
    No added latency: the loop's (fake) or the emulator's (moto, fauxqs) own ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from ._config import BenchError, LatencyModel

__all__ = ("OPERATIONS", "PROFILES", "Profile", "get_profile")

# The operations a profile covers, as the proxy and the fake name them.
OPERATIONS: Final = ("ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch")


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """Latency per operation (milliseconds, `LatencyModel`), plus the worker's own duration.

    `invoke_event` is Invoke's API round trip with ``InvocationType=Event`` (acceptance: 202);
    `invoke_request_response` is the round trip of a synchronous Invoke without the function's
    run time, which is `worker_ms` (fixed, 0..600000 ms) on top.
    """

    name: str
    receive: LatencyModel
    delete: LatencyModel
    change_visibility: LatencyModel
    invoke_event: LatencyModel
    invoke_request_response: LatencyModel
    worker_ms: float = 0.0
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise BenchError("profile name must not be empty")
        if not 0 <= self.worker_ms <= 600_000:
            raise BenchError(f"worker_ms must be in 0..600000 ms, got {self.worker_ms}")

    def sqs(self, operation: str) -> LatencyModel:
        """The latency of one SQS operation (one of `OPERATIONS`)."""
        return {
            "ReceiveMessage": self.receive,
            "DeleteMessageBatch": self.delete,
            "ChangeMessageVisibilityBatch": self.change_visibility,
        }[operation]

    def invoke(self, invocation_type: str) -> LatencyModel:
        """Invoke as the caller sees it: the round trip, plus `worker_ms` for RequestResponse."""
        if invocation_type == "Event":
            return self.invoke_event
        base = self.invoke_request_response
        if not self.worker_ms:
            return base
        p99 = None if base.p99_ms is None else base.p99_ms + self.worker_ms
        return LatencyModel(base.p50_ms + self.worker_ms, p99)

    def with_overrides(
        self,
        *,
        sqs: LatencyModel | None = None,
        invoke: LatencyModel | None = None,
        worker_ms: float | None = None,
    ) -> Profile:
        """A copy with the SQS calls, both Invoke figures, or the worker's duration replaced;
        its name says so (``aws-like+custom``)."""
        if sqs is None and invoke is None and worker_ms is None:
            return self
        changed = replace(
            self,
            name=self.name if self.name.endswith("+custom") else f"{self.name}+custom",
            receive=sqs if sqs is not None else self.receive,
            delete=sqs if sqs is not None else self.delete,
            change_visibility=sqs if sqs is not None else self.change_visibility,
            invoke_event=invoke if invoke is not None else self.invoke_event,
            invoke_request_response=invoke if invoke is not None else self.invoke_request_response,
            worker_ms=worker_ms if worker_ms is not None else self.worker_ms,
        )
        return changed

    def to_dict(self) -> dict[str, Any]:
        """The profile as results.json records it (latencies as ``p50`` or ``p50:p99`` ms)."""
        return {
            "name": self.name,
            "ReceiveMessage": str(self.receive),
            "DeleteMessageBatch": str(self.delete),
            "ChangeMessageVisibilityBatch": str(self.change_visibility),
            "Invoke:Event": str(self.invoke_event),
            "Invoke:RequestResponse": str(self.invoke_request_response),
            "worker_ms": self.worker_ms,
        }

    def proxy_latencies(self, invocation_type: str) -> dict[str, str]:
        """Operation -> latency text, for the proxy in front of an emulator.

        Besides `OPERATIONS`, the single-message DeleteMessage and ChangeMessageVisibility
        get the batch calls' figures (a profile's figure is a round trip's): node-sqs-consumer
        (fauxqs) deletes one message a call."""
        out = {op: str(self.sqs(op)) for op in OPERATIONS}
        out["DeleteMessage"] = str(self.delete)
        out["ChangeMessageVisibility"] = str(self.change_visibility)
        out["Invoke"] = str(self.invoke(invocation_type))
        return out


def _ms(text: str) -> LatencyModel:
    return LatencyModel.parse(text)


PROFILES: Final[dict[str, Profile]] = {
    "aws-like": Profile(
        name="aws-like",
        receive=_ms("15:60"),
        delete=_ms("12:50"),
        change_visibility=_ms("12:50"),
        invoke_event=_ms("20:80"),
        invoke_request_response=_ms("20:80"),
        worker_ms=100.0,
        description="in-region round trips: SQS 12-15 ms p50, Invoke 20 ms p50, long tails",
    ),
    "zero": Profile(
        name="zero",
        receive=LatencyModel(),
        delete=LatencyModel(),
        change_visibility=LatencyModel(),
        invoke_event=LatencyModel(),
        invoke_request_response=LatencyModel(),
        description="no added latency: the loop's or the emulator's own ceiling",
    ),
}


def get_profile(name: str) -> Profile:
    """The built-in profile `name`; BenchError listing the names otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise BenchError(f"profile must be one of {', '.join(PROFILES)}, got {name!r}") from None
