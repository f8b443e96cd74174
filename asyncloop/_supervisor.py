"""The supervisor of `asyncloop run --processes N`: runs the children until all have exited.

`supervise` starts one child per argv (`asyncloop._processes.child_argv`) in its own session,
forwards SIGINT and SIGTERM to them as SIGTERM (drain, then abort), copies their stderr with a
``[p<i>] `` prefix, reads each child's statistics from its last stdout line and stops the
others when one fails. The whole contract is in `asyncloop._processes`'s docstring.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO

import anyio
from anyio.abc import ByteReceiveStream, Process, TaskStatus

from ._processes import _EXIT_OK, STATE_KEY, ChildResult, _failed
from ._stats import Stats

__all__ = ("supervise",)

logger = logging.getLogger("asyncloop")

# A line longer than this is forwarded in pieces, so a child cannot grow the parent's buffer.
_MAX_LINE = 64 * 1024


def _read_state(stdout: bytes, index: int, stderr: IO[str]) -> Stats | None:
    """A child's statistics from the last line of its stdout; earlier lines (a handler's
    prints) go to `stderr`, prefixed, so the parent's stdout stays one JSON object."""
    lines = stdout.decode(errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    last = lines.pop() if lines else ""
    for line in lines:
        stderr.write(f"[p{index}] {line}\n")
    try:
        return Stats.from_state(json.loads(last)[STATE_KEY])
    except (ValueError, KeyError, TypeError):
        if last:
            stderr.write(f"[p{index}] {last}\n")
        return None


# Drain (1), then abort (2): how far each child has been told to stop.
_DRAIN = 1
_ABORT = 2


class _Supervisor:
    """Runs the children in one task group, forwards signals, collects results."""

    def __init__(
        self, argvs: Sequence[Sequence[str]], env: Mapping[str, str] | None, stderr: IO[str]
    ) -> None:
        self._argvs = argvs
        self._env = env
        self._stderr = stderr
        self._running: dict[int, Process] = {}
        # The stop level each child was sent, and the level the run is at now.
        self._sent: dict[int, int] = {}
        self._level = 0
        self._results: list[ChildResult | None] = [None] * len(argvs)

    async def run(self) -> list[ChildResult]:
        async with anyio.create_task_group() as outer:
            # The handlers are in place before the first child starts: no signal is missed.
            await outer.start(self._watch_signals)
            async with anyio.create_task_group() as children:
                for index, argv in enumerate(self._argvs):
                    children.start_soon(self._child, index, argv)
            outer.cancel_scope.cancel()
        return [result for result in self._results if result is not None]

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            count = 0
            async for signum in signals:
                count += 1
                name = signal.Signals(signum).name
                if count == 1:
                    logger.info(
                        "%s: stopping %d processes (each finishes its in-flight work; again "
                        "to abort)",
                        name,
                        len(self._argvs),
                    )
                    self._stop(_DRAIN)
                else:
                    logger.warning("%s again: aborting every process's in-flight work", name)
                    self._stop(_ABORT)

    def _stop(self, level: int) -> None:
        """Bring every running child up to stop `level` (and the ones that start later).

        Children always get SIGTERM, whichever signal we got (a child treats SIGINT and
        SIGTERM alike), so one that had no handler yet dies of it (`stopped_idle`) instead
        of raising KeyboardInterrupt somewhere in its start."""
        self._level = max(self._level, level)
        for index in list(self._running):
            self._catch_up(index)

    def _catch_up(self, index: int) -> None:
        process = self._running.get(index)
        if process is None:
            return
        while self._sent.get(index, 0) < self._level:
            self._sent[index] = self._sent.get(index, 0) + 1
            try:
                process.send_signal(signal.SIGTERM)
            except ProcessLookupError:  # it has just exited; its result tells how
                return

    async def _child(self, index: int, argv: Sequence[str]) -> None:
        stdout = bytearray()
        # Its own session: a terminal's Ctrl-C reaches the child once, forwarded by us.
        async with await anyio.open_process(
            list(argv),
            stdin=subprocess.DEVNULL,
            env=dict(self._env) if self._env is not None else None,
            start_new_session=True,
        ) as process:
            self._running[index] = process
            self._catch_up(index)
            try:
                assert process.stdout is not None
                assert process.stderr is not None
                async with anyio.create_task_group() as streams:
                    streams.start_soon(self._forward, index, process.stderr)
                    streams.start_soon(_collect, process.stdout, stdout)
                    code = await process.wait()
            finally:
                del self._running[index]
        stats = _read_state(bytes(stdout), index, self._stderr)
        idle = code == -signal.SIGTERM and self._sent.get(index, 0) > 0 and stats is None
        result = ChildResult(index=index, exit_code=code, stats=stats, stopped_idle=idle)
        self._results[index] = result
        if idle:
            logger.info("process p%d stopped before it consumed anything", index)
        elif _failed(result):
            if self._level < _DRAIN and len(self._argvs) > 1:
                logger.error(
                    "process p%d %s: stopping the others (each finishes its in-flight work)",
                    index,
                    _how_it_ended(code, stats),
                )
            else:
                logger.error("process p%d %s", index, _how_it_ended(code, stats))
            self._stop(_DRAIN)

    async def _forward(self, index: int, stream: ByteReceiveStream) -> None:
        """Copy `stream` to our stderr line by line, each line prefixed ``[p<index>] ``."""
        prefix = f"[p{index}] "
        pending = b""
        async for chunk in stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > _MAX_LINE:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._stderr.write(prefix + line.decode(errors="replace") + "\n")
            self._stderr.flush()
        if pending:
            self._stderr.write(prefix + pending.decode(errors="replace") + "\n")
            self._stderr.flush()


def _how_it_ended(code: int, stats: Stats | None) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    if code != _EXIT_OK:
        return f"exited with code {code}"
    return "exited 0 without printing its statistics"


async def _collect(stream: ByteReceiveStream, into: bytearray) -> None:
    async for chunk in stream:
        into += chunk


async def supervise(
    argvs: Sequence[Sequence[str]],
    *,
    env: Mapping[str, str] | None = None,
    stderr: IO[str] | None = None,
) -> list[ChildResult]:
    """Run one child per argv (see `child_argv`) until all have exited, forwarding SIGINT and
    SIGTERM to them and their stderr, prefixed, to `stderr` (default sys.stderr); return
    each child's result, by index. Must run in the main thread (it handles signals). If this
    is cancelled, the children still running are killed."""
    return await _Supervisor(argvs, env, stderr or sys.stderr).run()
