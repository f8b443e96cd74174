"""What to deploy: the shipped CloudFormation template, its parameters, and `DeploySpec`.

The template (`asyncloop/_deploy/templates/asyncloop.yaml`) ships in the package;
`template_body` reads it and `template_parameters` lists its parameters, which `DeploySpec`
checks the caller's against. `lambda_handler_name` turns ``module:function`` into Lambda's
``Handler``. `asyncloop._deploy.deploy` does the deploying.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Final

from .._exceptions import ConfigError

__all__ = ("DeploySpec", "lambda_handler_name", "template_body", "template_parameters")

TEMPLATE: Final = "templates/asyncloop.yaml"

# Set by `deploy` itself, never by the caller
_MANAGED_PARAMETERS: Final = frozenset({"CodeBucket", "CodeKey"})

# Function names are "<stack>-watchdog" (the longest suffix, 9 characters), at most 64 long
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,54}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


# A Python identifier, and a dotted module path of them
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_HANDLER = re.compile(
    rf"^(?P<module>{_IDENTIFIER}(?:\.{_IDENTIFIER})*)[:.](?P<func>{_IDENTIFIER})$"
)


def lambda_handler_name(spec: str, *, field: str = "worker_handler") -> str:
    """The Lambda ``Handler`` for `spec`: ``module.function``.

    `spec` is ``module:function``, the form of ``asyncloop run --handler``, or Lambda's own
    ``module.function``; the module may be dotted (``pkg.jobs:handle``). Lambda looks up one
    attribute of the module, so ``module:obj.method`` is refused, as is anything else that is
    not identifiers: ConfigError naming `field`."""
    match = _HANDLER.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise ConfigError(
            f"{field} must look like module:function (or module.function), got {spec!r}",
            field=field,
        )
    return f"{match['module']}.{match['func']}"


def template_body() -> str:
    """The CloudFormation template shipped in the package."""
    return resources.files("asyncloop._deploy").joinpath(TEMPLATE).read_text(encoding="utf-8")


def template_parameters(body: str | None = None) -> tuple[str, ...]:
    """The names of the template's parameters, in order.

    Read from the top-level ``Parameters:`` block of the shipped template's layout (two-space
    keys), so that the runtime needs no YAML parser; a test checks it against a real parse.
    """
    text = template_body() if body is None else body
    block = re.search(r"^Parameters:\n(.*?)^\S", text, re.MULTILINE | re.DOTALL)
    if block is None:
        return ()
    return tuple(re.findall(r"^  ([A-Za-z0-9]+):\s*$", block.group(1), re.MULTILINE))


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploySpec:
    """What to deploy, and where."""

    zip_path: Path
    """The code zip (`asyncloop package`); uploaded to S3 under a key made from its hash."""

    stack_name: str = "asyncloop"
    """The stack, 1..55 letters, digits and hyphens, starting with a letter (its functions are
    named ``<stack>-loop``, ``-worker``, ``-watchdog``: at most 64 characters).
    Default asyncloop."""

    bucket: str | None = None
    """The S3 bucket for the zip; None with `create_bucket` names one
    ``asyncloop-<account>-<region>``."""

    create_bucket: bool = False
    """Create the bucket when it does not exist. Default False: a missing bucket is an error."""

    key_prefix: str = "asyncloop/"
    """Prefix of the zip's S3 key. Default ``asyncloop/``."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    """Template parameters (``MaxLoops``...). Architecture and Runtime default to what the zip
    was built for; CodeBucket and CodeKey are set by `deploy`."""

    poll_interval: float = 2.0
    """Seconds between DescribeStacks while CloudFormation works (0.01..60). Default 2."""

    timeout: float = 1800.0
    """Seconds to wait for the stack (1..7200). Default 1800."""

    def __post_init__(self) -> None:
        if not _STACK_NAME.match(self.stack_name):
            raise ConfigError(
                "stack_name must be 1..55 letters, digits and hyphens starting with a letter, "
                f"got {self.stack_name!r}",
                field="stack_name",
            )
        if self.bucket is None and not self.create_bucket:
            raise ConfigError("bucket is required unless create_bucket is set", field="bucket")
        if self.bucket is not None and not _BUCKET_NAME.match(self.bucket):
            raise ConfigError(
                f"bucket must be an S3 bucket name (3..63 of a-z 0-9 . -), got {self.bucket!r}",
                field="bucket",
            )
        known = set(template_parameters())
        for name in self.parameters:
            if name in _MANAGED_PARAMETERS:
                raise ConfigError(f"parameter {name} is set by deploy", field="parameters")
            if name not in known:
                raise ConfigError(
                    f"parameter {name!r} is not in the template; known: {', '.join(sorted(known))}",
                    field="parameters",
                )
        if not 0.01 <= self.poll_interval <= 60:
            raise ConfigError(
                f"poll_interval must be in 0.01..60, got {self.poll_interval!r}",
                field="poll_interval",
            )
        if not 1 <= self.timeout <= 7200:
            raise ConfigError(f"timeout must be in 1..7200, got {self.timeout!r}", field="timeout")
