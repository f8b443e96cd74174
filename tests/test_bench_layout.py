"""Where the benchmark lives: `asyncloop._bench`, reached only through ``asyncloop bench``.

- The benchmark imports only public names of `asyncloop` and `asyncloop.testing` (what a user
  can import too), so it measures the library as shipped, not its internals.
- The library never imports the benchmark: only ``asyncloop/_cli_bench.py`` does, lazily.
- The results record the checkout's commit, from a clone or a ``git worktree`` alike.
- The wheel holds one top-level package, `asyncloop`, with the benchmark's data files, and
  ``asyncloop bench`` runs from it alone.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from asyncloop._bench._provenance import git_state

PACKAGE = Path(__file__).resolve().parents[1] / "asyncloop"
BENCH = PACKAGE / "_bench"
PUBLIC = ("asyncloop", "asyncloop.testing")


def _absolute_imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every absolute import in `path`."""
    found: list[tuple[str, list[str], int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
    return found


def test_bench_imports_only_public_names() -> None:
    # GIVEN every module of the benchmark
    sources = sorted(BENCH.rglob("*.py"))
    assert len(sources) > 5
    # WHEN their imports from asyncloop are collected
    private = []
    for path in sources:
        for module, names, line in _absolute_imports(path):
            if module.split(".")[0] != "asyncloop" or module.startswith("asyncloop._bench"):
                continue
            where = f"{path.name}:{line}"
            if module not in PUBLIC or not names:
                private.append(f"{where} {module}")
                continue
            exported = importlib.import_module(module).__all__
            private.extend(f"{where} {module}.{n}" for n in names if n not in exported)
    # THEN each is a name in asyncloop's or asyncloop.testing's __all__
    assert private == []


def test_the_library_does_not_import_the_bench() -> None:
    # GIVEN every library module but the benchmark and the command that runs it
    sources = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if BENCH not in path.parents and path.name != "_cli_bench.py"
    ]
    # WHEN their imports are collected (relative ones included)
    offenders = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules: list[str] = []
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            parts = {part for module in modules for part in module.split(".")}
            if parts & {"_bench", "bench"}:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    # THEN none names the benchmark
    assert offenders == []


def test_building_the_cli_loads_no_bench_module() -> None:
    # GIVEN a fresh interpreter WHEN it imports the public modules and builds the CLI's parser
    code = (
        "import sys, asyncloop, asyncloop.testing, asyncloop.lambda_handler, asyncloop._cli; "
        "asyncloop._cli.build_parser(); "
        "print(','.join(m for m in sys.modules if m.startswith('asyncloop._bench') "
        "or m.split('.')[0] == 'bench'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    # THEN the benchmark is not loaded: only running `asyncloop bench` imports it
    assert loaded == ""


def _git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_state_reads_a_worktree(tmp_path: Path) -> None:
    # GIVEN a repository with one commit, and a `git worktree` of it (whose .git is a file)
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "asyncloop").mkdir()
    (repo / "asyncloop" / "x.py").write_text("x = 1\n")
    _git(repo, "add", "asyncloop")
    _git(repo, "commit", "-q", "-m", "one")
    worktree = tmp_path / "wt"
    _git(repo, "worktree", "add", "-q", str(worktree))
    assert (worktree / ".git").is_file()
    head = _git(worktree, "rev-parse", "--short", "HEAD")
    # WHEN the bench reads the checkout's state there, clean and then with an edit
    clean = git_state(str(worktree))
    (worktree / "asyncloop" / "x.py").write_text("x = 2\n")
    dirty = git_state(str(worktree))
    # THEN it names the commit, and marks the edit
    assert (clean, dirty) == (head, f"{head}+dirty")


def test_git_state_is_none_outside_a_checkout(tmp_path: Path) -> None:
    # GIVEN a directory with no .git beside the package (an installed wheel's site-packages)
    # WHEN the bench reads its state THEN there is none
    assert git_state(str(tmp_path)) is None


# -- the wheel -------------------------------------------------------------------------------

ROOT = PACKAGE.parent
# Run inside the unpacked wheel: the bench from its own files, its results checked against the
# schema the wheel carries, and nothing imported from a `bench` package or from this checkout.
_RUN_FROM_WHEEL = """
import json, sys
from pathlib import Path
from asyncloop._cli import main
unpacked, out = sys.argv[1], sys.argv[2]
code = main(["bench", "--target", "fake", "--profile", "zero", "--messages", "200",
             "--receivers", "1", "--max-in-flight", "8", "--repeats", "1",
             "--baselines", "none", "--out", out])
from asyncloop._bench._report import SCHEMA_PATH, validate
validate(json.loads((Path(out) / "results.json").read_text()))
outside = sorted(
    name for name, module in sys.modules.items()
    if name.split(".")[0] == "bench"
    or name.split(".")[0] == "asyncloop"
    and not getattr(module, "__file__", unpacked).startswith(unpacked)
)
print(json.dumps({"code": code, "outside": outside, "schema": str(SCHEMA_PATH)}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from this checkout by pip and hatchling (no network)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    (built,) = out.glob("asyncloop-*.whl")
    return built


def test_the_wheel_ships_only_asyncloop_with_the_bench_data(wheel: Path) -> None:
    # GIVEN the built wheel WHEN its entries are listed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    top = {name.split("/")[0] for name in names}
    bench_source = {
        path.relative_to(ROOT).as_posix()
        for path in BENCH.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    # THEN the only top-level package is asyncloop (no `bench`), beside its dist-info
    assert {name for name in top if not name.endswith(".dist-info")} == {"asyncloop"}
    # THEN every file of the benchmark is inside, its data files included
    assert {
        "asyncloop/_bench/results.schema.json",
        "asyncloop/_bench/node/package.json",
        "asyncloop/_bench/node/package-lock.json",
        "asyncloop/_bench/node/consumer.mjs",
    } <= bench_source
    assert bench_source - names == set()


def test_asyncloop_bench_runs_from_the_unpacked_wheel(wheel: Path, tmp_path: Path) -> None:
    # GIVEN the wheel unpacked outside the repository, first on the path
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    # WHEN `asyncloop bench` runs there from another directory
    completed = subprocess.run(
        [sys.executable, "-c", _RUN_FROM_WHEEL, str(unpacked), str(tmp_path / "out")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        capture_output=True,
        text=True,
        check=True,
    )
    # THEN it succeeds on the wheel's own files: its schema, no `bench`, no checkout module
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {
        "code": 0,
        "outside": [],
        "schema": str(unpacked / "asyncloop" / "_bench" / "results.schema.json"),
    }
