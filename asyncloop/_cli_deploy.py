"""The `asyncloop package` and `asyncloop deploy` commands (registered by `asyncloop._cli`).

Each handler takes the parsed arguments and returns the exit code: 0 done, 1 failed (AWS,
pip, the stack), 2 bad arguments, each failure reported as one ``asyncloop: error:`` line.
`deploy` talks to AWS itself only when asked in so many words: ``--allow-aws``, ``--region``
and credentials named by AWS_PROFILE or AWS_ACCESS_KEY_ID. Without ``--endpoint-url`` and
those, it refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._deploy.package import ARCHITECTURES, PYTHON_VERSIONS, PackageResult, PackageSpec
from ._exceptions import AsyncloopError, ConfigError

if TYPE_CHECKING:
    from ._deploy.deploy import DeployResult

__all__ = ("register",)

_PROG = "asyncloop"


def _error(message: str, code: int, stream: TextIO | None = None) -> int:
    print(f"{_PROG}: error: {message}", file=stream or sys.stderr)
    return code


def _add_build_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("building the zip")
    group.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default="arm64",
        help="Lambda architecture (default: arm64)",
    )
    group.add_argument(
        "--python",
        dest="python_version",
        choices=[*PYTHON_VERSIONS, *(f"python{v}" for v in PYTHON_VERSIONS)],
        default="3.12",
        help="Lambda Python runtime (default: 3.12)",
    )
    group.add_argument(
        "--no-deps",
        dest="include_dependencies",
        action="store_false",
        help="asyncloop alone, without its dependencies (for a function with a layer)",
    )
    group.add_argument(
        "--add",
        dest="extra_paths",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="a file or directory to put at the zip's root (your worker); repeatable",
    )
    group.add_argument(
        "--find-links",
        action="append",
        default=[],
        metavar="DIR_OR_URL",
        help="extra wheel location for pip; repeatable",
    )
    group.add_argument(
        "--no-index", action="store_true", help="don't ask PyPI: wheels from --find-links only"
    )


def _package_spec(args: argparse.Namespace, output: Path) -> PackageSpec:
    return PackageSpec(
        output=output,
        architecture=args.architecture,
        python_version=args.python_version,
        include_dependencies=args.include_dependencies,
        extra_paths=tuple(args.extra_paths),
        find_links=tuple(args.find_links),
        no_index=args.no_index,
    )


def _describe_package(result: PackageResult) -> list[str]:
    mib = 1024 * 1024
    lines = [
        f"built {result.path} for {result.runtime} on {result.architecture}: "
        f"{result.size / mib:.1f} MiB zipped, {result.unzipped_size / mib:.1f} MiB unzipped, "
        f"{result.files} files",
        f"sha256 {result.sha256}",
        "largest: " + ", ".join(f"{name} {size / mib:.1f} MiB" for name, size in result.largest),
    ]
    return lines


def _build(args: argparse.Namespace, output: Path) -> PackageResult | int:
    from ._deploy.package import PackageError, build_package

    try:
        spec = _package_spec(args, output)
    except ConfigError as exc:
        return _error(str(exc), 2)
    try:
        result = build_package(spec)
    except PackageError as exc:
        return _error(str(exc), 1)
    for warning in result.warnings:
        print(f"{_PROG}: warning: {warning}", file=sys.stderr)
    return result


def _cmd_package(args: argparse.Namespace) -> int:
    output: Path = args.output or Path(
        "dist", f"asyncloop-lambda-{args.architecture}-python{args.python_version[-4:]}.zip"
    )
    if output.exists() and output.is_dir():
        return _error(f"--output {output} is a directory", 2)
    result = _build(args, output)
    if isinstance(result, int):
        return result
    if args.json:
        doc = {
            "path": str(result.path),
            "architecture": result.architecture,
            "runtime": result.runtime,
            "size": result.size,
            "unzipped_size": result.unzipped_size,
            "files": result.files,
            "sha256": result.sha256,
            "warnings": list(result.warnings),
        }
        print(json.dumps(doc, indent=2))
    else:
        print("\n".join(_describe_package(result)))
    return 0


def _parse_parameters(pairs: Sequence[str]) -> dict[str, str] | str:
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            return f"--parameter must be Name=Value, got {pair!r}"
        params[name] = value
    return params


def _aws_guard(args: argparse.Namespace) -> str | None:
    """Why deploying to AWS is refused, or None: AWS only when asked in so many words."""
    if args.endpoint_url is not None:
        return None
    if not args.allow_aws:
        return "deploy targets AWS only with --allow-aws (or pass --endpoint-url for an emulator)"
    if not args.region:
        return "deploying to AWS needs --region"
    if not (os.environ.get("AWS_PROFILE") or os.environ.get("AWS_ACCESS_KEY_ID")):
        return "deploying to AWS needs explicit credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID"
    return None


def _emulator_credentials() -> None:
    # Emulators accept any signature; without credentials botocore would refuse to sign at all
    if not (os.environ.get("AWS_PROFILE") or os.environ.get("AWS_ACCESS_KEY_ID")):
        os.environ["AWS_ACCESS_KEY_ID"] = "testing"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"


def _cmd_deploy(args: argparse.Namespace) -> int:
    import anyio

    from ._config import AwsConfig
    from ._deploy.deploy import DeployError, deploy
    from ._deploy.spec import DeploySpec, lambda_handler_name

    refused = _aws_guard(args)
    if refused is not None:
        return _error(refused, 2)
    params = _parse_parameters(args.parameter)
    if isinstance(params, str):
        return _error(params, 2)
    if args.endpoint_url is not None:
        # moto's CloudFormation lacks some resource types: leave them out unless told otherwise
        params.setdefault("MotoCompatible", "true")
    try:
        # Either form, checked before a zip is built: Lambda takes module.function
        if args.worker_handler is not None:
            params["WorkerHandler"] = args.worker_handler
        if "WorkerHandler" in params:
            flag = "--worker-handler" if args.worker_handler else "--parameter WorkerHandler"
            params["WorkerHandler"] = lambda_handler_name(params["WorkerHandler"], field=flag)
    except ConfigError as exc:
        return _error(str(exc), 2)
    if args.zip is not None:
        if not args.zip.is_file():
            return _error(f"--zip {args.zip} is not a file", 2)
        zip_path: Path = args.zip
    else:
        built = _build(args, args.output or Path("dist", "asyncloop-lambda.zip"))
        if isinstance(built, int):
            return built
        # With --json, stdout carries only the JSON document
        print("\n".join(_describe_package(built)), file=sys.stderr if args.json else sys.stdout)
        zip_path = built.path
    try:
        aws = AwsConfig(region=args.region, endpoint_url=args.endpoint_url)
        spec = DeploySpec(
            zip_path=zip_path,
            stack_name=args.stack_name,
            bucket=args.bucket,
            create_bucket=args.create_bucket,
            parameters=params,
            poll_interval=args.poll_interval,
            timeout=args.timeout,
        )
    except ConfigError as exc:
        return _error(str(exc), 2)
    if args.endpoint_url is not None:
        _emulator_credentials()
    try:
        result: DeployResult = anyio.run(
            lambda: deploy(spec, aws, report=lambda line: print(line, file=sys.stderr))
        )
    except ConfigError as exc:
        return _error(str(exc), 2 if exc.field in ("bucket", "parameters", "zip_path") else 1)
    except DeployError as exc:
        for reason in exc.reasons:
            print(f"  {reason}", file=sys.stderr)
        return _error(str(exc), 1)
    except AsyncloopError as exc:
        return _error(str(exc), 1)
    if args.json:
        doc: dict[str, Any] = {
            "stack_name": result.stack_name,
            "stack_id": result.stack_id,
            "action": result.action,
            "status": result.status,
            "code": f"s3://{result.code_bucket}/{result.code_key}",
            "outputs": result.outputs,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"stack {result.stack_name} {result.action} ({result.status})")
        for name, value in sorted(result.outputs.items()):
            print(f"{name}: {value}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `package` and `deploy` commands to the CLI's subparsers."""
    package = subparsers.add_parser(
        "package",
        help="build the Lambda zip for an architecture and Python runtime",
        description="Build the Lambda zip: asyncloop and its dependencies as wheels for "
        "Lambda's platform (pip --platform --only-binary), deterministic, with its size.",
    )
    _add_build_arguments(package)
    package.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        help="where the zip goes (default: dist/asyncloop-lambda-<arch>-python<ver>.zip)",
    )
    package.add_argument("--json", action="store_true", help="print the result as JSON")
    package.set_defaults(handler=_cmd_package)

    deploy = subparsers.add_parser(
        "deploy",
        help="create or update the CloudFormation stack",
        description="Upload the code zip to S3, then create or update the stack from the "
        "template shipped in asyncloop, wait for it, and print its outputs.",
    )
    deploy.add_argument("--stack-name", default="asyncloop", help="(default: asyncloop)")
    deploy.add_argument("--bucket", default=None, help="S3 bucket for the code zip")
    deploy.add_argument(
        "--create-bucket",
        action="store_true",
        help="create the bucket if missing (named asyncloop-<account>-<region> without --bucket)",
    )
    deploy.add_argument(
        "--zip", type=Path, default=None, help="deploy this zip instead of building one"
    )
    deploy.add_argument("--output", "-o", type=Path, default=None, help="where a built zip goes")
    deploy.add_argument(
        "--worker-handler",
        default=None,
        metavar="MODULE:FUNC",
        help="your worker, wrapped with asyncloop.lambda_handler.worker (module.function too)",
    )
    deploy.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter (MaxLoops=8); repeatable",
    )
    deploy.add_argument("--region", default=None, help="AWS region (required for AWS)")
    deploy.add_argument("--endpoint-url", default=None, help="an emulator's endpoint (moto server)")
    deploy.add_argument(
        "--allow-aws",
        action="store_true",
        help="really deploy to AWS (with --region and AWS_PROFILE or AWS_ACCESS_KEY_ID)",
    )
    deploy.add_argument(
        "--poll-interval", type=float, default=2.0, help="seconds between status checks"
    )
    deploy.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds to wait for the stack"
    )
    deploy.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_build_arguments(deploy)
    deploy.set_defaults(handler=_cmd_deploy)
