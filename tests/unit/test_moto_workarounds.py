"""Guards offline/moto_workarounds.py: each work-around is needed while moto has its bug, and does its job.

The "moto still ..." tests fail once a moto release fixes the bug: then drop the work-around (and the test).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.backend.execution import Execution

from offline.moto_workarounds import moto_workarounds

ROLE = "arn:aws:iam::123456789012:role/offline"
PASS = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}}
#: "Loop" fails on its first pass, and its catcher names "Loop" itself (as the status loop's wait-ran-out
#: catcher does); on its second pass the caught error is in the input and "Loop" succeeds.
CATCHER_NAMES_ITS_OWN_STATE = {
    "StartAt": "Loop",
    "States": {
        "Loop": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Caught",
                    "States": {
                        "Caught": {
                            "Type": "Choice",
                            "Choices": [{"Variable": "$.caught", "IsPresent": True, "Next": "Ok"}],
                            "Default": "Boom",
                        },
                        "Ok": {"Type": "Succeed"},
                        "Boom": {"Type": "Fail", "Error": "Boom", "Cause": "first pass"},
                    },
                }
            ],
            "Catch": [{"ErrorEquals": ["Boom"], "ResultPath": "$.caught", "Next": "Loop"}],
            "Next": "After",
        },
        "After": {"Type": "Pass", "End": True},
    },
}


@pytest.fixture
def sfn() -> Iterator[Any]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("stepfunctions", region_name="us-east-1")


def run(sfn: Any, state_machine_arn: str, name: str) -> dict[str, Any]:
    """Starts an execution and waits (moto runs it on a thread of its own) until it ends."""
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input="{}")["executionArn"]
    deadline = time.monotonic() + 10
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{name} still running"
        time.sleep(0.02)
    return dict(execution)


def times_entered(sfn: Any, definition: dict[str, Any], state: str, patches: AbstractContextManager[None]) -> int:
    with patches:
        machine = sfn.create_state_machine(name="m", definition=json.dumps(definition), roleArn=ROLE)
        execution = run(sfn, machine["stateMachineArn"], "once")
        assert execution["status"] == "SUCCEEDED"
        events = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    return sum(
        1
        for event in events
        if event["type"].endswith("StateEntered") and event["stateEnteredEventDetails"]["name"] == state
    )


def test_a_catcher_that_names_its_own_state_runs_that_state_again(sfn: Any) -> None:
    assert times_entered(sfn, CATCHER_NAMES_ITS_OWN_STATE, "Loop", moto_workarounds()) == 2


def test_moto_still_follows_the_states_next_instead_of_its_catchers(sfn: Any) -> None:
    assert times_entered(sfn, CATCHER_NAMES_ITS_OWN_STATE, "Loop", nullcontext()) == 1


def test_a_state_machine_runs_a_second_time(sfn: Any) -> None:
    """moto 5.2.1 failed every execution after the first one of a state machine (the status loop runs once
    per sync); 5.2.5 no longer does."""
    with moto_workarounds():
        machine = sfn.create_state_machine(name="m", definition=json.dumps(PASS), roleArn=ROLE)
        statuses = [run(sfn, machine["stateMachineArn"], name)["status"] for name in ("first", "second")]
    assert statuses == ["SUCCEEDED", "SUCCEEDED"]


def statuses_listed_while_starting(sfn: Any, patches: AbstractContextManager[None]) -> list[str]:
    """Lists the executions from inside moto's Execution.start, before it sets the status: the window in
    which another thread's ListExecutions sees an execution moto has listed but not started."""
    listed: list[str] = []
    original_start = Execution.start

    def start_after_a_listing(self: Execution) -> None:
        listed.extend(e["status"] for e in sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"])
        original_start(self)

    with patches, mock.patch.object(Execution, "start", start_after_a_listing):
        machine = sfn.create_state_machine(name="m", definition=json.dumps(PASS), roleArn=ROLE)
        sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="starting", input="{}")
    return listed


def test_an_execution_listed_while_it_starts_is_running(sfn: Any) -> None:
    assert statuses_listed_while_starting(sfn, moto_workarounds()) == ["RUNNING"]


def test_moto_still_cannot_list_an_execution_while_it_starts(sfn: Any) -> None:
    with pytest.raises(Exception, match="'NoneType' object has no attribute 'value'"):
        statuses_listed_while_starting(sfn, nullcontext())


def staged_event(patches: AbstractContextManager[None]) -> tuple[str, dict[str, Any]]:
    """Uploads to a versioned bucket that notifies a queue; returns the version and the event's object."""
    with mock_aws(), patches:
        s3, sqs = boto3.client("s3", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
        s3.create_bucket(Bucket="staging")
        s3.put_bucket_versioning(Bucket="staging", VersioningConfiguration={"Status": "Enabled"})
        queue_url = sqs.create_queue(QueueName="events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket="staging",
            NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        version_id = s3.put_object(Bucket="staging", Key="staging/roster.csv", Body=b"a,b\n")["VersionId"]
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(message["Body"]) for message in messages]
    [record] = [record for body in bodies for record in body.get("Records", [])]  # after S3's test event
    return version_id, record["s3"]["object"]


def test_an_object_created_event_names_the_new_version_and_a_sequencer() -> None:
    version_id, s3_object = staged_event(moto_workarounds())
    assert s3_object["versionId"] == version_id
    assert int(s3_object["sequencer"], 16) > 0


def test_moto_still_leaves_the_version_out_of_s3_events() -> None:
    _version_id, s3_object = staged_event(nullcontext())
    assert "versionId" not in s3_object


def test_each_parse_of_a_definition_has_a_scope_stack_of_its_own() -> None:
    """Executions started together parse their definition on threads of their own: they must not share state."""
    with moto_workarounds():
        first, second = Preprocessor(), Preprocessor()
        assert first._query_language_per_scope is not second._query_language_per_scope
        first._query_language_per_scope.append("a parse in progress on another thread")  # type: ignore[arg-type]
        AmazonStateLanguageParser.parse(json.dumps(PASS))
        assert second._query_language_per_scope == []


def test_moto_still_shares_one_scope_stack_between_all_parses() -> None:
    first, second = Preprocessor(), Preprocessor()
    assert first._query_language_per_scope is second._query_language_per_scope
