"""`asyncloop.testing.npm_install`: one install into a shared cache, under a lock, with clear
errors; npm and node are stand-in scripts on PATH, so nothing is downloaded."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from asyncloop.testing import npm_install


class NpmFailed(Exception):
    pass


def _stand_ins(tmp_path: Path, npm_body: str) -> Path:
    """A bin directory with `node` (does nothing) and `npm` (runs `npm_body` in sh)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("node", "exit 0"), ("npm", npm_body)):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n", encoding="ascii")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


@pytest.mark.skipif(os.name != "posix", reason="stand-in scripts need a POSIX shell")
def test_it_runs_npm_once_with_prepare_and_finish_around_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an npm that records its arguments and the directory it ran in
    bin_dir = _stand_ins(tmp_path, 'echo "$PWD $*" >> "$NPM_LOG"')
    monkeypatch.setenv("PATH", str(bin_dir))
    log = tmp_path / "npm.log"
    monkeypatch.setenv("NPM_LOG", str(log))
    root = tmp_path / "cache"
    order: list[str] = []

    def installed() -> bool:
        return (root / "stamp").exists()

    def finish() -> None:
        order.append("finish")
        (root / "stamp").write_text("done", encoding="ascii")

    def install() -> bool:
        return npm_install(
            root,
            ["ci", "--ignore-scripts"],
            installed=installed,
            error=NpmFailed,
            missing="no npm",
            prepare=lambda: order.append("prepare"),
            finish=finish,
        )

    # WHEN it is asked twice
    first, second = install(), install()
    # THEN npm ran once, in the cache, between prepare and finish; the second call found it done
    assert (first, second) == (True, False)
    assert log.read_text(encoding="ascii").splitlines() == [f"{root} ci --ignore-scripts"]
    assert order == ["prepare", "finish"]
    assert (root / ".install.lock").exists()


@pytest.mark.skipif(os.name != "posix", reason="stand-in scripts need a POSIX shell")
def test_a_failing_npm_raises_the_callers_error_with_its_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an npm that fails with a message
    monkeypatch.setenv("PATH", str(_stand_ins(tmp_path, "echo 'E404 not found' >&2; exit 3")))
    finished: list[bool] = []
    # WHEN the install runs THEN the error names the command, the exit code and npm's stderr
    with pytest.raises(NpmFailed, match=r"`\S*npm install x` in .* exited with 3:\nE404 not found"):
        npm_install(
            tmp_path / "cache",
            ["install", "x"],
            installed=lambda: False,
            error=NpmFailed,
            missing="no npm",
            finish=lambda: finished.append(True),
        )
    # AND nothing was marked as installed
    assert finished == []


def test_without_npm_it_raises_the_missing_message_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a PATH without npm or node
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    # WHEN an install is needed THEN the caller's message says what is missing
    with pytest.raises(NpmFailed, match=r"^install Node 20$"):
        npm_install(
            tmp_path / "cache",
            ["ci"],
            installed=lambda: False,
            error=NpmFailed,
            missing="install Node 20",
        )
    assert not (tmp_path / "cache").exists()


def test_an_installed_cache_needs_no_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no npm at all, but a cache that is already installed
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    # WHEN the install is asked for THEN it does nothing and says so
    assert not npm_install(
        tmp_path, ["ci"], installed=lambda: True, error=NpmFailed, missing="no npm"
    )
