"""Thin handlers: events in events/ parse, the webhook acknowledges fast and hands off asynchronously."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from offline.lambda_runtime import LambdaContext
from people_sync import aws_clients
from people_sync.models import LoopTaskEvent, SyncNowRequest, SyncState
from tests.conftest import load_event

IMPORT_STARTER = "people-sync-ImportStarterFunction"


def context(name: str) -> LambdaContext:
    return LambdaContext(name, f"arn:aws:lambda:us-east-1:123456789012:function:{name}", 256, 30)


WEBHOOK_TOKEN = "unit-webhook-token"


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Stubber]]:
    monkeypatch.setenv("CHARTHOP_APP_NAME", "people-sync")
    monkeypatch.setenv("CHARTHOP_ORG_ID", "588f7ee98f138b19220041a7")
    monkeypatch.setenv("IMPORT_STARTER_FUNCTION", IMPORT_STARTER)
    monkeypatch.setenv("WEBHOOK_TOKEN_SECRET", "webhook-token")
    from functions.webhook import app

    with mock_aws():
        boto3.client("secretsmanager").create_secret(Name="webhook-token", SecretString=WEBHOOK_TOKEN)
        aws_clients.reset()
        with Stubber(aws_clients.lambda_client()) as stubber:
            yield app, stubber
            stubber.assert_no_pending_responses()
        aws_clients.reset()


def call(app: ModuleType, event: dict[str, Any], *, token: str | None = WEBHOOK_TOKEN) -> dict[str, Any]:
    if token is not None:
        event = {**event, "queryStringParameters": {"token": token}}
    response: dict[str, Any] = app.lambda_handler(event, context("webhook"))
    return response


def test_sync_now_is_acknowledged_and_handed_to_the_import_starter(webhook) -> None:
    app, stubber = webhook
    event = load_event("webhook_sync_now.json")
    sync_id = json.loads(event["body"])["entityId"]
    expected = SyncNowRequest(
        org_id="588f7ee98f138b19220041a7",
        sync_process_id=sync_id,
        app_id="64b0c0ffee64b0c0ffee0001",
        requested_by="64b0c0ffee64b0c0ffee0003",
    )
    stubber.add_response(
        "invoke",
        {"StatusCode": 202},
        {
            "FunctionName": IMPORT_STARTER,
            "InvocationType": "Event",
            "Payload": json.dumps(expected.to_json_dict()).encode(),
        },
    )
    response = call(app, event)
    assert response["statusCode"] == 202
    # requested, not started: the import starter runs asynchronously and may still refuse it
    assert json.loads(response["body"]) == {"accepted": True, "action": "sync-requested", "syncProcessId": sync_id}


def test_other_events_are_acknowledged_and_ignored(webhook) -> None:
    app, _ = webhook  # the stubber has no responses: any Lambda call would fail the test
    response = call(app, load_event("webhook_other_event.json"))
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["action"] == "ignored"


@pytest.mark.parametrize(
    "payload_change",
    [
        {"options": {"createdBy": "people-sync", "trigger": "upload", "source": "s3://b/k"}},
        {"parentProcessId": "6553f1a2b3c4d5e6f7a8b9aa", "type": "import"},
    ],
    ids=["own upload process", "child import process"],
)
def test_an_echo_of_our_own_process_is_answered_200_and_starts_nothing(webhook, payload_change) -> None:
    app, _ = webhook  # the stubber has no responses: handing the echo to the import starter would fail the test
    event = load_event("webhook_sync_now.json")
    body = json.loads(event["body"])
    body["payload"] = {**body["payload"], **payload_change}
    event["body"] = json.dumps(body)
    response = call(app, event)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {
        "accepted": True,
        "action": "ignored",
        "reason": "echo",
        "syncProcessId": body["entityId"],
    }


@pytest.mark.parametrize("body", ["{not json", json.dumps({"no": "type"}), json.dumps([1, 2]), ""])
def test_bodies_that_are_not_charthop_events_are_400(webhook, body: str) -> None:
    app, _ = webhook
    event = load_event("webhook_sync_now.json")
    event["body"] = body
    response = call(app, event)
    assert response["statusCode"] == 400


NOT_UTF8 = b'{"type": "process.create.people-sync", "name": "caf\xe9"}'


@pytest.mark.parametrize(
    ("body", "base64_encoded", "message"),
    [
        (base64.b64encode(NOT_UTF8).decode(), True, "body is not UTF-8 JSON"),
        (base64.b64encode(b"\xff\xfe{}").decode(), True, "body is not UTF-8 JSON"),
        (NOT_UTF8.decode("utf-8", "surrogateescape"), False, "body is not UTF-8 JSON"),  # "\udce9" in the event JSON
        ('{"type": "\ud800"}', False, "body is not UTF-8 JSON"),
        ("e30", True, "body is not valid base64"),  # padding missing
        ("{not base64}", True, "body is not valid base64"),
    ],
)
def test_bodies_that_are_not_utf8_or_not_base64_are_400(webhook, body: str, base64_encoded: bool, message: str) -> None:
    app, _ = webhook  # no Lambda response queued: a started sync would fail the test
    event = load_event("webhook_sync_now.json")
    event["body"] = body
    event["isBase64Encoded"] = base64_encoded
    response = call(app, event)
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["message"] == message


def test_a_base64_encoded_sync_now_is_accepted(webhook) -> None:
    app, stubber = webhook
    stubber.add_response("invoke", {"StatusCode": 202})
    event = load_event("webhook_sync_now.json")
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    response = call(app, event)
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["action"] == "sync-requested"


def test_other_paths_are_404(webhook) -> None:
    app, _ = webhook
    event = load_event("webhook_sync_now.json")
    event["path"] = event["resource"] = "/elsewhere"
    assert call(app, event)["statusCode"] == 404


def test_handoff_failure_is_a_5xx_so_charthop_redelivers(webhook) -> None:
    app, stubber = webhook
    stubber.add_client_error(
        "invoke",
        service_error_code="TooManyRequestsException",
        http_status_code=429,
        expected_params={"FunctionName": IMPORT_STARTER, "InvocationType": "Event", "Payload": ANY},
    )
    with pytest.raises(Exception, match="TooManyRequests"):
        call(app, load_event("webhook_sync_now.json"))


@pytest.mark.parametrize("name", ["sync_finalizer.json", "sync_finalizer_workflow_error.json"])
def test_state_machine_sample_events_are_valid_sync_states(name: str) -> None:
    state = SyncState.model_validate(load_event(name))
    assert state.file.name == "roster.csv"


def test_status_checker_sample_event_is_a_loop_task() -> None:
    task = LoopTaskEvent.model_validate(load_event("status_checker.json"))
    assert task.state.file.name == "roster.csv"
    assert task.task_token


def test_import_starter_sample_events_match_their_models() -> None:
    assert SyncNowRequest.model_validate(load_event("import_starter_sync_now.json")).sync_process_id
    record = load_event("s3_put.json")["Records"][0]
    assert record["s3"]["object"]["key"].startswith("staging/")


@pytest.mark.parametrize("token", [None, "", "unit-webhook-toke", "unit-webhook-token ", "UNIT-WEBHOOK-TOKEN"])
def test_wrong_or_missing_token_is_401(webhook, token: str | None) -> None:
    app, _ = webhook  # no Lambda response queued: a started sync would fail the test
    response = call(app, load_event("webhook_sync_now.json"), token=token)
    assert response["statusCode"] == 401


def test_token_may_come_in_a_header(webhook) -> None:
    app, stubber = webhook
    stubber.add_response("invoke", {"StatusCode": 202})
    event = load_event("webhook_sync_now.json")
    event["headers"] = {**event["headers"], "x-people-sync-token": WEBHOOK_TOKEN}
    assert call(app, event, token=None)["statusCode"] == 202


def test_oversized_body_is_413(webhook) -> None:
    app, _ = webhook
    event = load_event("webhook_sync_now.json")
    event["body"] = json.dumps({"type": "x", "padding": "a" * 70_000})
    assert call(app, event)["statusCode"] == 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_wrong_content_type_is_415(webhook, content_type: str) -> None:
    app, _ = webhook
    event = load_event("webhook_sync_now.json")
    event["headers"] = {**event["headers"], "Content-Type": content_type}
    assert call(app, event)["statusCode"] == 415


@pytest.fixture
def target_callback(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, str]]:
    monkeypatch.setenv("SYNC_TABLE", "sync-table")
    monkeypatch.setenv("CALLBACK_SIGNING_SECRET", "callback-key")
    from functions.target_callback import app

    with mock_aws():
        boto3.client("secretsmanager").create_secret(Name="callback-key", SecretString="unit-signing-key")
        boto3.client("dynamodb").create_table(
            TableName="sync-table",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        aws_clients.reset()
        yield app, "unit-signing-key"
        aws_clients.reset()


def callback_event(sync_id: str, sig: str) -> dict[str, Any]:
    event = load_event("target_callback_orgvue.json")
    event["queryStringParameters"] = {**event["queryStringParameters"], "sync": sync_id, "sig": sig}
    return event


def test_signed_callback_is_kept_for_the_syncs_next_check(target_callback) -> None:
    from people_sync import callbacks
    from people_sync.loop_memory import DynamoDBLoopMemory

    app, key = target_callback
    response = app.lambda_handler(callback_event("orgvue-1", callbacks.signature("orgvue-1", key)), context("cb"))
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"accepted": True, "wokeTheLoop": False}  # nothing was waiting yet
    stored = DynamoDBLoopMemory("sync-table").load("orgvue-1").callback
    assert stored == {
        "status": "completed",
        "traceId": "7d0c1b2a-3e4f-4a5b-8c9d-0e1f2a3b4c5d",
        "tenantId": "ACME_PEOPLE",
    }


@pytest.mark.parametrize("sig", ["", "0" * 64, "signature-made-with-the-CallbackSigningSecret"])
def test_unsigned_callback_is_401_and_changes_nothing(target_callback, sig: str) -> None:
    from people_sync.loop_memory import DynamoDBLoopMemory

    app, _ = target_callback
    response = app.lambda_handler(callback_event("orgvue-1", sig), context("cb"))
    assert response["statusCode"] == 401
    assert DynamoDBLoopMemory("sync-table").load("orgvue-1").callback is None
