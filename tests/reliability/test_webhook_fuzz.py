"""Fuzzing the webhook handler: never a 5xx, never a started sync for invalid input.

Bodies are text or any bytes, delivered in each way an event can carry them: as text (bytes that are not
UTF-8 as lone surrogates, which a `\\udcff` escape in the event's JSON gives), base64-encoded
(`isBase64Encoded`), or flagged as base64 without being base64."""

from __future__ import annotations

import binascii
import json
from base64 import b64decode, b64encode
from collections.abc import Iterator
from typing import Any, Literal

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from offline.lambda_runtime import LambdaContext
from people_sync import api_assumptions, aws_clients
from people_sync.webhook_rules import is_json_content_type
from tests.conftest import load_event

TOKEN = "fuzz-webhook-token"
APP = "people-sync"


class RecordingLambda:
    def __init__(self) -> None:
        self.invocations: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.invocations.append(kwargs)
        return {"StatusCode": 202}


@pytest.fixture(scope="module")
def webhook_app() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for key, value in {
            "CHARTHOP_APP_NAME": APP,
            "CHARTHOP_ORG_ID": "org",
            "IMPORT_STARTER_FUNCTION": "starter",
            "WEBHOOK_TOKEN_SECRET": "webhook-token",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_METRICS_NAMESPACE": "Fuzz",
            "POWERTOOLS_SERVICE_NAME": "people-sync",
        }.items():
            patch.setenv(key, value)
        boto3.client("secretsmanager").create_secret(Name="webhook-token", SecretString=TOKEN)
        aws_clients.reset()
        from functions.webhook import app

        yield app
        aws_clients.reset()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from([f"process.create.{APP}", "process.create.other", "CREATE", "job.update", ""])
        | st.text(max_size=30),
        "entityType": st.sampled_from(["PROCESS", "JOB", ""]) | st.text(max_size=10),
        "entityId": st.text(max_size=30) | st.none() | st.integers(),
        "appName": st.sampled_from([APP, "other"]) | st.none(),
        "orgId": st.text(max_size=30) | st.none(),
        "code": st.sampled_from(["process.create", None]),
        "payload": json_values,
    },
)
Body = str | bytes
Encoding = Literal["text", "base64", "not-base64"]
bodies: st.SearchStrategy[Body] = (
    st.text(max_size=300)
    | st.binary(max_size=200).map(lambda raw: raw.decode("latin-1"))
    | st.binary(max_size=200)
    | json_values.map(json.dumps)
    | event_like.map(json.dumps)
    | event_like.map(lambda event: json.dumps(event, ensure_ascii=False).encode("utf-16"))
    | event_like.map(lambda event: json.dumps(event, ensure_ascii=False).encode("latin-1", "replace"))
)
encodings: st.SearchStrategy[Encoding] = st.sampled_from(["text", "base64", "not-base64"])
tokens = st.sampled_from([TOKEN, None, "", TOKEN.upper(), TOKEN[:-1]]) | st.text(max_size=40)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "", None, "application/cloudevents+json"]
) | st.text(max_size=20)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, token=tokens, content_type=content_types, in_header=st.booleans(), encoding=encodings)
def test_webhook_never_fails_and_never_starts_a_sync_for_invalid_input(
    webhook_app: Any,
    body: Body,
    token: str | None,
    content_type: str | None,
    in_header: bool,
    encoding: Encoding,
) -> None:
    recorder = RecordingLambda()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws_clients, "lambda_client", lambda: recorder)
        response = _deliver(webhook_app, body, token, content_type, in_header=in_header, encoding=encoding)
    assert response["statusCode"] < 500, response
    text = _delivered_text(body, encoding)
    valid = token == TOKEN and is_json_content_type(content_type) and text is not None and _sync_now(text)
    if recorder.invocations:
        assert valid, (body, token, content_type)
        assert response["statusCode"] == 202
    if token != TOKEN:
        assert response["statusCode"] == 401


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | bodies, encoding=encodings)
def test_any_bytes_with_a_valid_token_are_answered_without_a_5xx(
    webhook_app: Any, body: Body, encoding: Encoding
) -> None:
    """Whatever the bytes (issue 11 item 15): a body that is not UTF-8 (or not base64) is the sender's 400."""
    recorder = RecordingLambda()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws_clients, "lambda_client", lambda: recorder)
        response = _deliver(webhook_app, body, TOKEN, "application/json", in_header=True, encoding=encoding)
    assert response["statusCode"] < 500, response
    if _delivered_text(body, encoding) is None:
        assert response["statusCode"] == 400, response
        assert recorder.invocations == []


def _deliver(
    app: Any, body: Body, token: str | None, content_type: str | None, *, in_header: bool, encoding: Encoding
) -> dict[str, Any]:
    event = load_event("webhook_sync_now.json")
    headers: dict[str, str] = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if token is not None and in_header:
        headers["X-People-Sync-Token"] = token
    event["headers"] = headers
    event["multiValueHeaders"] = {key: [value] for key, value in headers.items()}
    event["queryStringParameters"] = {"token": token} if token is not None and not in_header else None
    if encoding == "base64":
        event["body"] = b64encode(_bytes(body)).decode()
    elif isinstance(body, bytes):
        event["body"] = body.decode("utf-8", "surrogateescape")
    else:
        event["body"] = body
    event["isBase64Encoded"] = encoding != "text"

    response: dict[str, Any] = app.lambda_handler(
        event, LambdaContext("webhook", "arn:aws:lambda:::function:webhook", 256, 10)
    )
    return response


def _bytes(body: Body) -> bytes:
    """The bytes a sender sent: text as UTF-8 (lone surrogates kept, so they stay invalid UTF-8)."""
    return body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")


def _delivered_text(body: Body, encoding: Encoding) -> str | None:
    """The body the handler should read, or None when it is not UTF-8 (or flagged base64 but is not)."""
    raw = _bytes(body)
    if encoding == "not-base64":
        try:
            raw = b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _sync_now(body: str) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and api_assumptions.is_sync_now_event(data, APP) and bool(data.get("entityId"))
