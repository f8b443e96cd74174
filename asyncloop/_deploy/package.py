"""Build the Lambda deployment zip: asyncloop and its runtime dependencies, as Lambda runs them.

Dependencies come as wheels for Lambda's platform (``pip install --platform manylinux...
--only-binary=:all: --python-version 3.x --target <dir>``), never from this machine's
site-packages, so a zip built on x86_64 for arm64 holds aarch64 extensions. asyncloop itself is
copied from the source tree it is imported from, without what the function never runs:
packaging and deployment (`asyncloop._deploy`, with the template), the test fakes
(`asyncloop.testing`) and the benchmark. The zip is deterministic: the same inputs give the
same bytes (sorted entries, fixed timestamps and permissions).

boto3 and botocore stay in the zip although the Lambda runtime has its own: aioboto3 pins
aiobotocore, which pins botocore to a narrow range, and the zip's copy comes first on
``sys.path`` (/var/task), so the pinned pair is the one that runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from .._exceptions import AsyncloopError, ConfigError

__all__ = (
    "ARCHITECTURES",
    "DIRECT_UPLOAD_LIMIT",
    "MANIFEST_NAME",
    "PYTHON_VERSIONS",
    "UNZIPPED_LIMIT",
    "PackageError",
    "PackageResult",
    "PackageSpec",
    "build_package",
    "lambda_platforms",
    "pip_command",
    "read_manifest",
    "runtime_requirements",
    "write_zip",
)

Architecture = Literal["x86_64", "arm64"]
ARCHITECTURES: Final = ("x86_64", "arm64")
PYTHON_VERSIONS: Final = ("3.11", "3.12", "3.13")

# Lambda's limits: a zip uploaded in the API call, and a function's code once unzipped
DIRECT_UPLOAD_LIMIT: Final = 50 * 1024 * 1024
UNZIPPED_LIMIT: Final = 250 * 1024 * 1024

# Written at the zip's root so `asyncloop deploy` can set Architecture and Runtime to match
MANIFEST_NAME: Final = "asyncloop-package.json"

# python3.11 runs on Amazon Linux 2 (glibc 2.26), python3.12 and 3.13 on Amazon Linux 2023
# (glibc 2.34): a manylinux_2_X wheel runs there when X is at most that glibc.
_GLIBC: Final = {"3.11": 26, "3.12": 34, "3.13": 34}
_MACHINE: Final = {"x86_64": "x86_64", "arm64": "aarch64"}

# Never shipped: bytecode (Lambda compiles on import; stale .pyc only grow the zip), tests and
# benchmarks, and the console scripts pip writes for this machine's interpreter.
_EXCLUDED_DIRS: Final = frozenset({"__pycache__", "tests", "test", "bench"})
# asyncloop's own subpackages the function never imports: packaging and deployment (this
# subpackage and the template: they run where `asyncloop deploy` runs), the test fakes and the
# benchmark (it runs where `asyncloop bench` runs)
_NOT_IN_FUNCTION: Final = ("_deploy", "testing", "_bench")
_EXCLUDED_TOP: Final = frozenset({"bin"})
_EXCLUDED_SUFFIXES: Final = (".pyc", ".pyo")

# 1980-01-01, the earliest time a zip can store: every entry gets it, so builds are reproducible
_ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)


class PackageError(AsyncloopError):
    """Building the package failed (pip could not resolve a wheel, the output is unwritable)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageSpec:
    """What to build."""

    output: Path
    """Where the zip goes; its directory is created. Overwritten if it exists."""

    architecture: Architecture = "arm64"
    """Lambda's architecture, ``x86_64`` or ``arm64`` (Graviton). Default arm64."""

    python_version: str = "3.12"
    """The Lambda runtime's Python: 3.11, 3.12 or 3.13 (``python3.12`` is accepted).
    Default 3.12."""

    include_dependencies: bool = True
    """Install asyncloop's runtime dependencies into the zip. Default True; False builds a zip of
    asyncloop alone, for a function that gets them from a layer."""

    extra_paths: tuple[Path, ...] = ()
    """Files or directories copied to the zip's root beside asyncloop: your worker's module."""

    find_links: tuple[str, ...] = ()
    """Extra wheel locations for pip (``--find-links``): a local wheelhouse."""

    no_index: bool = False
    """Don't ask PyPI (``--no-index``): every wheel must be in `find_links`. Default False."""

    requirements: tuple[str, ...] | None = None
    """Requirements to install instead of asyncloop's own (`runtime_requirements`). Default None."""

    def __post_init__(self) -> None:
        version = self.python_version.removeprefix("python")
        if version not in PYTHON_VERSIONS:
            raise ConfigError(
                f"python_version must be one of {', '.join(PYTHON_VERSIONS)}, "
                f"got {self.python_version!r}",
                field="python_version",
            )
        object.__setattr__(self, "python_version", version)
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, "
                f"got {self.architecture!r}",
                field="architecture",
            )
        for path in self.extra_paths:
            if not path.exists():
                raise ConfigError(f"extra path {str(path)!r} does not exist", field="extra_paths")
            if path.name in ("asyncloop", MANIFEST_NAME):
                raise ConfigError(
                    f"extra path {str(path)!r} would replace the zip's own {path.name}",
                    field="extra_paths",
                )
        if self.no_index and self.include_dependencies and not self.find_links:
            raise ConfigError("no_index needs find_links (a wheelhouse)", field="no_index")

    @property
    def runtime(self) -> str:
        """The Lambda runtime identifier, ``python3.12``."""
        return f"python{self.python_version}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageResult:
    """What was built."""

    path: Path
    architecture: Architecture
    python_version: str
    size: int
    """Bytes of the zip."""
    unzipped_size: int
    """Bytes of every file once unzipped (Lambda's 250 MB limit applies to this)."""
    files: int
    sha256: str
    largest: tuple[tuple[str, int], ...]
    """The five largest top-level entries (package or module) and their unzipped bytes."""
    warnings: tuple[str, ...] = field(default=())
    """Limits the zip passes: over 50 MB it must go through S3, over 250 MB unzipped it
    cannot be a function's code at all."""

    @property
    def runtime(self) -> str:
        return f"python{self.python_version}"


