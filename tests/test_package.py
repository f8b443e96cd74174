"""`asyncloop package`: platform tags, the pip command, the deterministic zip, a real build.

The real build downloads wheels from PyPI for arm64 (pip's cache makes repeats fast) and checks
the zip holds the handler, aioboto3 and aarch64 extension modules, and no tests or bytecode.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Literal

import pytest

from asyncloop._cli import main
from asyncloop._deploy.package import (
    MANIFEST_NAME,
    PackageError,
    PackageSpec,
    build_package,
    lambda_platforms,
    pip_command,
    read_manifest,
    runtime_requirements,
    write_zip,
)
from asyncloop._exceptions import ConfigError

# --------------------------------------------------------------------------- platforms and pip


def test_platform_tags_follow_the_runtime_glibc() -> None:
    # python3.11 runs on Amazon Linux 2 (glibc 2.26), 3.12+ on Amazon Linux 2023 (glibc 2.34)
    al2 = lambda_platforms("x86_64", "3.11")
    assert al2[0] == "manylinux_2_26_x86_64"
    assert "manylinux_2_28_x86_64" not in al2
    assert al2[-1] == "manylinux2014_x86_64"
    al2023 = lambda_platforms("arm64", "python3.13")
    assert al2023[0] == "manylinux_2_34_aarch64"
    assert "manylinux_2_17_aarch64" in al2023
    assert all(tag.endswith("_aarch64") for tag in al2023)


def test_pip_command_targets_lambda_not_this_machine(tmp_path: Path) -> None:
    spec = PackageSpec(output=tmp_path / "x.zip", architecture="arm64", python_version="3.13")
    command = pip_command(spec, tmp_path / "t", ["aioboto3>=13"])
    assert command[1:4] == ["-m", "pip", "install"]
    assert "--only-binary=:all:" in command
    assert command[command.index("--python-version") + 1] == "3.13"
    assert command[command.index("--target") + 1] == str(tmp_path / "t")
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms == lambda_platforms("arm64", "3.13")
    assert command[-1] == "aioboto3>=13"


def test_runtime_requirements_are_the_projects_without_extras() -> None:
    names = {req.split(">")[0].split("=")[0].strip() for req in runtime_requirements()}
    assert {"aioboto3", "anyio"} <= names
    assert "matplotlib" not in names


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"architecture": "sparc"}, "architecture"),
        ({"python_version": "3.10"}, "python_version"),
        ({"extra_paths": (Path("/no/such/worker.py"),)}, "extra_paths"),
        ({"no_index": True}, "no_index"),
    ],
)
def test_spec_rejects_bad_values(tmp_path: Path, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PackageSpec(output=tmp_path / "x.zip", **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


# --------------------------------------------------------------------------- the zip


def _tree(root: Path) -> None:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("x = 1\n")
    (root / "pkg" / "__pycache__" / "__init__.cpython-312.pyc").write_bytes(b"\0stale")
    (root / "pkg" / "tests").mkdir()
    (root / "pkg" / "tests" / "test_x.py").write_text("def test(): pass\n")
    (root / "pkg" / "tool.sh").write_text("#!/bin/sh\n")
    (root / "pkg" / "tool.sh").chmod(0o755)
    (root / "bin").mkdir()
    (root / "bin" / "jp.py").write_text("#!/usr/bin/python\n")
    (root / "mod.py").write_text("y = 2\n")


def test_zip_is_deterministic_and_excludes_tests_bytecode_and_scripts(tmp_path: Path) -> None:
    # GIVEN a tree with bytecode, tests and console scripts
    root = tmp_path / "root"
    _tree(root)
    # WHEN it is zipped twice, with the files touched in between
    first = tmp_path / "a.zip"
    write_zip(root, first)
    for path in root.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = tmp_path / "b.zip"
    size, unzipped, files = write_zip(root, second)
    # THEN the bytes are equal and only the code is in
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(second) as zf:
        names = zf.namelist()
        infos = {i.filename: i for i in zf.infolist()}
    assert names == ["mod.py", "pkg/__init__.py", "pkg/tool.sh"]
    assert (files, unzipped) == (3, len("x = 1\n") + len("#!/bin/sh\n") + len("y = 2\n"))
    assert size == second.stat().st_size
    assert infos["pkg/tool.sh"].external_attr >> 16 == 0o100755
    assert infos["mod.py"].external_attr >> 16 == 0o100644
    assert infos["mod.py"].date_time == (1980, 1, 1, 0, 0, 0)


def _fake_pip(fail: bool = False):  # type: ignore[no-untyped-def]
    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        if fail:
            return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution")
        target = Path(command[command.index("--target") + 1])
        (target / "aioboto3").mkdir(parents=True)
        (target / "aioboto3" / "__init__.py").write_text("")
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def test_build_with_a_fake_pip_adds_asyncloop_and_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "fn.zip"
    worker = tmp_path / "my_worker.py"
    worker.write_text("def handler(event, context): return None\n")
    spec = PackageSpec(output=out, architecture="x86_64", extra_paths=(worker,))
    result = build_package(spec, run=_fake_pip())
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
    assert {"aioboto3/__init__.py", "asyncloop/lambda_handler.py", "my_worker.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert read_manifest(out) == {"architecture": "x86_64", "runtime": "python3.12"}
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert result.warnings == ()


def test_the_zip_holds_what_the_function_runs_and_not_packaging_fakes_or_benchmark(
    tmp_path: Path,
) -> None:
    # GIVEN a zip built with a fake pip (asyncloop's own files are what is under test)
    out = tmp_path / "fn.zip"
    build_package(PackageSpec(output=out, architecture="x86_64"), run=_fake_pip())
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "task")
    # THEN the handlers, the Kinesis loop, the consumer and the AWS boundary are in it...
    assert {
        "asyncloop/__init__.py",
        "asyncloop/lambda_handler.py",
        "asyncloop/_handlers.py",
        "asyncloop/_loop/app.py",
        "asyncloop/_loop/lease.py",
        "asyncloop/_consumer.py",
        "asyncloop/_aws.py",
    } <= names
    # ... and packaging and deployment, the test fakes and the benchmark are not
    assert not [n for n in names if n.startswith(("asyncloop/_deploy/", "asyncloop/testing/"))]
    assert not [n for n in names if "bench/" in n]
    # WHEN the entry points and the loop's wiring are imported from the unpacked zip
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import asyncloop.lambda_handler, asyncloop._loop.app, asyncloop._loop.settings;"
        "print(asyncloop.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "task")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    # THEN they import, from the zip, without what was left out
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(tmp_path / "task"))


def test_a_failing_pip_raises_with_its_message(tmp_path: Path) -> None:
    spec = PackageSpec(output=tmp_path / "fn.zip")
    with pytest.raises(PackageError, match="No matching distribution"):
        build_package(spec, run=_fake_pip(fail=True))
    assert not (tmp_path / "fn.zip").exists()


def test_a_real_pip_failure_is_reported(tmp_path: Path) -> None:
    # GIVEN an empty wheelhouse and no index: pip cannot find anything (no network needed)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    spec = PackageSpec(
        output=tmp_path / "fn.zip", find_links=(str(wheels),), no_index=True,
        requirements=("aioboto3>=13",),
    )  # fmt: skip
    with pytest.raises(PackageError, match="pip could not install aioboto3"):
        build_package(spec)


def test_real_build_for_arm64(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the CLI / WHEN it builds for arm64 and Python 3.12 from PyPI's wheels
    out = tmp_path / "asyncloop-arm64.zip"
    code = main(
        ["package", "--architecture", "arm64", "--python", "3.12", "-o", str(out), "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    # THEN it holds the handler, aioboto3 with its pinned botocore, aarch64 extensions...
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        unzipped = sum(i.file_size for i in zf.infolist())
    assert "asyncloop/lambda_handler.py" in names
    assert "aioboto3/__init__.py" in names
    assert "botocore/__init__.py" in names
    assert "aiobotocore/__init__.py" in names
    extensions = [n for n in names if n.endswith(".so")]
    assert extensions
    assert all("aarch64" in n and "cpython-312" in n for n in extensions), extensions
    # ... and no tests, bytecode or console scripts
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith("bin/") for n in names)
    # The report's sizes are the zip's
    assert report["size"] == out.stat().st_size
    assert report["unzipped_size"] == unzipped
    assert report["size"] < 50 * 1024 * 1024
    assert MANIFEST_NAME in names


def test_cli_bad_arguments_exit_2_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["package", "--add", str(tmp_path / "missing.py"), "-o", str(tmp_path / "x.zip")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("asyncloop: error: extra path")


def test_cli_pip_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    code = main(
        ["package", "--find-links", str(wheels), "--no-index", "-o", str(tmp_path / "x.zip")]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith("asyncloop: error: pip could not install")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="Lambda's machines")
def test_zip_for_this_machine_imports_in_a_bare_interpreter(tmp_path: Path) -> None:
    # GIVEN a zip built for this machine and this Python, unpacked as Lambda does (/var/task)
    arch: Literal["x86_64", "arm64"] = "x86_64" if platform.machine() == "x86_64" else "arm64"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    out = tmp_path / "fn.zip"
    build_package(PackageSpec(output=out, architecture=arch, python_version=version))
    task = tmp_path / "task"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(task)
    # WHEN an interpreter without site-packages imports the handlers and the SDK from it
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import asyncloop.lambda_handler as h, aioboto3, aiobotocore, botocore.session;"
        "assert all(callable(getattr(h, n)) for n in h.__all__);"
        "botocore.session.get_session().get_service_model('sqs');"
        "print(aioboto3.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(task)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    # THEN everything comes from the zip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(task))
