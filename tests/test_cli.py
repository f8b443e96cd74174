"""The CLI's argument contract: exit 2 with one clear line for bad arguments or config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from asyncloop import AwsConfig, ConsumerConfig, _cli_run
from asyncloop._cli import main
from asyncloop._deploy.deploy import DeployResult
from asyncloop._deploy.spec import DeploySpec
from asyncloop._stats import Stats

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
RUN = ["run", "--queue-url", URL, "--handler", "os:getcwd"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [*RUN, "--batch-size", "11"],
            "--batch-size must be in 1..10, got 11",
        ),
        (
            [*RUN, "--wait-time-seconds", "21"],
            "--wait-time-seconds must be in 0..20, got 21",
        ),
        (
            [*RUN, "--max-in-flight", "0"],
            "--max-in-flight must be in 1..100000, got 0",
        ),
        (["run", "--queue-url", URL], "one of --function-name or --handler is required"),
        (["run", "--queue-url", "not-a-url", "--function-name", "f"], "--queue-url must look like"),
        (["run", "--function-name", "f"], "--queue-url is required"),
        (
            ["run", "--queue-url", URL, "--function-name", "f", "--handler", "os:getcwd"],
            "not allowed with argument",
        ),
        (
            ["run", "--queue-url", URL, "--function-name", "f", "--invocation-type", "Sync"],
            "--invocation-type must be one of Event, RequestResponse, got 'Sync'",
        ),
        (
            ["run", "--queue-url", URL, "--function-name", "f", "--payload", "json"],
            "--payload must be one of seed, sqs-event",
        ),
        (
            ["run", "--queue-url", URL, "--function-name", "f", "--delete-by", "nobody"],
            "--delete-by must be one of consumer, worker",
        ),
        (
            ["run", "--queue-url", URL, "--handler", "no_such_module_xyz:f"],
            "handler module 'no_such_module_xyz' cannot be imported",
        ),
        (["run", "--queue-url", URL, "--handler", "os"], "handler must look like module:function"),
        (
            [*RUN, "--receivers", "many"],
            "argument --receivers: invalid int value: 'many'",
        ),
        (
            [*RUN, "--duration", "0"],
            "--duration must be a finite number >= 0.001, got 0.0",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("asyncloop: error: ")
    assert expected in err[0]


def test_flags_read_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the whole configuration in ASYNCLOOP_* variables, one of them invalid
    monkeypatch.setenv("ASYNCLOOP_QUEUE_URL", URL)
    monkeypatch.setenv("ASYNCLOOP_HANDLER", "os:getcwd")
    monkeypatch.setenv("ASYNCLOOP_BATCH_SIZE", "12")
    # WHEN run is given no flags THEN the variables were read (the bad one reported by name)
    assert main(["run"]) == 2
    assert "ASYNCLOOP_BATCH_SIZE must be in 1..10, got 12" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: asyncloop" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("asyncloop ")


def _refusal(
    argv: list[str],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> list[str]:
    """Run the command `argv` with the variables `env` set; check that it exited 2; its
    stderr lines (a usage error is one line)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    return capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def started_runs(monkeypatch: pytest.MonkeyPatch) -> list[ConsumerConfig]:
    """Replace the run itself (no AWS): each call records its config and returns empty stats."""
    runs: list[ConsumerConfig] = []

    async def fake_run(
        queue_url: str, consumer_config: ConsumerConfig, *args: object
    ) -> tuple[Stats, bool]:
        runs.append(consumer_config)
        return Stats(), False

    monkeypatch.setattr(_cli_run, "_run", fake_run)
    for name in [name for name in os.environ if name.startswith("ASYNCLOOP_")]:
        monkeypatch.delenv(name)
    return runs


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([*RUN, "--duration", "nan"], {}, "--duration must be a finite number >= 0.001, got nan"),
        ([*RUN, "--duration", "inf"], {}, "--duration must be a finite number >= 0.001, got inf"),
        (
            RUN,
            {"ASYNCLOOP_DURATION": "NaN"},
            "ASYNCLOOP_DURATION must be a finite number >= 0.001, got nan",
        ),
        (
            RUN,
            {"ASYNCLOOP_SHUTDOWN_GRACE": "nan"},
            "ASYNCLOOP_SHUTDOWN_GRACE must be in 0.0..3600.0, got nan",
        ),
        (
            RUN,
            {"ASYNCLOOP_ACK_FLUSH_TIMEOUT": "nan"},
            "ASYNCLOOP_ACK_FLUSH_TIMEOUT must be in 0.1..300.0, got nan",
        ),
        (
            RUN,
            {"ASYNCLOOP_ACK_FLUSH_TIMEOUT": "inf"},
            "ASYNCLOOP_ACK_FLUSH_TIMEOUT must be in 0.1..300.0, got inf",
        ),
        (
            RUN,
            {"ASYNCLOOP_FAILURE_BACKOFF_BASE": "nan"},
            "ASYNCLOOP_FAILURE_BACKOFF_BASE must be in 0.0..43200.0, got nan",
        ),
        (
            ["loop", "simulate", "--days", "0.01", "--fault-scale", "nan"],
            {},
            "--fault-scale must be a finite number >= 0.0, got nan",
        ),
        (
            ["loop", "simulate", "--days", "nan"],
            {},
            "--days must be in 0..3660, got nan",
        ),
    ],
)
def test_nan_and_inf_are_usage_errors(
    argv: list[str],
    env: dict[str, str],
    expected: str,
    started_runs: list[ConsumerConfig],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a float setting of NaN or inf, on the command line or in its variable
    # WHEN the command starts THEN exit 2 with the usual one line, and nothing ran
    lines = _refusal(argv, env, monkeypatch, capsys)
    assert lines == [f"asyncloop: error: {expected}"]
    assert started_runs == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"ASYNCLOOP_UNTIL_EMPTY": "maybe"},
            "ASYNCLOOP_UNTIL_EMPTY must be true or false (1/0, yes/no, on/off), got 'maybe'",
        ),
        (
            {"ASYNCLOOP_JSON": "sure"},
            "ASYNCLOOP_JSON must be true or false (1/0, yes/no, on/off), got 'sure'",
        ),
        (
            {"ASYNCLOOP_MAX_IN_FLIGHT": "abc"},
            "ASYNCLOOP_MAX_IN_FLIGHT must be an integer, got 'abc'",
        ),
        ({"ASYNCLOOP_MAX_IN_FLIGHT": "0"}, "ASYNCLOOP_MAX_IN_FLIGHT must be in 1..100000, got 0"),
        ({"ASYNCLOOP_DURATION": "soon"}, "ASYNCLOOP_DURATION must be a number, got 'soon'"),
        (
            {"ASYNCLOOP_SHUTDOWN_GRACE": "-5"},
            "ASYNCLOOP_SHUTDOWN_GRACE must be in 0.0..3600.0, got -5.0",
        ),
        (
            {"ASYNCLOOP_FAILURE_BACKOFF_BASE": "1000"},
            "ASYNCLOOP_FAILURE_BACKOFF_CAP must be >= ASYNCLOOP_FAILURE_BACKOFF_BASE (1000.0), "
            "got 900.0",
        ),
        (
            {"ASYNCLOOP_ENDPOINT_URL": "localhost:4566"},
            "ASYNCLOOP_ENDPOINT_URL must be an http(s) URL, got 'localhost:4566'",
        ),
        (
            {"ASYNCLOOP_LOG_LEVEL": "loud"},
            "ASYNCLOOP_LOG_LEVEL must be one of debug, info, warning, error, critical, got 'loud'",
        ),
        # a consumer field and an AWS client setting that have no flag: read all the same
        (
            {"ASYNCLOOP_FAILURE_BACKOFF_BASE": "soon"},
            "ASYNCLOOP_FAILURE_BACKOFF_BASE must be a number, got 'soon'",
        ),
        (
            {"ASYNCLOOP_CONNECT_TIMEOUT": "nan"},
            "ASYNCLOOP_CONNECT_TIMEOUT must be in 0.1..120.0, got nan",
        ),
    ],
)
def test_errors_from_variables_name_the_variable(
    env: dict[str, str],
    expected: str,
    started_runs: list[ConsumerConfig],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a bad value in a variable, and no flag for it on the command line
    # WHEN run starts
    lines = _refusal(RUN, env, monkeypatch, capsys)
    # THEN exit 2, one line naming the variable (never a flag that was not given, nor a field)
    assert lines == [f"asyncloop: error: {expected}"]
    assert started_runs == []


def test_a_flag_wins_over_a_bad_variable(
    started_runs: list[ConsumerConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a malformed variable, and its flag on the command line
    monkeypatch.setenv("ASYNCLOOP_MAX_IN_FLIGHT", "abc")
    # WHEN run starts THEN the flag is used and the variable never parsed
    assert main([*RUN, "--max-in-flight", "7"]) == 0
    assert [config.max_in_flight for config in started_runs] == [7]


def test_an_empty_run_says_no_messages_and_json_is_all_of_stdout(
    started_runs: list[ConsumerConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run that finds nothing to do
    # WHEN it ends with --json
    assert main([*RUN, "--until-empty", "--json"]) == 0
    out, err = capsys.readouterr()
    # THEN stdout is exactly one JSON object; the human summary went to stderr
    summary = json.loads(out)
    assert isinstance(summary, dict)
    assert summary["received"] == 0
    assert "no messages" in err
    assert "None" not in err

    # WHEN it ends without --json THEN the summary says "no messages", not None/None/None
    assert main([*RUN, "--until-empty"]) == 0
    out = capsys.readouterr().out
    assert "no messages" in out
    assert "None" not in out


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[DeploySpec]:
    """Replace the build and the deploy (no pip, no AWS): each deploy records its spec."""
    from asyncloop import _cli_deploy
    from asyncloop._deploy import deploy as deploy_module
    from asyncloop._deploy.package import PackageResult

    specs: list[DeploySpec] = []
    zip_path = tmp_path / "code.zip"

    def fake_build(args: object, output: Path) -> PackageResult:
        zip_path.write_bytes(b"PK")
        return PackageResult(
            path=zip_path,
            architecture="arm64",
            python_version="3.12",
            size=2,
            unzipped_size=0,
            files=0,
            sha256="0" * 64,
            largest=(),
        )

    async def fake_deploy(spec: DeploySpec, aws: object, **kwargs: object) -> DeployResult:
        specs.append(spec)
        return DeployResult(
            stack_name=spec.stack_name,
            stack_id="stack-1",
            action="created",
            status="CREATE_COMPLETE",
            outputs={"QueueUrl": URL},
            code_bucket="b",
            code_key="k",
        )

    monkeypatch.setattr(_cli_deploy, "_build", fake_build)
    monkeypatch.setattr(deploy_module, "deploy", fake_deploy)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return specs


DEPLOY = ["deploy", "--endpoint-url", "http://127.0.0.1:9", "--bucket", "code-bucket"]


def test_deploy_json_is_all_of_stdout(
    deployed: list[DeploySpec], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a deploy that builds its zip WHEN it reports with --json
    assert main([*DEPLOY, "--json"]) == 0
    out, err = capsys.readouterr()
    # THEN stdout parses as exactly one JSON object; the build's description is on stderr
    assert json.loads(out)["stack_name"] == "asyncloop"
    assert "sha256" in err


@pytest.mark.parametrize(
    ("given", "handler"),
    [
        ("myapp.jobs:handle", "myapp.jobs.handle"),
        ("worker:handle", "worker.handle"),
        ("myapp.jobs.handle", "myapp.jobs.handle"),
    ],
)
def test_deploy_worker_handler_takes_the_run_handler_form(
    given: str, handler: str, deployed: list[DeploySpec]
) -> None:
    # GIVEN a worker named as `run --handler` names it (or as Lambda does)
    # WHEN deployed THEN the stack gets Lambda's module.function
    assert main([*DEPLOY, "--worker-handler", given]) == 0
    assert [spec.parameters["WorkerHandler"] for spec in deployed] == [handler]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--worker-handler", "myworker"], "--worker-handler must look like module:function"),
        (["--worker-handler", "jobs:Worker.handle"], "--worker-handler must look like"),
        (["--worker-handler", "my-app:handle"], "--worker-handler must look like"),
        (["--worker-handler", "jobs:"], "--worker-handler must look like"),
        (["--parameter", "WorkerHandler=jobs"], "--parameter WorkerHandler must look like"),
    ],
)
def test_deploy_refuses_a_malformed_worker_handler(
    argv: list[str],
    expected: str,
    deployed: list[DeploySpec],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a worker handler Lambda could not load WHEN deploying
    code = main([*DEPLOY, *argv])
    # THEN exit 2 with one line, before anything was built or deployed
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"asyncloop: error: {expected}")
    assert deployed == []


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([*RUN, "--transport", "fast"], {}, "--transport must be one of sdk, lean, got 'fast'"),
        (
            RUN,
            {"ASYNCLOOP_TRANSPORT": "fast"},
            "ASYNCLOOP_TRANSPORT must be one of sdk, lean, got 'fast'",
        ),
    ],
)
def test_a_bad_transport_is_a_usage_error_naming_the_flag_or_variable(
    argv: list[str],
    env: dict[str, str],
    expected: str,
    started_runs: list[ConsumerConfig],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a transport that does not exist, on the command line or in its variable
    # WHEN the command starts THEN exit 2 with one line naming what the user set, and nothing ran
    lines = _refusal(argv, env, monkeypatch, capsys)
    assert lines == [f"asyncloop: error: {expected}"]
    assert started_runs == []


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (RUN, {}, "lean"),
        ([*RUN, "--transport", "sdk"], {}, "sdk"),
        (RUN, {"ASYNCLOOP_TRANSPORT": "sdk"}, "sdk"),
        ([*RUN, "--transport", "lean"], {"ASYNCLOOP_TRANSPORT": "sdk"}, "lean"),
    ],
)
def test_the_transport_reaches_the_runs_aws_config(
    argv: list[str], env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a run that records its AwsConfig instead of running
    configs: list[AwsConfig] = []

    async def fake_run(
        queue_url: str, consumer_config: ConsumerConfig, aws_config: AwsConfig, *args: object
    ) -> tuple[Stats, bool]:
        configs.append(aws_config)
        return Stats(), False

    monkeypatch.setattr(_cli_run, "_run", fake_run)
    for name in [name for name in os.environ if name.startswith("ASYNCLOOP_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # WHEN the command runs
    assert main(argv) == 0
    # THEN the flag, else its variable, else the default lean picked the transport
    assert [config.transport for config in configs] == [expected]