def lambda_platforms(architecture: str, python_version: str) -> list[str]:
    """pip ``--platform`` tags Lambda's OS accepts, newest first (pip does not expand them)."""
    machine = _MACHINE[architecture]
    glibc = _GLIBC[python_version.removeprefix("python")]
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc, 16, -1)]
    # The legacy alias of 2_17; pip adds manylinux2010/manylinux1 after it for x86_64
    tags.append(f"manylinux2014_{machine}")
    return tags


def _source_root() -> Path:
    """The directory of the asyncloop package being run."""
    return Path(__file__).resolve().parent.parent


def runtime_requirements() -> list[str]:
    """asyncloop's runtime dependencies (no extras): from the installed metadata, or from the
    pyproject.toml beside the source tree when asyncloop runs from a checkout."""
    from importlib import metadata

    try:
        declared = metadata.requires("asyncloop") or []
    except metadata.PackageNotFoundError:
        pyproject = _source_root().parent / "pyproject.toml"
        if not pyproject.is_file():
            raise PackageError(
                "cannot find asyncloop's dependencies: it is neither installed nor run from "
                "its source tree (pyproject.toml)"
            ) from None
        with pyproject.open("rb") as f:
            declared = list(tomllib.load(f)["project"]["dependencies"])
    # Requirements behind an extra (`; extra == "plot"`) are optional: not for Lambda
    return [req for req in declared if not re.search(r"\bextra\s*==", req)]


