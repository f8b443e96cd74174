"""Every public module's __all__ is a sorted tuple naming exactly what it exports."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest
from _fresh_imports import loaded_after

import asyncloop


def _public_modules() -> list[str]:
    """Every importable public module of the package, as anyio's test finds them: walk the
    package and skip any name with a private part (``asyncloop._loop.runner``)."""
    names = ["asyncloop"]
    for info in pkgutil.walk_packages(asyncloop.__path__, "asyncloop."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


PUBLIC_MODULES = _public_modules()


def test_the_walk_finds_the_public_modules() -> None:
    # The walk itself must see the modules users import, or the tests below check nothing
    assert {"asyncloop", "asyncloop.testing", "asyncloop.lambda_handler"} <= set(PUBLIC_MODULES)
    assert not [name for name in PUBLIC_MODULES if "._" in name]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_a_tuple_of_existing_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, tuple)
    assert len(set(exported)) == len(exported)
    missing = [attr for attr in exported if not hasattr(module, attr)]
    assert missing == [], f"{name}.__all__ names what it does not have"
    for attr in exported:
        assert not attr.startswith("_")
        assert getattr(module, attr) is not None, attr


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_class_and_function_is_in_all(name: str) -> None:
    module = importlib.import_module(name)
    # Resolve the lazy names first, so they are in the module's namespace too
    for attr in module.__all__:
        getattr(module, attr)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and isinstance(value, type | types.FunctionType)
        and getattr(value, "__module__", "").startswith("asyncloop")
    }
    unlisted = sorted(public - set(module.__all__))
    assert unlisted == [], f"{name} exports these without listing them in __all__"


def test_import_asyncloop_stays_light() -> None:
    # Cold start in Lambda: the core must not pull in botocore, aioboto3 or aiohttp.
    heavy = ("botocore", "aioboto3", "aiohttp", "aiobotocore")
    assert loaded_after("import asyncloop", heavy) == []


def test_lazy_aws_names_resolve() -> None:
    import asyncloop

    assert asyncloop.SqsQueue.__name__ == "SqsQueue"
    assert asyncloop.AwsClients.__name__ == "AwsClients"
    assert asyncloop.open_consumer.__name__ == "open_consumer"
    with pytest.raises(AttributeError):
        asyncloop.NoSuchThing  # noqa: B018
