"""The lean signer against botocore's: same canonical request, same Authorization header.

For the same inputs (method, URL, headers, body, credentials) at a fixed clock, the lean
`SigV4Signer` and botocore's ``SigV4Auth`` must agree byte for byte: an SQS JSON POST and a
Lambda Invoke whose function name needs URL-quoting, with and without a session token. And
the requests the lean path builds carry what botocore's own client serializes for the call
(path, ``X-Amz-Target``, ``Content-Type``, the JSON body's fields).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from asyncloop._lean.lambda_ import invoke_path
from asyncloop._lean.signing import Credentials, SigV4Signer

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
REGION = "eu-west-1"
ARN_WITH_ALIAS = "arn:aws:lambda:eu-west-1:123456789012:function:my-fn:live"


def _sqs_case() -> tuple[str, str, str, dict[str, str], bytes]:
    body = json.dumps({"QueueUrl": "https://sqs.eu-west-1.amazonaws.com/1/q", "x": "é"})
    headers = {
        "X-Amz-Target": "AmazonSQS.ReceiveMessage",
        "Content-Type": "application/x-amz-json-1.0",
        "User-Agent": "asyncloop/0 (lean)",
    }
    return "sqs", "https://sqs.eu-west-1.amazonaws.com", "/", headers, body.encode()


def _lambda_case() -> tuple[str, str, str, dict[str, str], bytes]:
    headers = {"X-Amz-Invocation-Type": "Event", "User-Agent": "asyncloop/0 (lean)"}
    path = invoke_path(ARN_WITH_ALIAS)
    return "lambda", "https://lambda.eu-west-1.amazonaws.com", path, headers, b'{"a": [1, 2]}'


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"], ids=["keys", "token"])
@pytest.mark.parametrize("case", [_sqs_case, _lambda_case], ids=["sqs-json", "lambda-invoke"])
def test_lean_signature_equals_botocores(case: Any, token: str | None) -> None:
    # GIVEN one request and one set of credentials, at a fixed clock
    service, endpoint, path, headers, body = case()
    keys = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)

    # WHEN botocore signs it
    request = AWSRequest("POST", endpoint + path, headers=dict(headers), data=body)
    boto_signer = SigV4Auth(ReadOnlyCredentials(*keys), service, REGION)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        boto_signer.add_auth(request)
    boto_canonical = boto_signer.canonical_request(request)

    # AND the lean signer signs it
    lean = SigV4Signer(service=service, region=REGION)
    signed = lean.sign(
        method="POST",
        host=endpoint.split("://")[1],
        path=path,
        headers=headers,
        body=body,
        credentials=Credentials(*keys),
        now=NOW,
    )
    lean_canonical, _ = lean.canonical_request(method="POST", path=path, headers=signed, body=body)

    # THEN the canonical requests, dates, tokens and Authorization headers are identical
    assert lean_canonical == boto_canonical
    assert signed["Authorization"] == request.headers["Authorization"]
    assert signed["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert signed.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")
    # (the quoted name is encoded twice in the canonical request, once on the wire)
    if service == "lambda":
        assert "my-fn%3Alive" in path
        assert "my-fn%253Alive" in lean_canonical


def test_the_signing_key_follows_the_secret() -> None:
    # GIVEN a signer that signed with one secret
    lean = SigV4Signer(service="sqs", region=REGION)
    args: dict[str, Any] = {"method": "POST", "host": "h", "path": "/", "headers": {}, "body": b""}
    first = lean.sign(**args, credentials=Credentials("AK", "secret-1"), now=NOW)
    # WHEN the credentials rotate
    second = lean.sign(**args, credentials=Credentials("AK", "secret-2"), now=NOW)
    # THEN the signature changes with them (no stale key is reused)
    assert first["Authorization"] != second["Authorization"]


def test_one_signer_follows_the_clock_and_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN one signer used for request after request (it keeps the date per second and the
    # encoded path per path), at instants a second apart across midnight, on two paths
    lean = SigV4Signer(service="lambda", region=REGION)
    keys = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None)
    midnight = datetime(2025, 3, 5, tzinfo=UTC)
    steps = [
        (midnight - timedelta(seconds=1), invoke_path("fn-a")),
        (midnight - timedelta(seconds=1), invoke_path(ARN_WITH_ALIAS)),
        (midnight, invoke_path(ARN_WITH_ALIAS)),
        (midnight + timedelta(seconds=1.5), invoke_path("fn-a")),
    ]
    for instant, path in steps:
        # WHEN it signs with the system clock at `instant`, and botocore signs the same
        monkeypatch.setattr(time, "time", lambda instant=instant: instant.timestamp())
        signed = lean.sign(
            method="POST",
            host="lambda.eu-west-1.amazonaws.com",
            path=path,
            headers={"X-Amz-Invocation-Type": "Event"},
            body=b"{}",
            credentials=Credentials(*keys),
        )
        request = AWSRequest(
            "POST",
            "https://lambda.eu-west-1.amazonaws.com" + path,
            headers={"X-Amz-Invocation-Type": "Event"},
            data=b"{}",
        )
        boto_now = instant.replace(tzinfo=None, microsecond=0)
        with mock.patch("botocore.auth.get_current_datetime", return_value=boto_now):
            SigV4Auth(ReadOnlyCredentials(*keys), "lambda", REGION).add_auth(request)
        # THEN every request carries that second's date and botocore's signature for its path
        assert signed["X-Amz-Date"] == request.headers["X-Amz-Date"]
        assert signed["Authorization"] == request.headers["Authorization"]


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def _botocore_request(service: str, operation: str, **params: Any) -> Any:
    import botocore.session

    session = botocore.session.get_session()
    client = session.create_client(
        service,
        region_name=REGION,
        aws_access_key_id="AK",
        aws_secret_access_key="SK",
    )

    def capture(request: Any, **_: Any) -> None:
        raise _Captured(request)

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Captured) as caught:
        getattr(client, operation)(**params)
    return caught.value.request


def test_the_lean_requests_carry_what_botocore_serializes() -> None:
    from asyncloop._lean.sqs import _headers

    # WHEN botocore's client serializes an SQS receive and a Lambda Invoke by ARN
    sqs = _botocore_request(
        "sqs",
        "receive_message",
        QueueUrl="https://sqs.eu-west-1.amazonaws.com/1/q",
        MaxNumberOfMessages=10,
        WaitTimeSeconds=20,
        MessageSystemAttributeNames=["All"],
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    invoke = _botocore_request(
        "lambda", "invoke", FunctionName=ARN_WITH_ALIAS, InvocationType="Event", Payload=b"{}"
    )

    # THEN the lean path's headers and paths are botocore's
    def text(value: str | bytes) -> str:
        # botocore keeps some header values as bytes
        return value.decode() if isinstance(value, bytes) else value

    for name, value in _headers("ReceiveMessage").items():
        assert text(sqs.headers[name]) == value
    assert sqs.url == "https://sqs.eu-west-1.amazonaws.com/"
    assert json.loads(sqs.body)["MessageSystemAttributeNames"] == ["All"]
    assert invoke.url == "https://lambda.eu-west-1.amazonaws.com" + invoke_path(ARN_WITH_ALIAS)
    assert text(invoke.headers["X-Amz-Invocation-Type"]) == "Event"


@pytest.mark.parametrize("token", [None, "tok en"], ids=["keys", "token"])
def test_a_prepared_shape_signs_as_botocore_for_any_header_set(token: str | None) -> None:
    # GIVEN headers in mixed case with runs of whitespace, one botocore never signs, and
    # names that sort before, between and after x-amz-date and x-amz-security-token
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "  AmazonSQS.ReceiveMessage ",
        "x-amz-Invocation-Type": "Event",
        "Zeta": "a   b\tc",
        "User-Agent": "not signed",
    }
    keys = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    lean = SigV4Signer(service="sqs", region=REGION)
    shape = lean.shape(method="POST", host="sqs.eu-west-1.amazonaws.com", path="/", headers=headers)
    request = AWSRequest(
        "POST", "https://sqs.eu-west-1.amazonaws.com/", headers=dict(headers), data=b"{}"
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        SigV4Auth(ReadOnlyCredentials(*keys), "sqs", REGION).add_auth(request)
    # WHEN the shape signs two bodies, the second the one botocore signed
    shape.signature(b'{"other": 1}', Credentials(*keys), now=NOW)
    amz_date, sent_token, authorization = shape.signature(b"{}", Credentials(*keys), now=NOW)
    # THEN the signature is botocore's, and the fixed headers go out as given, Host first
    assert authorization == request.headers["Authorization"]
    assert (amz_date, sent_token) == (request.headers["X-Amz-Date"], token)
    assert list(shape.headers) == ["Host", *headers]


def test_a_shape_refuses_headers_set_per_request() -> None:
    lean = SigV4Signer(service="sqs", region=REGION)
    # WHEN a shape is given a header the signature sets THEN it is refused
    for name in ("host", "X-Amz-Date", "Authorization", "X-Amz-Security-Token"):
        with pytest.raises(ValueError, match="per request"):
            lean.shape(method="POST", host="h", path="/", headers={name: "x"})
