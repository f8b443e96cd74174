"""`asyncloop deploy --endpoint-url <moto>`: the shipped template as a real stack on moto's server.

(The CloudFormation paths moto cannot produce, a failed create and "No updates are to be
performed", are in tests/test_deploy.py, against a small fake CloudFormation client.)

moto 5.2's CloudFormation does not implement AWS::CloudWatch::Alarm or
AWS::Lambda::EventInvokeConfig (it skips them with a warning); deploy passes MotoCompatible=true
to an emulator, which leaves exactly those out. Everything else is created: queues with their
redrive policy, the stream and its event source mapping, the table, the roles, the functions,
the schedule and its permission.

The zip is built with ``--no-deps`` (asyncloop alone): moto stores the code without running it,
and the test needs no network.
"""

from __future__ import annotations

import ast
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import pytest
import pytest_asyncio

from asyncloop._cli import main

REGION = "us-east-1"
STACK = "al-test"


async def _cli_async(argv: list[str]) -> int:
    # The command runs its own event loop (anyio.run): keep it off the test's loop
    return await anyio.to_thread.run_sync(main, argv)


@pytest.fixture
def code_zip(tmp_path: Path) -> Path:
    out = tmp_path / "code.zip"
    assert main(["package", "--no-deps", "--architecture", "x86_64", "-o", str(out)]) == 0
    return out


@pytest_asyncio.fixture
async def clients(moto_endpoint: str) -> AsyncIterator[dict[str, Any]]:
    session = aioboto3.Session(region_name=REGION)
    names = ("sqs", "lambda", "kinesis", "dynamodb", "events", "iam", "cloudformation", "s3")
    async with (
        session.client(names[0], endpoint_url=moto_endpoint) as sqs,
        session.client(names[1], endpoint_url=moto_endpoint) as lambda_,
        session.client(names[2], endpoint_url=moto_endpoint) as kinesis,
        session.client(names[3], endpoint_url=moto_endpoint) as dynamodb,
        session.client(names[4], endpoint_url=moto_endpoint) as events,
        session.client(names[5], endpoint_url=moto_endpoint) as iam,
        session.client(names[6], endpoint_url=moto_endpoint) as cloudformation,
        session.client(names[7], endpoint_url=moto_endpoint) as s3,
    ):
        yield dict(
            zip(
                names,
                (sqs, lambda_, kinesis, dynamodb, events, iam, cloudformation, s3),
                strict=True,
            )
        )


def _deploy_args(endpoint: str, code_zip: Path, *extra: str) -> list[str]:
    return [
        "deploy", "--endpoint-url", endpoint, "--region", REGION, "--stack-name", STACK,
        "--zip", str(code_zip), "--bucket", "asyncloop-code", "--create-bucket",
        "--poll-interval", "0.05", "--timeout", "60", "--json", *extra,
    ]  # fmt: skip


