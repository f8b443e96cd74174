"""Every public module's __all__ is a sorted tuple naming exactly what it exports."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

PUBLIC_MODULES = ["asyncloop", "asyncloop.testing", "asyncloop.lambda_handler"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_a_tuple_of_existing_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, tuple)
    assert len(set(exported)) == len(exported)
    for attr in exported:
        assert not attr.startswith("_")
        assert getattr(module, attr) is not None, attr


@pytest.mark.parametrize("name", ["asyncloop", "asyncloop.testing"])
def test_every_public_class_and_function_is_in_all(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and isinstance(value, type | types.FunctionType)
        and getattr(value, "__module__", "").startswith("asyncloop")
    }
    assert public <= set(module.__all__)


def test_import_asyncloop_stays_light() -> None:
    # Cold start in Lambda: the core must not pull in botocore, aioboto3 or aiohttp.
    code = (
        "import sys, asyncloop; "
        "print(','.join(m for m in ('botocore', 'aioboto3', 'aiohttp', 'aiobotocore') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_lazy_aws_names_resolve() -> None:
    import asyncloop

    assert asyncloop.SqsQueue.__name__ == "SqsQueue"
    assert asyncloop.AwsClients.__name__ == "AwsClients"
    with pytest.raises(AttributeError):
        asyncloop.NoSuchThing  # noqa: B018
