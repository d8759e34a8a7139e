"""ChartHop faults and stuck workflows through the real handlers and the moto-executed state machine."""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote_plus

import boto3
import pytest

from offline.charthop_emulator import Fault, ImportBehaviour
from offline.harness import WEBHOOK_TOKEN, Offline, offline_environment
from tests.conftest import EVENTS

pytestmark = pytest.mark.integration
ROSTER = (EVENTS / "roster.csv").read_bytes()


def drop_roster(offline: Offline) -> str:
    known = {process["id"] for process in offline.sync_processes()}
    offline.stage("roster.csv", ROSTER)
    return str(offline.wait_for_new_sync(known)["id"])


def test_outage_beyond_the_loops_tolerance_marks_the_sync_error() -> None:
    with offline_environment(
        import_behaviour=ImportBehaviour(duration_s=0.3), extra_env={"MAX_UNAVAILABLE_CHECKS": "1"}
    ) as offline:
        # ChartHop stays down for the rest of the sync: a fixed number of faults (6 tries x 4 checks) ran out
        # before the third failing check in a loaded CI run, and the sync ended DONE. The loop tolerates 1
        # failed check, then the state machine retries the failing check twice.
        offline.emulator.inject("getProcess", *[Fault.http(503)] * 1000)
        sync_id = drop_roster(offline)
        process = offline.wait_for_process(sync_id, timeout=60)
        assert process["status"] == "ERROR"
        assert process["message"].startswith("Could not follow ChartHop's import of roster.csv (import ")
        assert "ChartHop is unavailable (HTTP 503)" in process["message"]
        assert offline.execution_status(sync_id) == "FAILED"
        failed = [
            e["taskFailedEventDetails"]["error"]
            for e in offline.execution_history(sync_id)
            if e["type"] == "TaskFailed"
        ]
        assert failed == ["ChartHopUnavailable"] * 3  # first try + the state machine's 2 retries


@pytest.mark.parametrize(
    "fault",
    [Fault.connection_reset(), Fault.slow(2.5), Fault.http(429, retry_after=0)],
    ids=["reset", "read-timeout", "429"],
)
def test_transport_faults_on_every_call_are_retried(fault: Fault) -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3)) as offline:
        for operation in ("createProcess", "getProcess", "updateProcess", "findProcesses"):
            offline.emulator.inject(operation, fault)
        if fault.status == 429:
            offline.emulator.inject("importDataCsv", fault)
        sync_id = drop_roster(offline)
        assert offline.wait_for_process(sync_id, timeout=60)["status"] == "DONE"
        assert len(offline.emulator.uploads) == 1
        assert len(offline.sync_processes()) == 1


def test_aborted_execution_is_closed_by_the_watchdog_once() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=60)) as offline:
        sync_id = drop_roster(offline)
        offline.wait_idle()
        execution = offline.execution(sync_id)
        assert execution is not None
        sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
        offline.stop_execution(execution["executionArn"])
        stopped = sfn.describe_execution(executionArn=execution["executionArn"])
        event = json.loads((EVENTS / "sync_finalizer_execution_timed_out.json").read_text())
        event["detail"].update(status="ABORTED", input=stopped["input"], executionArn=stopped["executionArn"])
        finalizer = offline.stack.function("SyncFinalizerFunction").name
        lam = boto3.client("lambda", region_name=offline.stack.region)
        first = json.loads(lam.invoke(FunctionName=finalizer, Payload=json.dumps(event).encode())["Payload"].read())
        assert first["status"] == "ERROR"
        process = offline.emulator.process(sync_id)
        assert process["status"] == "ERROR"
        assert "stopped by an operator" in process["message"]
        updates = len(offline.emulator.updates_for(sync_id))
        again = json.loads(lam.invoke(FunctionName=finalizer, Payload=json.dumps(event).encode())["Payload"].read())
        assert again == {"status": "ALREADY_CLOSED"}
        assert len(offline.emulator.updates_for(sync_id)) == updates


def test_secrets_never_reach_the_logs(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """What a function would ship to CloudWatch: its Powertools logs (stdout) and the libraries it logs
    through (urllib3 retries, requests), all at DEBUG."""
    for name in ("people-sync", "people_sync", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    with offline_environment(
        import_behaviour=ImportBehaviour(duration_s=0.3),
        import_on_upload=False,
        extra_env={"POWERTOOLS_LOG_LEVEL": "DEBUG"},
    ) as offline:
        offline.emulator.inject("getProcess", Fault.http(500), Fault.connection_reset())
        offline.stage("roster.csv", ROSTER)
        pressed = offline.emulator.press_sync_now()
        offline.wait_for_process(pressed["process"]["id"])
        api_token = offline.emulator.config.token
    out, err = capfd.readouterr()
    # The main thread and the emulator's echo threads play ChartHop (they post the webhook, token in its URL);
    # the functions run on the API shim's, the async-invocation and the state machine's threads.
    from_functions = [
        record
        for record in caplog.records
        if record.threadName != "MainThread" and not (record.threadName or "").startswith("charthop-echo-")
    ]
    logged = out + err + "\n".join(f"{record.name} {record.getMessage()}" for record in from_functions)
    assert "import followed" in logged  # the functions' logs were captured
    assert api_token not in logged
    assert WEBHOOK_TOKEN not in logged


def test_import_starter_that_keeps_failing_lands_in_the_failed_events_queue() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3)) as offline:
        # ChartHop refuses every createProcess: the upload's sync cannot even be shown in ChartHop
        offline.emulator.inject("createProcess", *[Fault.http(503)] * 100)
        offline.stage("roster.csv", ROSTER)
        offline.wait_idle()
        assert len(offline.runtime.invocations_of("ImportStarterFunction")) == 1
        sqs = boto3.client("sqs", region_name=offline.stack.region)
        queue_url = offline.stack.physical["FailedEventsQueue"]
        [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        record = json.loads(message["Body"])
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == 3  # first try + Lambda's 2 retries
        key = unquote_plus(record["requestPayload"]["Records"][0]["s3"]["object"]["key"])
        assert key == offline.staged_key("roster.csv")
        assert record["responsePayload"]["errorType"] == "ChartHopUnavailable"
        assert offline.staged_keys() == [offline.staged_key("roster.csv")]  # the file is still there to redrive
