"""The operator tool's `syncs`, `failed` and `events` commands, end to end against the offline stack (the
template's resources in moto, the real handlers, the ChartHop emulator): list the syncs a demo run leaves, show
one's timeline, retry a quarantined file into a DONE sync, and redrive a queued event exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result

from offline.charthop_emulator import ImportBehaviour
from offline.harness import TERMINAL, Offline, offline_environment
from offline.lambda_runtime import ExternalCall
from tools.people_sync_admin.cli import cli
from tools.people_sync_admin.stack import Deployment, from_offline_stack

pytestmark = pytest.mark.e2e

ROSTER = b"Employee ID,First Name,Last Name\nE1,Ada,Lovelace\nE2,Alan,Turing\n"


@dataclass
class Env:
    offline: Offline
    deployment: Deployment

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, list(args), obj=self.deployment)

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def wait_done(self, sync_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.offline.emulator.process(sync_id)
            if process["status"] in TERMINAL and not self.offline.execution_running(sync_id):
                self.offline.runtime.wait_idle()
                return process
            time.sleep(0.05)
        raise TimeoutError(self.offline.dump(sync_id))

    def stage_and_finish(self, name: str = "roster.csv") -> str:
        known = {p["id"] for p in self.offline.sync_processes()}
        self.offline.stage(name, ROSTER)
        sync_id = str(self.offline.wait_for_new_sync(known)["id"])
        self.wait_done(sync_id)
        return sync_id

    def queue_depth(self) -> int:
        sqs = boto3.client("sqs", region_name=self.offline.stack.region)
        attributes = sqs.get_queue_attributes(
            QueueUrl=self.deployment.target.failed_events_queue, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])


@pytest.fixture
def env() -> Iterator[Env]:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=1.0)) as offline:
        yield Env(offline, Deployment(from_offline_stack(offline.stack), boto3.Session()))


def test_the_stack_names_what_the_operating_commands_need(env: Env) -> None:
    target = env.deployment.target
    assert target.history_table == env.offline.stack.physical["SyncHistoryTable"]
    assert target.bucket == env.offline.bucket
    assert target.failed_events_queue == env.offline.stack.physical["FailedEventsQueue"]
    assert target.finalizer_function == env.offline.stack.function("SyncFinalizerFunction").name


def test_syncs_list_and_show_the_demo_runs_syncs_and_a_timeline(env: Env) -> None:
    upload = env.stage_and_finish()
    pressed = env.offline.emulator.press_sync_now()
    sync_now = str(pressed["process"]["id"])
    env.wait_done(sync_now)

    listed = env.json("syncs", "list")
    assert [(r["syncId"], r["trigger"], r["status"]) for r in listed] == [
        (sync_now, "sync-now", "DONE"),
        (upload, "upload", "DONE"),
    ]
    for record in listed:
        assert (record["orgId"], record["target"], record["file"]) == (env.offline.org_id, "charthop", "roster.csv")
        assert record["endedAt"] >= record["startedAt"]
        assert record["executionArn"] == env.offline.execution(record["syncId"])["executionArn"]  # type: ignore[index]
    assert env.json("syncs", "list", "--status", "error") == []
    assert env.json("syncs", "list", "--org", "someone-else") == []
    assert [r["syncId"] for r in env.json("syncs", "list", "--org", env.offline.org_id, "--limit", "1")] == [sync_now]

    table = env.ok("syncs", "list")
    header = table.splitlines()[0].split()
    assert header[:2] == ["SYNC", "STARTED"]
    assert upload in table
    assert sync_now in table

    shown = env.json("syncs", "show", upload)
    kinds = [event["kind"] for event in shown["timeline"]]
    assert kinds[0] == "open"
    assert kinds[-1] == "close"
    assert {"import", "progress", "check"} <= set(kinds)
    progress = [event["progress"] for event in shown["timeline"] if event["kind"] == "progress"]
    assert progress == sorted(progress)
    assert shown["checks"] == sum(kind == "check" for kind in kinds)
    assert shown["versionId"]
    text = env.ok("syncs", "show", upload)
    assert "status:" in text
    assert "AT (UTC)" in text
    assert "no sync" in env.run("syncs", "show", "no-such-sync").output


def test_a_quarantined_file_is_retried_into_a_done_sync(env: Env) -> None:
    env.offline.emulator.import_behaviour = ImportBehaviour(duration_s=0.5, fail_with="Unknown column 'Salary'")
    failed_sync = env.stage_and_finish()
    assert env.offline.emulator.process(failed_sync)["status"] == "ERROR"
    [quarantined] = env.json("failed", "list")
    assert quarantined["from"] == f"s3://{env.offline.bucket}/{env.offline.staged_key('roster.csv')}"
    assert quarantined["syncProcessId"] == failed_sync
    failed_record = env.json("syncs", "show", failed_sync)
    assert failed_record["status"] == "ERROR"
    assert failed_record["failedReport"] == f"{quarantined['key']}.report.json"
    assert quarantined["key"] in env.ok("failed", "list")

    # a dry run and a target outside the staging prefix stage nothing
    assert "would stage" in env.ok("failed", "retry", quarantined["key"], "--dry-run")
    refused = env.run("failed", "retry", quarantined["key"], "--to", "elsewhere/roster.csv")
    assert refused.exit_code == 1
    assert "not under the staging prefix" in refused.output
    assert env.offline.staged_keys() == []

    env.offline.emulator.import_behaviour = ImportBehaviour(duration_s=0.5)  # what refused it was fixed
    known = {p["id"] for p in env.offline.sync_processes()}
    retried = env.json("failed", "retry", quarantined["key"])
    assert retried["stagedKey"] == env.offline.staged_key("roster.csv")
    retry_sync = str(env.offline.wait_for_new_sync(known)["id"])
    assert env.wait_done(retry_sync)["status"] == "DONE"

    record = env.json("syncs", "show", retry_sync)
    assert (record["trigger"], record["retryOf"], record["status"]) == ("retry", quarantined["key"], "DONE")
    assert record["versionId"] == retried["versionId"]


def test_a_queued_event_is_redriven_exactly_once(env: Env) -> None:
    lock = threading.Lock()

    def refuse_to_start_loops(call: ExternalCall, phase: str) -> None:
        with lock:
            if phase == "before" and call.name == "stepfunctions.StartExecution":
                raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "injected"}}, "StartExecution")

    env.offline.runtime.external_call_hook = refuse_to_start_loops  # type: ignore[assignment]
    env.offline.stage("roster.csv", ROSTER)
    deadline = time.monotonic() + 30
    while env.queue_depth() == 0:
        assert time.monotonic() < deadline, "the failed upload never reached the failed-events queue"
        time.sleep(0.2)
    env.offline.runtime.wait_idle()
    env.offline.runtime.external_call_hook = None
    [opened] = env.offline.sync_processes()  # the trigger opened the sync before it failed
    assert env.offline.execution(opened["id"]) is None

    dry = env.json("events", "redrive", "--dry-run")
    assert [(r["kind"], r["outcome"]) for r in dry] == [("lambda-async-failure", "would redrive")]
    assert env.queue_depth() == 1
    assert env.offline.execution(opened["id"]) is None

    [redriven] = env.json("events", "redrive")
    assert redriven["outcome"] == "redriven"
    assert "staging/" in redriven["summary"]
    assert env.wait_done(opened["id"])["status"] == "DONE"
    assert env.queue_depth() == 0
    assert "nothing to redrive" in env.ok("events", "redrive")

    # the same event delivered again (e.g. the tool died before deleting it): still one sync, one import
    body = json.loads(_requeue_last(env))
    assert body["requestPayload"]["Records"]
    [again] = env.json("events", "redrive")
    assert again["outcome"] == "redriven"
    env.offline.wait_idle()
    assert [p["id"] for p in env.offline.sync_processes()] == [opened["id"]]
    assert len(env.offline.emulator.uploads) == 1
    assert env.json("syncs", "list")[0]["status"] == "DONE"


def _requeue_last(env: Env) -> str:
    """Puts the on-failure record the runtime sent back on the queue (as SQS redelivers an undeleted message)."""
    [invocation] = [i for i in env.offline.runtime.invocations_of("ImportStarterFunction") if "Records" in i.event][:1]
    record = {
        "version": "1.0",
        "requestContext": {
            "functionArn": env.offline.stack.function("ImportStarterFunction").arn + ":$LATEST",
            "condition": "RetriesExhausted",
        },
        "requestPayload": invocation.event,
    }
    body = json.dumps(record)
    boto3.client("sqs", region_name=env.offline.stack.region).send_message(
        QueueUrl=env.deployment.target.failed_events_queue, MessageBody=body
    )
    return body
