"""The lean signer against botocore's: same canonical request, same Authorization header.

For the same inputs (method, URL, headers, body, credentials) at a fixed clock, the lean
`SigV4Signer` and botocore's ``SigV4Auth`` must agree byte for byte, with and without a
session token: an SQS JSON POST (a non-ASCII body), Lambda Invokes whose function name needs
URL-quoting (an ARN with an alias, a ``$LATEST`` qualifier, a name with non-ASCII characters
and a space, which Lambda refuses but the encoding must survive), an endpoint with a port and
a base path (as an emulator or a proxy has), and header values with runs of whitespace. The
lean transport sends no query string (both calls are a POST with a body), so the canonical
query is empty on both sides. The signer also follows the clock across midnight and rotated
secrets. On the wire: the requests `LeanTransport` really sends, captured by a local server,
carry a signature botocore computes again from the received method, path, signed headers and
body, as AWS verifies it, and sign the same header names botocore's own clients sign for the
same calls. And the requests the lean path builds carry what botocore's own client
serializes for the call (path, ``X-Amz-Target``, ``Content-Type``, the JSON body's fields).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import pytest_asyncio
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from asyncloop._lean.lambda_ import invoke_path
from asyncloop._lean.signing import Credentials, SigV4Signer
from asyncloop.testing._loopback import serve_on_loopback

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
REGION = "eu-west-1"
ARN_WITH_ALIAS = "arn:aws:lambda:eu-west-1:123456789012:function:my-fn:live"


Case = tuple[str, str, str, dict[str, str], bytes]
_SQS_HEADERS = {
    "X-Amz-Target": "AmazonSQS.ReceiveMessage",
    "Content-Type": "application/x-amz-json-1.0",
    "User-Agent": "asyncloop/0 (lean)",
}


def _sqs_case() -> Case:
    body = json.dumps({"QueueUrl": "https://sqs.eu-west-1.amazonaws.com/1/q", "x": "é"})
    return "sqs", "https://sqs.eu-west-1.amazonaws.com", "/", _SQS_HEADERS, body.encode()


def _sqs_local_case() -> Case:
    # An endpoint with a port and a base path: the Host keeps the port, the path the base
    body = json.dumps({"QueueUrl": "http://127.0.0.1:4566/base/1/q"}, ensure_ascii=False)
    return "sqs", "http://127.0.0.1:4566", "/base/", _SQS_HEADERS, body.encode()


def _lambda_case() -> Case:
    headers = {"X-Amz-Invocation-Type": "Event", "User-Agent": "asyncloop/0 (lean)"}
    path = invoke_path(ARN_WITH_ALIAS)
    return "lambda", "https://lambda.eu-west-1.amazonaws.com", path, headers, b'{"a": [1, 2]}'


def _lambda_latest_case() -> Case:
    headers = {"X-Amz-Invocation-Type": "RequestResponse", "User-Agent": "asyncloop/0 (lean)"}
    path = invoke_path("my-fn:$LATEST")
    return "lambda", "https://lambda.eu-west-1.amazonaws.com", path, headers, b"{}"


def _lambda_unicode_case() -> Case:
    # Values with runs of whitespace: both sides trim and collapse them
    headers = {"X-Amz-Invocation-Type": "  Event ", "User-Agent": "asyncloop/0   (lean)\tx"}
    path = "/base" + invoke_path("fn é/ü x")
    return "lambda", "http://localhost:9001", path, headers, '{"é": 1}'.encode()


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"], ids=["keys", "token"])
@pytest.mark.parametrize(
    "case",
    [_sqs_case, _sqs_local_case, _lambda_case, _lambda_latest_case, _lambda_unicode_case],
    ids=["sqs-json", "sqs-port-base-path", "lambda-arn-alias", "lambda-latest", "lambda-unicode"],
)
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
    # (a quoted name is encoded twice in the canonical request, once on the wire)
    if case is _lambda_case:
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


def _botocore_request(
    service: str, operation: str, *, token: str | None = None, **params: Any
) -> Any:
    import botocore.session

    session = botocore.session.get_session()
    client = session.create_client(
        service,
        region_name=REGION,
        aws_access_key_id="AK",
        aws_secret_access_key="SK",
        aws_session_token=token,
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


@dataclass
class _Received:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes


async def _capturing_server(received: list[_Received]) -> tuple[web.AppRunner, str]:
    # Answers ReceiveMessage with no message and an Invoke with 202, keeping every request
    async def handle(request: web.Request) -> web.Response:
        received.append(
            _Received(request.method, request.raw_path, dict(request.headers), await request.read())
        )
        if "X-Amz-Target" in request.headers:
            return web.json_response({}, content_type="application/x-amz-json-1.0")
        return web.Response(status=202)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return await serve_on_loopback(app)


def _signed_names(headers: Mapping[str, str | bytes]) -> list[str]:
    authorization = headers["Authorization"]
    if isinstance(authorization, bytes):  # botocore keeps it as bytes
        authorization = authorization.decode()
    return authorization.split("SignedHeaders=")[1].split(",")[0].split(";")


def _verify_as_aws(
    request: _Received, endpoint: str, keys: tuple[str, str, str | None], service: str
) -> tuple[str, str]:
    """botocore's Authorization for the received request (its signed headers as received,
    its X-Amz-Date as the clock), and the one it came with."""
    authorization = request.headers["Authorization"]
    signed_names = _signed_names(request.headers)
    headers = {k: v for k, v in request.headers.items() if k.lower() in signed_names}
    again = AWSRequest(
        request.method, endpoint + request.raw_path, headers=headers, data=request.body
    )
    when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(ReadOnlyCredentials(*keys), service, "us-east-1").add_auth(again)
    return again.headers["Authorization"], authorization


@dataclass
class _Wire:
    """What `LeanTransport` sent (a receive, a delete batch, an Invoke) to `url`."""

    url: str
    base_path: str
    keys: tuple[str, str, str | None]
    received: list[_Received]

    @property
    def queue_url(self) -> str:
        return f"{self.url}/123456789012/jobs"


_FUNCTION = "my-fn:$LATEST"  # a name whose ':' and '$' need quoting


@pytest_asyncio.fixture(
    params=[(None, ""), ("session-token/with+odd=chars", "/base")],
    ids=["keys-root", "token-base-path"],
)
async def wire(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> _Wire:
    import aioboto3
    from aiobotocore.config import AioConfig

    from asyncloop._lean import LeanTransport

    # SDK clients with fixed keys (a session token or none) on a local endpoint (at its root,
    # or under a base path) that records what arrives; nothing read from the machine
    token, base_path = request.param
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_LAMBDA",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    keys = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    received: list[_Received] = []
    runner, url = await _capturing_server(received)
    endpoint = url + base_path
    # (the lean transport retries as botocore's standard mode only, as AwsClients sets it)
    config = AioConfig(retries={"mode": "standard"})
    session = aioboto3.Session(
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        aws_session_token=keys[2],
        region_name="us-east-1",
    )
    wire = _Wire(url, base_path, keys, received)
    try:
        async with (
            session.client("sqs", endpoint_url=endpoint, config=config) as sqs,
            session.client("lambda", endpoint_url=endpoint, config=config) as lambda_,
            LeanTransport(sqs_client=sqs, lambda_client=lambda_) as lean,
        ):
            queue = lean.queue(wire.queue_url)
            await queue.receive(max_messages=10, wait_time_seconds=0)
            await queue.delete_batch([("a", "receipt-é")])
            await lean.invoker().invoke(
                function_name=_FUNCTION, payload='{"x": "é"}'.encode(), invocation_type="Event"
            )
    finally:
        await runner.cleanup()
    return wire


@pytest.mark.asyncio
async def test_what_the_lean_transport_sends_verifies_as_aws_would(wire: _Wire) -> None:
    # GIVEN the requests the lean transport sent: a receive, a delete batch, an Invoke
    base = wire.base_path
    assert [r.raw_path for r in wire.received] == [
        f"{base}/",
        f"{base}/",
        f"{base}/2015-03-31/functions/my-fn%3A%24LATEST/invocations",
    ]
    for request, service in zip(wire.received, ["sqs", "sqs", "lambda"], strict=True):
        # WHEN botocore signs again what arrived: the method, path, signed headers, body
        expected, actual = _verify_as_aws(request, wire.url, wire.keys, service)
        # THEN it is the signature the request came with, the token sent when there is one
        assert actual == expected
        assert request.headers.get("X-Amz-Security-Token") == wire.keys[2]


@pytest.mark.asyncio
async def test_the_lean_transport_signs_the_headers_botocore_signs(wire: _Wire) -> None:
    # GIVEN the requests the lean transport sent
    # WHEN botocore's own clients serialize and sign the same three calls
    token = wire.keys[2]
    sdk = [
        _botocore_request("sqs", "receive_message", token=token, QueueUrl=wire.queue_url),
        _botocore_request(
            "sqs",
            "delete_message_batch",
            token=token,
            QueueUrl=wire.queue_url,
            Entries=[{"Id": "a", "ReceiptHandle": "receipt-é"}],
        ),
        _botocore_request(
            "lambda", "invoke", token=token, FunctionName=_FUNCTION, InvocationType="Event"
        ),
    ]
    # THEN both sign the same headers (so a header botocore sends, the lean path sends too)
    lean_names = [_signed_names(r.headers) for r in wire.received]
    assert lean_names == [_signed_names(r.headers) for r in sdk]


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