def pip_command(spec: PackageSpec, target: Path, requirements: Sequence[str]) -> list[str]:
    """The pip invocation that installs `requirements` for Lambda's platform into `target`."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(target),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        spec.python_version,
        "--no-compile",
        "--no-warn-script-location",
        "--disable-pip-version-check",
        "--quiet",
    ]
    for platform in lambda_platforms(spec.architecture, spec.python_version):
        command += ["--platform", platform]
    for location in spec.find_links:
        command += ["--find-links", location]
    if spec.no_index:
        command.append("--no-index")
    return [*command, *requirements]


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _skip(relative: Path) -> bool:
    parts = relative.parts
    if parts and parts[0] in _EXCLUDED_TOP:
        return True
    if any(part in _EXCLUDED_DIRS for part in parts[:-1]):
        return True
    return relative.name.endswith(_EXCLUDED_SUFFIXES)


def _copy_tree(source: Path, destination: Path, *, leave_out: Sequence[str] = ()) -> None:
    """Copy `source` (a file or a tree, exclusions applied) to `destination`; `leave_out` names
    entries of `source`'s top level not to copy."""
    if source.is_dir():
        skip = shutil.ignore_patterns(*_EXCLUDED_DIRS, "*.pyc", "*.pyo")

        def ignore(directory: str, names: list[str]) -> set[str]:
            ignored = set(skip(directory, names))
            if Path(directory) == source:
                ignored.update(name for name in names if name in leave_out)
            return ignored

        shutil.copytree(source, destination, ignore=ignore, dirs_exist_ok=True)
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def _entries(root: Path) -> Iterable[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        # Sorted in place: os.walk's order depends on the filesystem
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            relative = path.relative_to(root)
            if not _skip(relative):
                yield relative.as_posix(), path


def write_zip(root: Path, output: Path) -> tuple[int, int, int]:
    """Zip every file under `root` (exclusions applied) into `output`, deterministically.

    Entries are sorted, dated 1980-01-01 and marked 0644 (0755 when executable), so equal trees
    give equal bytes. Returns (zip bytes, unzipped bytes, file count).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    unzipped = 0
    count = 0
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for arcname, path in sorted(_entries(root)):
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            # Unix permissions: Lambda's runtime user must be able to read every file
            info.create_system = 3
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            data = path.read_bytes()
            zf.writestr(info, data, compresslevel=9)
            unzipped += len(data)
            count += 1
    partial.replace(output)
    return output.stat().st_size, unzipped, count


def _largest(root: Path) -> tuple[tuple[str, int], ...]:
    sizes: dict[str, int] = {}
    for arcname, path in _entries(root):
        top = arcname.split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + path.stat().st_size
    ranked = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    return tuple(ranked[:5])


def _limit_warnings(size: int, unzipped: int) -> tuple[str, ...]:
    mib = 1024 * 1024
    found = []
    if size > DIRECT_UPLOAD_LIMIT:
        found.append(
            f"the zip is {size / mib:.1f} MiB, over Lambda's 50 MiB direct-upload limit: "
            "deploy it through S3 (asyncloop deploy does)"
        )
    if unzipped > UNZIPPED_LIMIT:
        found.append(
            f"the zip unpacks to {unzipped / mib:.1f} MiB, over Lambda's 250 MiB limit for a "
            "function's code and layers: move dependencies to a container image"
        )
    return tuple(found)


def build_package(spec: PackageSpec, *, run: Runner = _run) -> PackageResult:
    """Build the zip `spec` describes; raises `PackageError` when pip fails.

    `run` executes the pip command (a seam for tests); it gets the argument list and returns
    the completed process.
    """
    with tempfile.TemporaryDirectory(prefix="asyncloop-package-") as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        if spec.include_dependencies:
            requirements = (
                list(spec.requirements) if spec.requirements is not None else runtime_requirements()
            )
            if requirements:
                command = pip_command(spec, root, requirements)
                done = run(command)
                if done.returncode != 0:
                    detail = (done.stderr or done.stdout or "").strip().splitlines()
                    tail = " | ".join(detail[-5:]) if detail else f"exit {done.returncode}"
                    raise PackageError(
                        f"pip could not install {', '.join(requirements)} for "
                        f"{spec.runtime} on {spec.architecture}: {tail}"
                    )
        # The source tree wins over any asyncloop a requirement might have pulled in
        shutil.rmtree(root / "asyncloop", ignore_errors=True)
        _copy_tree(_source_root(), root / "asyncloop", leave_out=_NOT_IN_FUNCTION)
        for extra in spec.extra_paths:
            _copy_tree(extra, root / extra.name)
        manifest = {"architecture": spec.architecture, "runtime": spec.runtime}
        (root / MANIFEST_NAME).write_text(json.dumps(manifest, sort_keys=True) + "\n")
        largest = _largest(root)
        try:
            size, unzipped, files = write_zip(root, spec.output)
        except OSError as exc:
            raise PackageError(f"cannot write {spec.output}: {exc}") from exc
    digest = hashlib.sha256(spec.output.read_bytes()).hexdigest()
    return PackageResult(
        path=spec.output,
        architecture=spec.architecture,
        python_version=spec.python_version,
        size=size,
        unzipped_size=unzipped,
        files=files,
        sha256=digest,
        largest=largest,
        warnings=_limit_warnings(size, unzipped),
    )


def read_manifest(zip_path: Path) -> dict[str, str] | None:
    """The architecture and runtime a zip from `build_package` was built for, or None."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            raw = zf.read(MANIFEST_NAME)
    except KeyError:
        return None
    except (OSError, zipfile.BadZipFile) as exc:
        raise PackageError(f"{zip_path} is not a readable zip: {exc}") from exc
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): str(v) for k, v in data.items()}
