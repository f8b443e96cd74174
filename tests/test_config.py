"""Configuration from the environment, and the error messages' single source."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest

from asyncloop import (
    AwsConfig,
    CallableDispatcher,
    ConfigError,
    Consumer,
    ConsumerConfig,
    LambdaConfig,
)
from asyncloop._loop.control import LoopPolicy
from asyncloop._payload import queue_arn
from asyncloop._validate import validate_queue_url
from asyncloop.testing import FakeQueue


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


_INVALID: list[tuple[str, object, str]] = [
    ("receivers", 0, "1..1024"),
    ("receivers", 1025, "1..1024"),
    ("receivers", 2.5, "1..1024"),
    ("receivers", "4", "a number"),
    ("max_in_flight", 0, "1..100000"),
    ("max_in_flight", 100_001, "1..100000"),
    ("prefetch", -1, "0..100000"),
    ("prefetch", 100_001, "0..100000"),
    ("batch_size", 0, "1..10"),
    ("batch_size", 11, "1..10"),
    ("batch_size", True, "a number"),
    ("receive_batch_window", -0.001, "0.0..1.0"),
    ("receive_batch_window", 1.5, "0.0..1.0"),
    ("receive_batch_window", float("nan"), "0.0..1.0"),
    ("receive_batch_window", float("inf"), "0.0..1.0"),
    ("wait_time_seconds", -1, "0..20"),
    ("wait_time_seconds", 21, "0..20"),
    ("wait_time_seconds", 1.5, "0..20"),
    ("visibility_timeout", -1, "0..43200"),
    ("visibility_timeout", 43_201, "0..43200"),
    ("delete_by", "lambda", "consumer, worker"),
    ("until_empty", "yes", "true or false"),
    ("duration", 0, ">= 0.001"),
    ("duration", -5.0, ">= 0.001"),
    ("deadline", -1.0, ">= 0.0"),
    ("shutdown_grace", -1.0, "0.0..3600.0"),
    ("shutdown_grace", 3601.0, "0.0..3600.0"),
    ("ack_flush_interval", 0.0, "0.001..10.0"),
    ("ack_flush_interval", 11.0, "0.001..10.0"),
    ("ack_flush_timeout", 0.05, "0.1..300.0"),
    ("ack_flush_timeout", 301.0, "0.1..300.0"),
    ("max_pending_acks", 9, "10..1000000"),
    ("max_pending_acks", 1_000_001, "10..1000000"),
    ("delete_concurrency", 0, "1..256"),
    ("delete_concurrency", 257, "1..256"),
    ("delete_attempts", 0, "1..10"),
    ("delete_attempts", 11, "1..10"),
    ("failure_backoff_base", -1.0, "0.0..43200.0"),
    ("failure_backoff_base", 43_201.0, "0.0..43200.0"),
    ("failure_backoff_cap", 0.5, "1.0..43200.0"),
    ("failure_backoff_cap", 43_201.0, "1.0..43200.0"),
    ("adaptive_concurrency", 1, "true or false"),
    ("throttle_retries", -1, "0..100"),
    ("throttle_retries", 101, "0..100"),
    ("throttle_retry_delay", -0.1, "0.0..10.0"),
    ("throttle_retry_delay", 11.0, "0.0..10.0"),
    ("throttle_release_visibility", -1, "0..900"),
    ("throttle_release_visibility", 901, "0..900"),
    ("max_visibility_extension", -1.0, "0.0..43200.0"),
    ("max_visibility_extension", 50_000.0, "0.0..43200.0"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), _INVALID)
def test_every_invalid_consumer_config_value_names_field_range_and_value(
    field: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        ConsumerConfig(**{field: value})  # type: ignore[arg-type]
    assert raised.value.field == field
    text = str(raised.value)
    assert text.startswith(field)
    assert allowed in text
    assert repr(value) in text


def test_every_consumer_config_field_is_covered_by_the_invalid_values() -> None:
    covered = {field for field, _, _ in _INVALID}
    assert covered == {f.name for f in dataclasses.fields(ConsumerConfig)}


def test_receive_batch_window_reads_from_its_variable() -> None:
    # GIVEN the variable named after the field
    environ = {"ASYNCLOOP_RECEIVE_BATCH_WINDOW": "0.005"}
    # WHEN the config is built from the environment
    config = ConsumerConfig.from_env(environ)
    # THEN the window is set, in seconds
    assert config.receive_batch_window == 0.005


def test_failure_backoff_cap_below_base_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"failure_backoff_cap must be >= failure_backoff_base"):
        ConsumerConfig(failure_backoff_base=10.0, failure_backoff_cap=5.0)


@pytest.mark.parametrize(
    "url",
    [
        "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
        "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo",
        "http://127.0.0.1:4566/000000000000/jobs",
        "http://sqs.us-east-1.localhost:9324/000000000000/jobs-dlq",
    ],
)
def test_valid_queue_urls_pass_and_give_arns(url: str) -> None:
    assert validate_queue_url(url) == url
    arn = queue_arn(url, "us-east-1")
    assert arn.startswith("arn:aws:sqs:")
    assert arn.endswith(":" + url.rsplit("/", 1)[-1])


@pytest.mark.parametrize(
    "url",
    [
        "",
        "jobs",
        "arn:aws:sqs:us-east-1:123456789012:jobs",
        "ftp://sqs.us-east-1.amazonaws.com/123456789012/jobs",
        "https://sqs.us-east-1.amazonaws.com/jobs",
        "https://sqs.us-east-1.amazonaws.com/123456789012/jo bs",
        "https://sqs.us-east-1.amazonaws.com/123456789012/" + "a" * 81,
        "https://sqs.us-east-1.amazonaws.com/123456789012/jobs?x=1",
    ],
)
def test_invalid_queue_urls_are_refused_by_the_consumer(url: str) -> None:
    class Odd(FakeQueue):
        @property
        def queue_url(self) -> str:
            return url

    with pytest.raises(ConfigError, match="queue_url must look like"):
        Consumer(queue=Odd(), dispatcher=CallableDispatcher(lambda m: None))
