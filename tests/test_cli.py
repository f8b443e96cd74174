"""The CLI's argument contract: exit 2 with one clear line for bad arguments or config."""

from __future__ import annotations

import pytest

from asyncloop._cli import main

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["run", "--queue-url", URL, "--handler", "os:getcwd", "--batch-size", "11"],
            "--batch-size must be in 1..10, got 11",
        ),
        (
            ["run", "--queue-url", URL, "--handler", "os:getcwd", "--wait-time-seconds", "21"],
            "--wait-time-seconds must be in 0..20, got 21",
        ),
        (
            ["run", "--queue-url", URL, "--handler", "os:getcwd", "--max-in-flight", "0"],
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
            ["run", "--queue-url", URL, "--handler", "os:getcwd", "--receivers", "many"],
            "argument --receivers: invalid int value: 'many'",
        ),
        (
            ["run", "--queue-url", URL, "--handler", "os:getcwd", "--duration", "0"],
            "--duration must be in >= 0.001, got 0.0",
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
    # WHEN run is given no flags THEN the variables were read (the bad one reported)
    assert main(["run"]) == 2
    assert "--batch-size must be in 1..10, got 12" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: asyncloop" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("asyncloop ")


def test_fields_without_a_flag_come_from_their_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a consumer field that has no flag, set to a bad value in its variable
    monkeypatch.setenv("ASYNCLOOP_FAILURE_BACKOFF_BASE", "soon")
    # WHEN run starts THEN the variable was read, and reported by name
    assert main(["run", "--queue-url", URL, "--handler", "os:getcwd"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "asyncloop: error: ASYNCLOOP_FAILURE_BACKOFF_BASE must be a float, got 'soon'"
