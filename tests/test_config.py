"""Configuration from the environment, and the error messages' single source."""

from __future__ import annotations

import pytest

from asyncloop import AwsConfig, ConfigError, ConsumerConfig, LambdaConfig
from asyncloop._config import validate_queue_url


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
    with pytest.raises(ConfigError, match="ASYNCLOOP_UNTIL_EMPTY must be a") as raised:
        ConsumerConfig.from_env({"ASYNCLOOP_UNTIL_EMPTY": "maybe"})
    assert raised.value.field == "until_empty"


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
