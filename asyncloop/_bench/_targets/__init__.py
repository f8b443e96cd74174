"""Targets: where the benchmark's queue and function live; `make_target` picks one.

``fake`` (`fake.py`)
    `asyncloop.testing.FakeQueue` and `FakeLambda` in the bench's event loop, with the
    latency profile's figure on each call: isolates the loop's own cost.
``moto`` (`moto.py`)
    moto's server in a child process (`child_server.py` runs ``_server_process.py``; Lambda
    without Docker) behind a latency-injecting `FaultProxy` in the same child, which holds
    each request for the profile's figure for its operation; reached over real HTTP with
    aioboto3. A child, not a thread: moto's CPU (and its GIL) stay out of the bench's
    measurements.
``fauxqs`` (`fauxqs.py`)
    fauxqs (Node, `asyncloop.testing.FauxqsServer`) behind a latency proxy (a child process)
    for SQS, and asyncloop.testing's local Lambda Invoke endpoint (`LambdaServer`, in a child
    process, the profile's Invoke latency) for Lambda.
``aws`` (`aws.py`)
    Real AWS (or any endpoint given with ``--endpoint-url``): creates a queue per run, a DLQ,
    a tiny no-op function and its role, all named with a unique prefix, and deletes them all
    on the way out, even when interrupted.

The HTTP targets share `http.py` (clients, queues, resources) and `calibration.py` (the SDK
floor, the emulator's ceiling). On them a feeder thread (`feeder.py`: plain boto3, its own
connection) keeps `backlog` messages visible ahead of the contender: moto's cost per request
grows with its backlog, and every contender meets the same queue depth. Its CPU is on its own
thread: the bench reports the event loop thread's CPU (`time.thread_time`) as the loop's, and
the process's as well.
"""

from __future__ import annotations

import importlib.util
from typing import Final

from .._config import BenchConfig
from .aws import AwsTarget as AwsTarget
from .aws import aws_plan as aws_plan
from .base import BASELINE_TRANSPORT as BASELINE_TRANSPORT
from .base import RunEnv as RunEnv
from .base import Target as Target
from .base import proc_cpu_seconds as proc_cpu_seconds
from .fake import FakeTarget as FakeTarget
from .fauxqs import FauxqsTarget as FauxqsTarget
from .moto import MotoTarget as MotoTarget

__all__ = (
    "BASELINE_TRANSPORT",
    "AwsTarget",
    "FakeTarget",
    "FauxqsTarget",
    "MotoTarget",
    "RunEnv",
    "Target",
    "aws_plan",
    "make_target",
    "moto_missing",
    "proc_cpu_seconds",
)

# moto's server (moto[server]: moto and flask) is a test dependency, not the library's: an
# installed wheel has it only with the bench extra.
_MOTO_MODULES: Final = ("moto", "flask")


def moto_missing(config: BenchConfig) -> str | None:
    """Why `config` cannot run here (it needs moto's server, which is not installed), or None.

    Checked before the run starts, so the default sweep does not run for minutes first and then
    fail at its HTTP check. Looks the modules up without importing them: moto runs in a child.
    """
    if config.target != "moto" and config.http_check != "moto":
        return None
    if all(importlib.util.find_spec(module) is not None for module in _MOTO_MODULES):
        return None
    need = "the moto target needs" if config.target == "moto" else "the HTTP check on moto needs"
    hint = "" if config.target == "moto" else ", or pass --http-check none"
    return f"{need} moto's server, which is not installed: pip install 'asyncloop[bench]'{hint}"


def make_target(config: BenchConfig) -> Target:
    targets: dict[str, type[Target]] = {
        "fake": FakeTarget,
        "moto": MotoTarget,
        "fauxqs": FauxqsTarget,
        "aws": AwsTarget,
    }
    return targets[config.target](config)
