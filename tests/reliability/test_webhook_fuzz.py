"""Fuzzing the webhook handler: never a 5xx, never a started sync for invalid input."""

from __future__ import annotations

import json
from base64 import b64encode
from collections.abc import Iterator
from typing import Any

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
bodies = (
    st.text(max_size=300)
    | st.binary(max_size=200).map(lambda raw: raw.decode("latin-1"))
    | json_values.map(json.dumps)
    | event_like.map(json.dumps)
)
tokens = st.sampled_from([TOKEN, None, "", TOKEN.upper(), TOKEN[:-1]]) | st.text(max_size=40)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "", None, "application/cloudevents+json"]
) | st.text(max_size=20)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, token=tokens, content_type=content_types, in_header=st.booleans(), base64=st.booleans())
def test_webhook_never_fails_and_never_starts_a_sync_for_invalid_input(
    webhook_app: Any,
    body: str,
    token: str | None,
    content_type: str | None,
    in_header: bool,
    base64: bool,
) -> None:
    recorder = RecordingLambda()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aws_clients, "lambda_client", lambda: recorder)
        response = _deliver(webhook_app, body, token, content_type, in_header=in_header, base64=base64)
    assert response["statusCode"] < 500, response
    valid = token == TOKEN and is_json_content_type(content_type) and _sync_now(body)
    if recorder.invocations:
        assert valid, (body, token, content_type)
        assert response["statusCode"] == 202
    if token != TOKEN:
        assert response["statusCode"] == 401


def _deliver(
    app: Any, body: str, token: str | None, content_type: str | None, *, in_header: bool, base64: bool
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
    if base64:
        event["body"] = b64encode(body.encode("utf-8", "surrogatepass")).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = body

    response: dict[str, Any] = app.lambda_handler(
        event, LambdaContext("webhook", "arn:aws:lambda:::function:webhook", 256, 10)
    )
    return response


def _sync_now(body: str) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and api_assumptions.is_sync_now_event(data, APP) and bool(data.get("entityId"))
