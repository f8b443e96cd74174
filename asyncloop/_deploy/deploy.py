"""Deploy the shipped CloudFormation template: upload the code zip, create or update the stack.

`deploy` uploads the zip to S3 under a content-addressed key (a new build is a new key, so
CloudFormation sees the change and updates the functions' code), then creates the stack, or
updates it ("No updates are to be performed" is success), waits until CloudFormation finishes,
and returns the stack's outputs. A stack left in ROLLBACK_COMPLETE by a failed first create
holds no resources and cannot be updated: it is deleted and created again.

What to deploy (`DeploySpec`, the shipped template and its parameters) is in
`asyncloop._deploy.spec`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import anyio

from .._aws import AwsClients
from .._config import AwsConfig
from .._error_table import map_errors
from .._exceptions import AsyncloopError, AwsError, ConfigError
from .package import UNZIPPED_LIMIT, read_manifest
from .spec import DeploySpec, template_body

__all__ = ("DeployError", "DeployResult", "deploy")

# CreateStack's TemplateBody limit; larger templates must go through S3 (TemplateURL)
_TEMPLATE_BODY_LIMIT: Final = 51_200

_DONE: Final = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE"})

Action = Literal["created", "updated", "unchanged"]
Reporter = Callable[[str], None]


class DeployError(AsyncloopError):
    """The stack did not reach a complete state; `status` is where it stopped, `reasons` the
    failed resources' messages from the stack events."""

    def __init__(
        self, message: str, *, stack_name: str, status: str | None, reasons: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.stack_name = stack_name
        self.status = status
        self.reasons = reasons


@dataclass(frozen=True, slots=True, kw_only=True)
class DeployResult:
    """What `deploy` did and what the stack answers."""

    stack_name: str
    stack_id: str
    action: Action
    status: str
    outputs: dict[str, str]
    code_bucket: str
    code_key: str


def _stack_parameters(spec: DeploySpec, bucket: str, key: str) -> dict[str, str]:
    params = dict(spec.parameters)
    manifest = read_manifest(spec.zip_path)
    if manifest is not None:
        for name, built in (
            ("Architecture", manifest.get("architecture")),
            ("Runtime", manifest.get("runtime")),
        ):
            if built is None:
                continue
            given = params.setdefault(name, built)
            if given != built:
                raise ConfigError(
                    f"parameter {name}={given} does not match the zip, built for {built}",
                    field="parameters",
                )
    params["CodeBucket"] = bucket
    params["CodeKey"] = key
    return params


def _check_zip(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        with zipfile.ZipFile(path) as zf:
            unzipped = sum(info.file_size for info in zf.infolist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path} is not a readable zip: {exc}", field="zip_path") from exc
    if unzipped > UNZIPPED_LIMIT:
        raise ConfigError(
            f"{path} unpacks to {unzipped / 2**20:.1f} MiB, over Lambda's 250 MiB limit",
            field="zip_path",
        )
    return data


def _error_code(exc: AwsError) -> tuple[str, str]:
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    message = ""
    if isinstance(response, Mapping):
        message = str(response.get("Error", {}).get("Message", ""))
    return exc.code or "", message or str(exc)


async def _ensure_bucket(s3: Any, sts: Any, spec: DeploySpec, region: str, report: Reporter) -> str:
    bucket = spec.bucket
    if bucket is None:
        with map_errors("GetCallerIdentity"):
            identity = await sts.get_caller_identity()
        bucket = f"asyncloop-{identity['Account']}-{region}"
    try:
        with map_errors("HeadBucket"):
            await s3.head_bucket(Bucket=bucket)
        return bucket
    except AwsError as exc:
        code, _ = _error_code(exc)
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    if not spec.create_bucket:
        raise ConfigError(
            f"bucket {bucket!r} does not exist (create it, or pass create_bucket)",
            field="bucket",
        )
    kwargs: dict[str, Any] = {"Bucket": bucket}
    # us-east-1 is the one region that refuses a LocationConstraint naming itself
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with map_errors("CreateBucket"):
        await s3.create_bucket(**kwargs)
    report(f"created bucket {bucket}")
    return bucket


async def _upload(s3: Any, bucket: str, key: str, data: bytes, report: Reporter) -> None:
    try:
        with map_errors("HeadObject"):
            await s3.head_object(Bucket=bucket, Key=key)
        report(f"s3://{bucket}/{key} is already there")
        return
    except AwsError as exc:
        code, _ = _error_code(exc)
        if code not in ("404", "NoSuchKey", "NotFound"):
            raise
    with map_errors("PutObject"):
        await s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/zip")
    report(f"uploaded s3://{bucket}/{key} ({len(data) / 2**20:.1f} MiB)")


async def _describe_stack(cf: Any, stack_name: str) -> dict[str, Any] | None:
    try:
        with map_errors("DescribeStacks"):
            answer = await cf.describe_stacks(StackName=stack_name)
    except AwsError as exc:
        code, message = _error_code(exc)
        if code == "ValidationError" and "does not exist" in message:
            return None
        raise
    stacks = answer.get("Stacks", [])
    return dict(stacks[0]) if stacks else None


async def _failure_reasons(cf: Any, stack_name: str) -> tuple[str, ...]:
    try:
        with map_errors("DescribeStackEvents"):
            answer = await cf.describe_stack_events(StackName=stack_name)
    except AwsError:
        return ()
    reasons = []
    for event in answer.get("StackEvents", [])[:50]:
        if str(event.get("ResourceStatus", "")).endswith("FAILED"):
            reasons.append(
                f"{event.get('LogicalResourceId')}: {event.get('ResourceStatus')}: "
                f"{event.get('ResourceStatusReason', '')}"
            )
    return tuple(reversed(reasons))


async def _wait(cf: Any, spec: DeploySpec, goal: frozenset[str]) -> dict[str, Any]:
    """Poll until the stack leaves its *_IN_PROGRESS state; the stack if it reached `goal`."""
    stack: dict[str, Any] | None = None
    try:
        with anyio.fail_after(spec.timeout):
            while True:
                stack = await _describe_stack(cf, spec.stack_name)
                status = "DELETE_COMPLETE" if stack is None else str(stack["StackStatus"])
                if not status.endswith("_IN_PROGRESS"):
                    break
                await anyio.sleep(spec.poll_interval)
    except TimeoutError:
        status = "?" if stack is None else str(stack["StackStatus"])
        raise DeployError(
            f"stack {spec.stack_name} still {status} after {spec.timeout:g} s",
            stack_name=spec.stack_name,
            status=status,
        ) from None
    if status in goal:
        return stack or {}
    reasons = await _failure_reasons(cf, spec.stack_name)
    detail = "; ".join(reasons[-3:]) or (stack or {}).get("StackStatusReason") or "no reason given"
    raise DeployError(
        f"stack {spec.stack_name} ended {status}: {detail}",
        stack_name=spec.stack_name,
        status=status,
        reasons=reasons,
    )


class _ClientSource(Protocol):
    async def client(self, service: str) -> Any: ...


async def deploy(
    spec: DeploySpec,
    aws: AwsConfig,
    *,
    report: Reporter | None = None,
    clients: _ClientSource | None = None,
) -> DeployResult:
    """Upload `spec.zip_path`, create or update the stack, wait for it; its outputs.

    Raises `ConfigError` for bad input (a missing bucket, a zip that does not fit Lambda),
    `AwsError` when a call fails, `DeployError` when the stack fails or times out.
    `report` gets one line per step. `clients` (anything with ``await client(service)``, as
    `AwsClients`) replaces the clients `deploy` would open from `aws`.
    """
    say: Reporter = report or (lambda _line: None)
    body = template_body()
    if len(body.encode()) > _TEMPLATE_BODY_LIMIT:
        raise ConfigError(
            f"the template is over CloudFormation's {_TEMPLATE_BODY_LIMIT} byte TemplateBody limit",
            field="template",
        )
    data = _check_zip(spec.zip_path)
    key = f"{spec.key_prefix}{hashlib.sha256(data).hexdigest()[:32]}.zip"
    # CloudFormation is regional: an emulator without a region gets us-east-1
    region = aws.region or "us-east-1"
    aws = dataclasses.replace(aws, region=region)
    if clients is not None:
        return await _deploy(spec, clients, region, body, data, key, say)
    async with AwsClients(aws, pool_size=4) as opened:
        return await _deploy(spec, opened, region, body, data, key, say)


async def _deploy(
    spec: DeploySpec,
    clients: _ClientSource,
    region: str,
    body: str,
    data: bytes,
    key: str,
    say: Reporter,
) -> DeployResult:
    s3 = await clients.client("s3")
    sts = await clients.client("sts")
    cf = await clients.client("cloudformation")
    bucket = await _ensure_bucket(s3, sts, spec, region, say)
    params = _stack_parameters(spec, bucket, key)
    await _upload(s3, bucket, key, data, say)
    request: dict[str, Any] = {
        "StackName": spec.stack_name,
        "TemplateBody": body,
        "Parameters": [
            {"ParameterKey": name, "ParameterValue": str(value)}
            for name, value in sorted(params.items())
        ],
        # The template creates IAM roles (unnamed, so CAPABILITY_IAM suffices)
        "Capabilities": ["CAPABILITY_IAM"],
    }
    existing = await _describe_stack(cf, spec.stack_name)
    if existing is not None and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        say(f"stack {spec.stack_name} is ROLLBACK_COMPLETE from a failed create: deleting it")
        with map_errors("DeleteStack"):
            await cf.delete_stack(StackName=spec.stack_name)
        await _wait(cf, spec, frozenset({"DELETE_COMPLETE"}))
        existing = None
    if existing is not None and str(existing["StackStatus"]).endswith("_IN_PROGRESS"):
        raise DeployError(
            f"stack {spec.stack_name} is busy ({existing['StackStatus']}): try again later",
            stack_name=spec.stack_name,
            status=str(existing["StackStatus"]),
        )
    action: Action
    if existing is None:
        say(f"creating stack {spec.stack_name}")
        with map_errors("CreateStack"):
            await cf.create_stack(**request)
        action = "created"
    else:
        say(f"updating stack {spec.stack_name}")
        try:
            with map_errors("UpdateStack"):
                await cf.update_stack(**request)
            action = "updated"
        except AwsError as exc:
            code, message = _error_code(exc)
            if code != "ValidationError" or "No updates are to be performed" not in message:
                raise
            action = "unchanged"
    stack = await _wait(cf, spec, _DONE) if action != "unchanged" else existing
    assert stack is not None
    outputs = {str(o["OutputKey"]): str(o["OutputValue"]) for o in stack.get("Outputs", []) or []}
    return DeployResult(
        stack_name=spec.stack_name,
        stack_id=str(stack.get("StackId", "")),
        action=action,
        status=str(stack["StackStatus"]),
        outputs=outputs,
        code_bucket=bucket,
        code_key=key,
    )
