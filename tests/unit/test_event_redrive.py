"""The failed-events redriver: what it recognises, what it deletes, what it leaves for a person."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from people_sync.event_redrive import failed_event, redrive_failed_events, unqualified

FINALIZER = "arn:aws:lambda:us-east-1:123456789012:function:stack-SyncFinalizerFunction"
STARTER = "arn:aws:lambda:us-east-1:123456789012:function:stack-ImportStarterFunction"
UPLOAD = {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "staging/org/roster.csv"}}}]}


def on_failure_record(payload: dict[str, Any], function: str = STARTER) -> str:
    return json.dumps(
        {
            "version": "1.0",
            "requestContext": {"functionArn": f"{function}:$LATEST", "condition": "RetriesExhausted"},
            "requestPayload": payload,
            "responsePayload": {"errorMessage": "ChartHop is unavailable (HTTP 502)"},
        }
    )


class FakeLambda:
    """Answers each invoke with a function error while `failing` holds."""

    def __init__(self) -> None:
        self.failing = False
        self.invoked: list[tuple[str, dict[str, Any]]] = []

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803
        assert InvocationType == "RequestResponse"  # only an event its function handled is deleted
        self.invoked.append((FunctionName, json.loads(Payload)))
        if self.failing:
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(b'{"errorMessage": "still down"}')}
        return {"Payload": io.BytesIO(b"{}")}


@pytest.fixture
def queue() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        yield sqs, sqs.create_queue(QueueName="failed-events")["QueueUrl"]


def run(sqs: Any, url: str, fake: FakeLambda, **kwargs: Any) -> list[str]:
    options: dict[str, Any] = {"max_age_seconds": 3600, "max_messages": 50, "retry_visibility_seconds": 0}
    options.update(kwargs)
    results = redrive_failed_events(sqs, fake, url, eventbridge_target=FINALIZER, **options)  # type: ignore[arg-type]
    return [result.outcome for result in results]


def depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_each_kind_of_failed_event_goes_back_to_its_function() -> None:
    upload = failed_event({"Body": on_failure_record(UPLOAD)}, eventbridge_target=FINALIZER)
    assert (upload.kind, upload.function, upload.payload) == ("lambda-async-failure", STARTER, UPLOAD)
    ended = {"detail-type": "Step Functions Execution Status Change", "source": "aws.states", "detail": {}}
    dead_letter = failed_event({"Body": json.dumps(ended)}, eventbridge_target=FINALIZER)
    assert (dead_letter.kind, dead_letter.function) == ("eventbridge-dead-letter", FINALIZER)
    assert failed_event({"Body": "not json"}, eventbridge_target=FINALIZER).payload is None
    assert failed_event({"Body": "[1]"}, eventbridge_target=FINALIZER).payload is None
    assert unqualified(f"{STARTER}:$LATEST") == STARTER


def test_a_handled_event_is_deleted_and_one_that_fails_again_is_kept_for_the_next_run(queue: Any) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=on_failure_record(UPLOAD))
    fake = FakeLambda()
    fake.failing = True
    assert run(sqs, url, fake) == ["failed"]  # each message once per run, even with visibility 0 afterwards
    assert depth(sqs, url) == 1
    fake.failing = False
    assert run(sqs, url, fake) == ["redriven"]
    assert depth(sqs, url) == 0
    assert fake.invoked == [(STARTER, UPLOAD), (STARTER, UPLOAD)]
    assert run(sqs, url, fake) == []


def test_an_event_older_than_the_age_limit_or_unrecognised_is_left_for_a_person(queue: Any) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=on_failure_record(UPLOAD))
    sqs.send_message(QueueUrl=url, MessageBody="garbage")
    fake = FakeLambda()
    assert sorted(run(sqs, url, fake, max_age_seconds=-1)) == ["too-old", "unrecognised"]
    assert fake.invoked == []
    assert depth(sqs, url) == 2


def test_a_dry_run_invokes_nothing_and_deletes_nothing(queue: Any) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=on_failure_record(UPLOAD))
    fake = FakeLambda()
    assert run(sqs, url, fake, dry_run=True) == ["would-redrive"]
    assert fake.invoked == []
    assert depth(sqs, url) == 1