@pytest.mark.integration
@pytest.mark.asyncio
async def test_deploy_creates_the_stack_and_its_outputs_work(
    moto_endpoint: str,
    code_zip: Path,
    clients: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN an empty moto / WHEN asyncloop deploys the template
    zip_size = len(await anyio.Path(code_zip).read_bytes())
    code = await _cli_async(_deploy_args(moto_endpoint, code_zip))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["action"] == "created"
    assert result["status"] == "CREATE_COMPLETE"
    outputs = result["outputs"]
    assert set(outputs) >= {
        "QueueUrl", "DeadLetterQueueUrl", "TokenFailureQueueUrl", "StreamName",
        "LeaseTableName", "LoopFunctionName", "WorkerFunctionName", "WatchdogFunctionName",
    }  # fmt: skip

    # THEN the queue is reachable and redrives to the DLQ
    sqs = clients["sqs"]
    attrs = (await sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"]))[
        "Attributes"
    ]
    dlq_arn = (
        await sqs.get_queue_attributes(
            QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["QueueArn"]
        )
    )["Attributes"]["QueueArn"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == 5
    await sqs.send_message(QueueUrl=outputs["QueueUrl"], MessageBody="hello")
    received = await sqs.receive_message(QueueUrl=outputs["QueueUrl"], WaitTimeSeconds=0)
    assert [m["Body"] for m in received["Messages"]] == ["hello"]

    # ... the code went to the bucket
    bucket, key = result["code"].removeprefix("s3://").split("/", 1)
    head = await clients["s3"].head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == zip_size

    # ... the three functions exist, each with its own role, wired by environment
    lam = clients["lambda"]
    functions = {
        role: (await lam.get_function(FunctionName=outputs[f"{role}FunctionName"]))["Configuration"]
        for role in ("Loop", "Worker", "Watchdog")
    }
    assert len({f["Role"] for f in functions.values()}) == 3
    loop_env = functions["Loop"]["Environment"]["Variables"]
    # moto echoes template Number parameters as numbers: compare as strings
    assert str(loop_env["ASYNCLOOP_QUEUE_URL"]) == outputs["QueueUrl"]
    assert str(loop_env["ASYNCLOOP_FUNCTION_NAME"]) == outputs["WorkerFunctionName"]
    assert str(loop_env["ASYNCLOOP_STREAM_NAME"]) == outputs["StreamName"]
    assert str(loop_env["ASYNCLOOP_LEASE_TABLE"]) == outputs["LeaseTableName"]
    assert functions["Loop"]["Handler"] == "asyncloop.lambda_handler.loop_handler"

    # ... the loop's roles name this stack's resources (read back from IAM)
    iam = clients["iam"]
    role_name = functions["Worker"]["Role"].rsplit("/", 1)[-1]
    (policy_name,) = (await iam.list_role_policies(RoleName=role_name))["PolicyNames"]
    document = (await iam.get_role_policy(RoleName=role_name, PolicyName=policy_name))[
        "PolicyDocument"
    ]
    if isinstance(document, str):
        # moto 5.2 stores a CloudFormation-made inline policy as the Python repr of the dict
        document = ast.literal_eval(document)
    # ... and keeps `!If [..., !Ref AWS::NoValue]` as None in the list (AWS drops it)
    statements = [st for st in document["Statement"] if st is not None]
    assert [st["Action"] for st in statements if st["Sid"] == "AckMessage"] == ["sqs:DeleteMessage"]
    assert all(st["Resource"] != "*" for st in statements)

    # ... the token stream feeds the loop one record at a time, with bounded retries
    mappings = (await lam.list_event_source_mappings(FunctionName=outputs["LoopFunctionName"]))[
        "EventSourceMappings"
    ]
    (mapping,) = mappings
    assert mapping["BatchSize"] == 1
    assert mapping["MaximumRetryAttempts"] == 2
    assert mapping["BisectBatchOnFunctionError"] is True
    assert "TokenFailureQueue" in mapping["DestinationConfig"]["OnFailure"]["Destination"]
    summary = await clients["kinesis"].describe_stream_summary(StreamName=outputs["StreamName"])
    assert mapping["EventSourceArn"] == summary["StreamDescriptionSummary"]["StreamARN"]

    # ... the lease table has the lease store's key
    table = await clients["dynamodb"].describe_table(TableName=outputs["LeaseTableName"])
    assert table["Table"]["KeySchema"] == [{"AttributeName": "loop_id", "KeyType": "HASH"}]

    # ... and the watchdog runs every minute
    rules = (await clients["events"].list_rules())["Rules"]
    (rule,) = [r for r in rules if r.get("ScheduleExpression") == "rate(1 minute)"]
    targets = (await clients["events"].list_targets_by_rule(Rule=rule["Name"]))["Targets"]
    assert [t["Arn"] for t in targets] == [functions["Watchdog"]["FunctionArn"]]


@pytest.mark.integration
@pytest.mark.asyncio
async def test_deploy_again_updates_or_reports_no_change(
    moto_endpoint: str,
    code_zip: Path,
    clients: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a deployed stack
    assert await _cli_async(_deploy_args(moto_endpoint, code_zip)) == 0
    capsys.readouterr()
    # WHEN it is deployed again unchanged / THEN that is success (AWS answers "No updates are
    # to be performed"; moto 5.2 updates anyway when defaults were not passed explicitly)
    assert await _cli_async(_deploy_args(moto_endpoint, code_zip)) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["action"] in ("unchanged", "updated")
    assert again["status"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
    # WHEN a parameter changes / THEN the stack updates and the function sees it
    assert await _cli_async(_deploy_args(moto_endpoint, code_zip, "--parameter", "MaxLoops=8")) == 0
    updated = json.loads(capsys.readouterr().out)
    assert updated["action"] == "updated"
    assert updated["status"] == "UPDATE_COMPLETE"
    config = await clients["lambda"].get_function_configuration(
        FunctionName=updated["outputs"]["LoopFunctionName"]
    )
    assert str(config["Environment"]["Variables"]["ASYNCLOOP_MAX_LOOPS"]) == "8"


@pytest.mark.integration
@pytest.mark.asyncio
async def test_create_bucket_without_a_name_uses_account_and_region(
    moto_endpoint: str, code_zip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _deploy_args(moto_endpoint, code_zip)
    i = args.index("--bucket")
    del args[i : i + 2]
    assert await _cli_async(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["code"].startswith("s3://asyncloop-123456789012-us-east-1/asyncloop/")


@pytest.mark.integration
@pytest.mark.asyncio
async def test_missing_bucket_without_create_is_a_clear_error(
    moto_endpoint: str, code_zip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _deploy_args(moto_endpoint, code_zip)
    args.remove("--create-bucket")
    assert await _cli_async(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("asyncloop: error: bucket 'asyncloop-code' does not exist")


@pytest.mark.integration
@pytest.mark.asyncio
async def test_unknown_parameter_and_mismatched_runtime_exit_2(
    moto_endpoint: str, code_zip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli_async(_deploy_args(moto_endpoint, code_zip, "--parameter", "Nope=1")) == 2
    assert "asyncloop: error: parameter 'Nope' is not in the template" in capsys.readouterr().err
    # the zip was built for python3.12: deploying it as 3.13 would break at import
    mismatch = _deploy_args(moto_endpoint, code_zip, "--parameter", "Runtime=python3.13")
    assert await _cli_async(mismatch) == 2
    assert "does not match the zip, built for python3.12" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.asyncio
async def test_unreachable_endpoint_exits_1(
    code_zip: Path, capsys: pytest.CaptureFixture[str], aws_credentials: None
) -> None:
    # GIVEN a port nothing listens on
    args = _deploy_args(f"http://127.0.0.1:{_free_port()}", code_zip)
    assert await _cli_async(args) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("asyncloop: error:")


def _free_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["deploy", "--bucket", "b"], "deploy targets AWS only with --allow-aws"),
        (["deploy", "--bucket", "b", "--allow-aws"], "deploying to AWS needs --region"),
        (["deploy", "--endpoint-url", "http://127.0.0.1:1", "--zip", "/no/such.zip"], "--zip"),
        (
            ["deploy", "--endpoint-url", "http://127.0.0.1:1", "--parameter", "MaxLoops"],
            "--parameter must be Name=Value",
        ),
    ],
)
def test_bad_arguments_exit_2_before_any_call(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("asyncloop: error:")
    assert message in err[0]


def test_aws_needs_explicit_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    argv = ["deploy", "--bucket", "b", "--allow-aws", "--region", "eu-west-1"]
    assert main(argv) == 2
    assert "explicit credentials" in capsys.readouterr().err
