"""The benchmark's parameters: one frozen dataclass, checked on construction, with target defaults.

A parameter left as None takes its target's default (`TARGET_DEFAULTS`), so ``asyncloop bench``
with no flags is the default sweep: the fake target under the ``aws-like`` latency profile,
max-in-flight 1..256 at two receiver counts, each run sized to last about `run_seconds`, then
real HTTP on moto at the settings moto's ceiling allows (`http_check`). The sweep is the
product of `receivers` x `max_in_flight` x `batch_size` x `prefetch` x `transport`.

A little over the 400-line guide (about 410): `BenchConfig`'s fields, their checks and the
target defaults they resolve against are one table, read together.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from ._latency_profiles import Profile

__all__ = (
    "AWS_MESSAGE_CAP",
    "BASELINES",
    "TARGETS",
    "TARGET_DEFAULTS",
    "TRANSPORTS",
    "BenchConfig",
    "BenchError",
    "LatencyModel",
    "Setting",
    "default_transport",
    "parse_int_list",
    "parse_names",
)

Target = Literal["fake", "moto", "fauxqs", "aws"]
TARGETS: Final[tuple[str, ...]] = ("fake", "moto", "fauxqs", "aws")
BASELINES: Final[tuple[str, ...]] = ("seed-sequential", "naive-gather", "node-sqs-consumer")
# node-sqs-consumer (asyncloop/_bench/_node_baseline.py) runs on the fauxqs target only: the
# others' default.
_PYTHON_BASELINES: Final = BASELINES[:2]
# The consumer's data-plane transports (`asyncloop.AwsConfig.transport`); results written before
# the bench recorded a setting's transport were measured on the first.
TRANSPORTS: Final[tuple[str, ...]] = ("sdk", "lean")
# The aws target refuses more than this many messages per run (cost and quota guard).
AWS_MESSAGE_CAP: Final = 10_000
# Lognormal: p99 = p50 * exp(Z99 * sigma).
_Z99: Final = 2.3263478740408408


class BenchError(ValueError):
    """A bad benchmark parameter or an unusable target; the CLI exits 2 with its message."""


def default_transport() -> str:
    """The transport a run uses when it names none: `asyncloop.AwsConfig`'s default, so the
    bench follows the library when that default changes."""
    from asyncloop import AwsConfig

    return AwsConfig().transport


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """A latency in milliseconds: fixed (`p99` is None) or lognormal given its p50 and p99.

    Parsed from ``"50"`` (fixed) or ``"50:200"`` (p50:p99).
    """

    p50_ms: float = 0.0
    p99_ms: float | None = None

    @classmethod
    def parse(cls, text: str, *, flag: str = "latency") -> LatencyModel:
        p50_text, sep, p99_text = text.partition(":")
        try:
            p50 = float(p50_text)
            p99 = float(p99_text) if sep else None
        except ValueError:
            raise BenchError(
                f"{flag} must be milliseconds (50) or p50:p99 (50:200), got {text!r}"
            ) from None
        if not (math.isfinite(p50) and 0 <= p50 <= 60_000):
            raise BenchError(f"{flag} p50 must be in 0..60000 ms, got {text!r}")
        if p99 is not None and not (math.isfinite(p99) and p50 <= p99 <= 600_000 and p50 > 0):
            raise BenchError(f"{flag} must have 0 < p50 <= p99 <= 600000 ms, got {text!r}")
        return cls(p50, p99)

    @property
    def is_zero(self) -> bool:
        return self.p50_ms == 0

    @property
    def mean_s(self) -> float:
        """The mean in seconds (for Little's law): p50 when fixed, the lognormal's mean else."""
        if self.p99_ms is None or self.p99_ms == self.p50_ms:
            return self.p50_ms / 1e3
        sigma = math.log(self.p99_ms / self.p50_ms) / _Z99
        return self.p50_ms / 1e3 * math.exp(sigma * sigma / 2)

    def sampler(self, seed: int = 0) -> float | Callable[[], float]:
        """Seconds: a float when fixed, else a seeded draw per call."""
        if self.p99_ms is None or self.p99_ms == self.p50_ms:
            return self.p50_ms / 1e3
        mu = math.log(self.p50_ms / 1e3)
        sigma = math.log(self.p99_ms / self.p50_ms) / _Z99
        rng = random.Random(seed)
        return lambda: rng.lognormvariate(mu, sigma)

    def __str__(self) -> str:
        def ms(value: float) -> str:
            return f"{value:g}"

        if self.p99_ms is None:
            return ms(self.p50_ms)
        return f"{ms(self.p50_ms)}:{ms(self.p99_ms)}"


@dataclass(frozen=True, slots=True, order=True)
class Setting:
    """One point of the sweep: receivers, max in flight, batch size, the consumer's transport
    (``sdk`` when not given: what a setting read from older results used) and its prefetch
    (0 when not given: older results had none)."""

    receivers: int
    max_in_flight: int
    batch_size: int
    transport: str = TRANSPORTS[0]
    prefetch: int = 0

    @property
    def label(self) -> str:
        """``R=8 C=256 B=10`` (and `` F=10`` with a prefetch): the setting without its
        transport."""
        label = f"R={self.receivers} C={self.max_in_flight} B={self.batch_size}"
        return f"{label} F={self.prefetch}" if self.prefetch else label

    def name(self, *, with_transport: bool) -> str:
        """`label`, and ``R=8 C=256 B=10 lean`` `with_transport` (a sweep of several)."""
        return f"{self.label} {self.transport}" if with_transport else self.label


@dataclass(frozen=True, slots=True)
class _Defaults:
    messages: int
    receivers: tuple[int, ...]
    max_in_flight: tuple[int, ...]
    batch_size: tuple[int, ...]
    backlog: int
    wait_time_seconds: int


TARGET_DEFAULTS: Final[dict[str, _Defaults]] = {
    # The loop alone: fast enough for a wide sweep.
    # `messages` is the cap of a run sized by `run_seconds` (see BenchConfig.messages).
    "fake": _Defaults(20_000, (1, 4), (1, 2, 4, 8, 16, 32, 64, 128, 256), (10,), 1_000, 1),
    # moto's cost per request grows with its backlog: keep it near 100 (DESIGN.md). Sized so
    # that the default command (4 contenders x 3 repeats) ends in about two minutes: moto
    # serves about 150-250 msgs/s on two cores.
    "moto": _Defaults(1_000, (2,), (16, 64), (10,), 100, 1),
    "fauxqs": _Defaults(5_000, (1, 4), (4, 16, 64, 256), (10,), 1_000, 1),
    "aws": _Defaults(1_000, (4,), (16, 64), (10,), 1_000, 1),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig:
    """Everything one ``asyncloop bench`` invocation measures.

    None means the target's default (see `TARGET_DEFAULTS`); `resolved()` fills them in.
    """

    target: str = "fake"
    messages: int | None = None
    """Messages per run. None: the target's default; on the fake target, each run is sized to
    last about `run_seconds` at the rate its setting's ceilings predict (200 to the target's
    default of 20,000)."""
    receivers: tuple[int, ...] | None = None
    max_in_flight: tuple[int, ...] | None = None
    batch_size: tuple[int, ...] | None = None
    delete_by: Literal["consumer", "worker"] = "consumer"
    profile: str = "aws-like"
    """The latency profile (`asyncloop._bench._latency_profiles.PROFILES`): per-operation latencies
    applied by the fake, or by a proxy in front of moto and fauxqs. Not applied on aws."""
    latency: LatencyModel | None = None
    """Overrides the profile's SQS latency per call (receive, delete, visibility change)."""
    invoke_latency: LatencyModel | None = None
    """Overrides the profile's Invoke latency (both invocation types); on aws, the no-op
    function's sleep."""
    worker_ms: float | None = None
    """Overrides the profile's worker duration, added to RequestResponse invokes."""
    invocation_type: Literal["Event", "RequestResponse"] = "Event"
    transport: tuple[str, ...] | None = None
    """The consumer's transports to sweep (`TRANSPORTS`); None: `default_transport()`. More
    than the default applies to the HTTP targets only: the fake's queue is in memory."""
    prefetch: tuple[int, ...] | None = None
    """The consumer's prefetch depths to sweep (`asyncloop.ConsumerConfig.prefetch`,
    0..100000); None: (0,), the library's default."""
    repeats: int = 1
    http_check: str | None = None
    """With the fake target: also run the sweep's settings on this HTTP target (``moto``)
    where its calibrated ceiling allows, and report where the emulator is the limit."""
    run_seconds: float = 2.0
    """How long a run sized by the fake target lasts, about (see `messages`)."""
    baselines: tuple[str, ...] | None = None
    """The baselines to run; None: all of `BASELINES` on fauxqs, the two Python ones elsewhere."""
    endpoint_url: str | None = None
    region: str | None = None
    out: str | None = None
    yes: bool = False
    # Not flags: the workload's constants, set by tests and by the scenarios.
    backlog: int | None = None
    """Messages kept visible ahead of the consumer by the feeder."""
    wait_time_seconds: int | None = None
    warmup_messages: int = 200
    run_timeout_s: float | None = None
    """A run that has not finished this many seconds after it started is stopped and
    reported as incomplete (None: derived from the workload)."""
    calibrate: bool = True
    stall_timeout_s: float = 60.0
    """A run in which no message succeeds for this many seconds is abandoned with an error
    (the target stopped answering), instead of waiting for `run_timeout_s`."""

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise BenchError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.messages is not None and not 1 <= self.messages <= 100_000_000:
            raise BenchError(f"messages must be in 1..100000000, got {self.messages}")
        if (
            self.target == "aws"
            and self.messages is not None
            and self.messages > AWS_MESSAGE_CAP
            and self.endpoint_url is None
        ):
            raise BenchError(
                f"messages must be at most {AWS_MESSAGE_CAP} on the aws target, got {self.messages}"
            )
        for name, low, high in (
            ("receivers", 1, 1024),
            ("max_in_flight", 1, 100_000),
            ("batch_size", 1, 10),
            ("prefetch", 0, 100_000),
        ):
            values = getattr(self, name)
            if values is None:
                continue
            if not values:
                raise BenchError(f"{name.replace('_', '-')} must list at least one value")
            for value in values:
                if not low <= value <= high:
                    raise BenchError(
                        f"{name.replace('_', '-')} values must be in {low}..{high}, got {value}"
                    )
        self._check_transport()
        if self.delete_by not in ("consumer", "worker"):
            raise BenchError(f"delete-by must be consumer or worker, got {self.delete_by!r}")
        from ._latency_profiles import get_profile

        get_profile(self.profile)
        if self.invocation_type not in ("Event", "RequestResponse"):
            raise BenchError(
                f"invocation-type must be Event or RequestResponse, got {self.invocation_type!r}"
            )
        if self.worker_ms is not None and not 0 <= self.worker_ms <= 600_000:
            raise BenchError(f"worker-ms must be in 0..600000, got {self.worker_ms}")
        if self.http_check is not None and (
            self.target != "fake" or self.http_check not in ("moto", "fauxqs")
        ):
            raise BenchError(
                "http-check must be moto, fauxqs or none, and applies to the fake target only, "
                f"got {self.http_check!r} with target {self.target}"
            )
        if not 0.1 <= self.run_seconds <= 600:
            raise BenchError(f"run_seconds must be in 0.1..600, got {self.run_seconds}")
        if not 1 <= self.repeats <= 100:
            raise BenchError(f"repeats must be in 1..100, got {self.repeats}")
        for name in self.baselines or ():
            if name not in BASELINES:
                raise BenchError(
                    f"baselines must be none or a list of {', '.join(BASELINES)}, got {name!r}"
                )
            if name == "node-sqs-consumer" and self.target != "fauxqs":
                raise BenchError(
                    f"baselines: node-sqs-consumer runs on the fauxqs target only, got target "
                    f"{self.target!r}"
                )
        if self.endpoint_url is not None and not self.endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise BenchError(f"endpoint-url must be an http(s) URL, got {self.endpoint_url!r}")
        if self.endpoint_url is not None and self.target in ("fake", "moto", "fauxqs"):
            raise BenchError(
                f"endpoint-url applies to the aws target only (the {self.target} target starts "
                "its own server)"
            )
        if self.backlog is not None and not 1 <= self.backlog <= 1_000_000:
            raise BenchError(f"backlog must be in 1..1000000, got {self.backlog}")
        if self.wait_time_seconds is not None and not 0 <= self.wait_time_seconds <= 20:
            raise BenchError(f"wait_time_seconds must be in 0..20, got {self.wait_time_seconds}")

    def _check_transport(self) -> None:
        if self.transport is None:
            return
        if not self.transport:
            raise BenchError(f"transport must list one or more of {', '.join(TRANSPORTS)}")
        for name in self.transport:
            if name not in TRANSPORTS:
                raise BenchError(
                    f"transport must be a comma-separated list of {', '.join(TRANSPORTS)}, "
                    f"got {name!r}"
                )
        default = default_transport()
        if self.target == "fake" and tuple(self.transport) != (default,):
            raise BenchError(
                "transport applies to the moto, fauxqs and aws targets, where the consumer "
                f"calls SQS and Lambda over HTTP; the fake target's queue is in memory (its only "
                f"transport is the default, {default}), got {','.join(self.transport)}"
            )

    def resolved(self) -> BenchConfig:
        """A copy with every None parameter replaced by the target's default."""
        d = TARGET_DEFAULTS[self.target]
        return replace(
            self,
            # None stays None on the fake target: each run is then sized by `run_seconds`.
            messages=(
                self.messages if self.messages is not None or self.target == "fake" else d.messages
            ),
            receivers=self.receivers or d.receivers,
            max_in_flight=self.max_in_flight or d.max_in_flight,
            batch_size=self.batch_size or d.batch_size,
            prefetch=self.prefetch or (0,),
            transport=self.transport or (default_transport(),),
            baselines=(
                self.baselines
                if self.baselines is not None
                else BASELINES
                if self.target == "fauxqs"
                else _PYTHON_BASELINES
            ),
            backlog=self.backlog if self.backlog is not None else d.backlog,
            wait_time_seconds=(
                self.wait_time_seconds
                if self.wait_time_seconds is not None
                else d.wait_time_seconds
            ),
        )

    def latency_profile(self) -> Profile:
        """The profile with the `latency`, `invoke_latency` and `worker_ms` overrides."""
        from ._latency_profiles import get_profile

        return get_profile(self.profile).with_overrides(
            sqs=self.latency, invoke=self.invoke_latency, worker_ms=self.worker_ms
        )

    def invoke_model(self) -> LatencyModel:
        """Invoke's latency as the caller sees it, for this invocation type."""
        return self.latency_profile().invoke(self.invocation_type)

    @property
    def sized_by_time(self) -> bool:
        """Whether each run's messages come from `run_seconds` (the fake, no --messages)."""
        return self.target == "fake" and self.messages is None

    @property
    def n(self) -> int:
        """Messages per run, or the cap of a run sized by `run_seconds`."""
        if self.messages is None:
            return TARGET_DEFAULTS[self.target].messages
        return self.messages

    def settings(self) -> list[Setting]:
        """The sweep: every receivers x max_in_flight x batch_size x prefetch x transport, in
        that order (a setting's transports side by side)."""
        assert self.receivers, "call resolved() first"
        assert self.max_in_flight, "call resolved() first"
        assert self.batch_size, "call resolved() first"
        assert self.prefetch, "call resolved() first"
        assert self.transport, "call resolved() first"
        return [
            Setting(r, c, b, t, f)
            for r in self.receivers
            for c in self.max_in_flight
            for b in self.batch_size
            for f in self.prefetch
            for t in self.transport
        ]

    @property
    def several_transports(self) -> bool:
        """Whether the sweep has more than one transport: its labels then name each one's."""
        return len(self.transport or ()) > 1


def parse_int_list(text: str, *, flag: str) -> tuple[int, ...]:
    """``"1,16,64"`` -> (1, 16, 64); BenchError naming `flag` on anything else."""
    parts = [part.strip() for part in text.split(",")]
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        raise BenchError(
            f"{flag} must be a comma-separated list of integers (1,16,64), got {text!r}"
        ) from None
    return tuple(dict.fromkeys(values))


def parse_names(
    text: str, *, flag: str, choices: Sequence[str], allow_none: bool = True
) -> tuple[str, ...]:
    """``"none"`` -> () (when `allow_none`); ``"a,b"`` -> ("a", "b"), each one of `choices`."""
    if allow_none and text.strip().lower() == "none":
        return ()
    expected = (
        "none or " if allow_none else ""
    ) + f"a comma-separated list of {', '.join(choices)}"
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    for name in names:
        if name not in choices:
            raise BenchError(f"{flag} must be {expected}, got {name!r}")
    if not names:
        raise BenchError(f"{flag} must be {expected}, got {text!r}")
    return names
