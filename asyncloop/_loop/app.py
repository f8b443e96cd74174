"""The loop's Lambda handlers: `LoopApp` keeps one event loop and one runtime across warm
invocations, and turns a Kinesis event (or a direct invoke) into runs of its tokens.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any, NamedTuple

from .._emf import log
from .._exceptions import AwsError, ConfigError
from .._lambda_process import remaining_seconds
from .control import LoopToken, parse_token
from .runner import LoopRuntime, RunOutcome, run_token, run_watchdog, start_loops
from .settings import LoopSettings, RuntimeFactory, build_aws_runtime

__all__ = ("LoopApp", "TokenRecord", "kinesis_records")


class TokenRecord(NamedTuple):
    """One record of a loop event: its sequence number, its token, or why it has none."""

    sequence: str | None
    token: LoopToken | None
    problem: str = ""
    """Empty for a token; else what was wrong (``not_a_record``, ``data_not_base64``...)."""


def kinesis_records(event: object) -> list[TokenRecord]:
    """One `TokenRecord` per record of a Kinesis event; a direct invoke carrying a token is one
    record without a sequence number. Never raises: whatever the event holds, a record that
    carries no token comes back with its `problem` named, to be skipped (a stray record must
    not fail the invocation and block its lane)."""
    if not isinstance(event, Mapping):
        return [TokenRecord(None, None, "event_not_an_object")]
    records = event.get("Records")
    if not isinstance(records, list):
        token = parse_token(event)
        return [TokenRecord(None, token, "" if token else "not_a_token")]
    return [_kinesis_record(record) for record in records]


def _kinesis_record(record: object) -> TokenRecord:
    kinesis = record.get("kinesis") if isinstance(record, Mapping) else None
    if not isinstance(kinesis, Mapping):
        return TokenRecord(None, None, "not_a_kinesis_record")
    sequence = kinesis.get("sequenceNumber")
    # Only a string names the record in batchItemFailures; anything else names no record
    sequence = sequence if isinstance(sequence, str) and sequence else None
    data = kinesis.get("data")
    if not isinstance(data, str):
        return TokenRecord(sequence, None, "data_not_a_string")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return TokenRecord(sequence, None, "data_not_base64")
    token = parse_token(raw)
    return TokenRecord(sequence, token, "" if token else "not_a_token")


class LoopApp:
    """The loop and watchdog handlers with one event loop and one runtime kept across warm
    invocations. The runtime is built on first use, so a bad environment fails the first
    invocation with a `ConfigError` naming the variable, and a fixed one is picked up by the
    next (nothing half-built is cached)."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str],
        runner: asyncio.Runner | None = None,
        runtime_factory: RuntimeFactory = build_aws_runtime,
    ) -> None:
        self._environ = environ
        self._own_runner = runner is None
        self._runner = runner if runner is not None else asyncio.Runner()
        self._factory = runtime_factory
        self._stack: AsyncExitStack | None = None
        self._runtime: LoopRuntime | None = None

    async def runtime(self) -> LoopRuntime:
        if self._runtime is None:
            settings = LoopSettings.from_env(self._environ)
            stack = AsyncExitStack()
            try:
                self._runtime = await self._factory(settings, stack)
            except BaseException:
                await stack.aclose()
                raise
            self._stack = stack
        return self._runtime

    def loop_handler(self, event: object, context: Any) -> dict[str, Any]:
        """Run the event's tokens. Records without a token (and an event that is not an
        object) are skipped, logged as ``invalid_token`` with their `problem` and counted in
        the answer's ``invalid``."""
        return self._runner.run(self._loop(event, remaining_seconds(context, 60.0)))

    def watchdog_handler(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        return self._runner.run(self._watchdog())

    async def _loop(self, event: object, remaining: float) -> dict[str, Any]:
        import anyio

        rt = await self.runtime()
        if isinstance(event, Mapping) and event.get("action") == "start":
            loops = event.get("loops", rt.policy.min_loops)
            if isinstance(loops, bool) or not isinstance(loops, int) or loops < 0:
                raise ConfigError(f"loops must be a non-negative int, got {loops!r}", field="loops")
            return {"started": await start_loops(rt, loops)}
        records = kinesis_records(event)
        failures: list[dict[str, str]] = []
        outcomes: list[RunOutcome | None] = [None] * len(records)

        invalid = 0

        async def one(index: int, sequence: str | None, token: LoopToken | None) -> None:
            if token is None:
                nonlocal invalid
                invalid += 1
                log(
                    "invalid_token",
                    level="WARNING",
                    write=rt.write,
                    sequence_number=sequence,
                    problem=records[index].problem,
                )
                return
            try:
                outcomes[index] = await run_token(rt, token, remaining=remaining)
            except Exception as exc:
                log(
                    "run_failed",
                    level="ERROR",
                    write=rt.write,
                    loop_id=token.loop_id,
                    generation=token.generation,
                    error=type(exc).__name__,
                    detail=str(exc),
                )
                if sequence is None:
                    raise
                failures.append({"itemIdentifier": sequence})
                return
            run = outcomes[index]
            if run is not None and run.action == "put_failed":
                if sequence is None:
                    raise AwsError(
                        "re-trigger put_record failed after every retry", operation="PutRecord"
                    )
                failures.append({"itemIdentifier": sequence})

        if len(records) == 1:
            # BatchSize 1, the design: errors reach Lambda as themselves, not in a group
            await one(0, records[0].sequence, records[0].token)
        else:
            # A larger batch runs its tokens side by side, each with the whole invocation's
            # time, rather than one after another.
            async with anyio.create_task_group() as group:
                for index, record in enumerate(records):
                    group.start_soon(one, index, record.sequence, record.token)
        if failures and len(failures) == len(records):
            # Without ReportBatchItemFailures on the mapping a returned list would be ignored:
            # a batch that failed whole raises, which the mapping retries either way.
            raise AwsError(
                f"{len(failures)} loop token(s) failed to re-trigger; the mapping retries them",
                operation="PutRecord",
            )
        return {
            "batchItemFailures": sorted(failures, key=_sequence_key),
            "runs": [dataclasses.asdict(o) for o in outcomes if o is not None],
            "invalid": invalid,
        }

    async def _watchdog(self) -> dict[str, Any]:
        rt = await self.runtime()
        return dataclasses.asdict(await run_watchdog(rt))

    def close(self) -> None:
        """Close the clients and (if this app made it) the event loop."""
        if self._stack is not None:
            stack, self._stack, self._runtime = self._stack, None, None
            self._runner.run(stack.aclose())
        if self._own_runner:
            self._runner.close()


def _sequence_key(failure: Mapping[str, str]) -> int:
    value = failure["itemIdentifier"]
    return int(value) if value.isdigit() else 0
