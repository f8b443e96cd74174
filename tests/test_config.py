"""Configuration from the environment, and the error messages' single source."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest

from asyncloop import AwsConfig, ConfigError, ConsumerConfig, LambdaConfig
from asyncloop._config import validate_queue_url
from asyncloop._loop.control import LoopPolicy


def test_from_env_parses_each_fields_type_and_overrides_win() -> None:
    env = {
        "ASYNCLOOP_MAX_IN_FLIGHT": "128",
        "ASYNCLOOP_UNTIL_EMPTY": "yes",
        "ASYNCLOOP_DURATION": "2.5",
        "ASYNCLOOP_DELETE_BY": "worker",
        "ASYNCLOOP_RECEIVERS": "9",
        "UNRELATED": "x",
    }
    config = ConsumerConfig.from_env(env, receivers=3)
    assert config.max_in_flight == 128
    assert config.until_empty is True
    assert config.duration == 2.5
    assert config.delete_by == "worker"
    assert config.receivers == 3


def test_from_env_names_the_variable_of_a_bad_value() -> None:
    # GIVEN a variable that is no boolean WHEN read THEN the error names it and what it takes
    with pytest.raises(ConfigError) as raised:
        ConsumerConfig.from_env({"ASYNCLOOP_UNTIL_EMPTY": "maybe"})
    assert str(raised.value) == (
        "ASYNCLOOP_UNTIL_EMPTY must be true or false (1/0, yes/no, on/off), got 'maybe'"
    )
    assert raised.value.field == "until_empty"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"ASYNCLOOP_MAX_IN_FLIGHT": "abc"},
            "ASYNCLOOP_MAX_IN_FLIGHT must be an integer, got 'abc'",
        ),
        ({"ASYNCLOOP_SHUTDOWN_GRACE": "-5"}, "ASYNCLOOP_SHUTDOWN_GRACE must be in 0.0..3600.0"),
        (
            {"ASYNCLOOP_ACK_FLUSH_TIMEOUT": "nan"},
            "ASYNCLOOP_ACK_FLUSH_TIMEOUT must be in 0.1..300.0",
        ),
        ({"ASYNCLOOP_DURATION": "inf"}, "ASYNCLOOP_DURATION must be a finite number >= 0.001"),
    ],
)
def test_from_env_validation_errors_name_the_variable(env: dict[str, str], expected: str) -> None:
    # GIVEN a value that parses but is out of range WHEN read THEN the variable is named
    with pytest.raises(ConfigError, match="^" + re.escape(expected)):
        ConsumerConfig.from_env(env)


def test_from_env_leaves_an_overridden_field_to_its_caller() -> None:
    # GIVEN a malformed variable whose field the caller overrides
    # WHEN built THEN the variable is not read, and the override's error keeps the field name
    assert ConsumerConfig.from_env({"ASYNCLOOP_RECEIVERS": "x"}, receivers=2).receivers == 2
    with pytest.raises(ConfigError, match=r"^receivers must be in 1\.\.1024, got 0"):
        ConsumerConfig.from_env({}, receivers=0)


def _numeric_fields() -> list[tuple[type[Any], str]]:
    return [
        (cls, f.name)
        for cls in (ConsumerConfig, AwsConfig, LambdaConfig, LoopPolicy)
        for f in dataclasses.fields(cls)
        if "float" in str(f.type) or str(f.type).startswith("int")
    ]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(("cls", "name"), _numeric_fields())
def test_every_numeric_field_refuses_nan_and_inf(cls: type[Any], name: str, value: float) -> None:
    # GIVEN any numeric field of any config (no field documents inf as "no limit": None is)
    required = {"function_name": "worker"} if cls is LambdaConfig else {}
    # WHEN it is NaN or +/-inf THEN construction fails naming the field and the value
    with pytest.raises(ConfigError, match=f"^{name} must be .*, got {value!r}$") as raised:
        cls(**required, **{name: value})
    assert raised.value.field == name


def test_lambda_and_aws_configs_from_env() -> None:
    lam = LambdaConfig.from_env(
        {"ASYNCLOOP_FUNCTION_NAME": "worker", "ASYNCLOOP_INVOCATION_TYPE": "RequestResponse"}
    )
    assert (lam.function_name, lam.invocation_type, lam.payload) == (
        "worker",
        "RequestResponse",
        "seed",
    )
    aws = AwsConfig.from_env({"ASYNCLOOP_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert aws.endpoint_url == "http://127.0.0.1:5000"
    with pytest.raises(ConfigError, match="endpoint_url must be an http"):
        AwsConfig(endpoint_url="127.0.0.1:5000")


@pytest.mark.parametrize(
    "url",
    [
        "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
        "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo",
        "http://127.0.0.1:4566/000000000000/q-1_x",
    ],
)
def test_valid_queue_urls(url: str) -> None:
    assert validate_queue_url(url) == url


@pytest.mark.parametrize(
    "url",
    ["", "orders", "https://sqs.us-east-1.amazonaws.com/orders", "ftp://h/1/q", "https://h/1/q q"],
)
def test_invalid_queue_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="queue_url must look like"):
        validate_queue_url(url)


@pytest.mark.parametrize(
    "name",
    [
        "worker",
        "worker:live",
        "123456789012:function:worker",
        "arn:aws:lambda:eu-west-1:123456789012:function:worker",
        "arn:aws:lambda:eu-west-1:123456789012:function:worker:$LATEST",
    ],
)
def test_function_names_and_arns_accepted(name: str) -> None:
    assert LambdaConfig(function_name=name).function_name == name


@pytest.mark.parametrize("name", ["", " ", "my worker", "worker/1", "arn:aws:s3:::bucket"])
def test_bad_function_names_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="function_name must"):
        LambdaConfig(function_name=name)
