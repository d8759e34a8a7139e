"""The real ASL (statemachine/sync_status.asl.json) executed by moto against the ChartHop emulator.

Every scenario goes through the real handlers, wired as template.yaml wires them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import boto3
import pytest
import requests

from offline.charthop_emulator import Fault, ImportBehaviour
from offline.harness import WEBHOOK_TOKEN, Offline, offline_environment
from people_sync.progress import SETTLING_PROGRESS
from tests.conftest import EVENTS

pytestmark = pytest.mark.integration
ROSTER = (EVENTS / "roster.csv").read_bytes()


@pytest.fixture
def offline() -> Iterator[Offline]:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.5)) as running:
        yield running


def drop_roster(offline: Offline) -> str:
    known = {process["id"] for process in offline.sync_processes()}
    offline.stage("roster.csv", ROSTER)
    return str(offline.wait_for_new_sync(known)["id"])


def states_entered(offline: Offline, sync_id: str, name: str) -> int:
    return sum(
        1
        for event in offline.execution_history(sync_id)
        if event["type"].endswith("StateEntered") and event.get("stateEnteredEventDetails", {}).get("name") == name
    )


def assert_strictly_increasing_to_one(values: list[float]) -> None:
    assert values, "no progress was reported"
    assert all(b > a for a, b in itertools.pairwise(values)), values
    assert values[-1] == 1.0


def test_success_marks_the_sync_done_with_results(offline: Offline) -> None:
    sync_id = drop_roster(offline)
    process = offline.wait_for_process(sync_id)
    assert process["status"] == "DONE", offline.dump(sync_id)
    assert process["results"]["rows"] == 25
    assert process["results"]["created"] == 25
    assert "Imported roster.csv: 25 rows, 25 created" in process["message"]
    assert_strictly_increasing_to_one(offline.progress_values(sync_id))
    assert offline.execution_status(sync_id) == "SUCCEEDED"
    # a fault-free sync needs no retry anywhere (e.g. the close never finds the last check's lease held)
    assert [event for event in offline.execution_history(sync_id) if event["type"] == "TaskFailed"] == []
    [upload] = offline.emulator.uploads
    assert upload.query["parentProcessId"] == sync_id


def test_import_error_marks_the_sync_error_with_charthops_reason(offline: Offline) -> None:
    offline.emulator.import_behaviour = ImportBehaviour(duration_s=0.3, fail_with="Unknown column 'Salary Band'")
    sync_id = drop_roster(offline)
    process = offline.wait_for_process(sync_id)
    assert process["status"] == "ERROR"
    assert process["message"].startswith("ChartHop could not import roster.csv: Unknown column 'Salary Band'.")
    assert "moved to s3://" in process["message"]
    assert offline.failed_reports()[0]["code"] == "import-failed"
    assert offline.staged_keys() == []  # not lost: moved to failed/ with a report
    assert offline.execution_status(sync_id) == "SUCCEEDED"  # the workflow did its job


def test_slow_import_needs_several_loops_and_moves_the_bar_each_time() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(polls=5)) as offline:
        sync_id = drop_roster(offline)
        process = offline.wait_for_process(sync_id)
        assert process["status"] == "DONE"
        checks = len(offline.emulator.calls_of("getProcess"))
        assert checks == 5
        # One state transition per check: the task is entered once after the start (it only waits), then
        # once per check; nothing else runs until the import is done.
        assert states_entered(offline, sync_id, "FollowImport") == checks + 1
        assert states_entered(offline, sync_id, "IsImportFinished") == 1
        entered = [event for event in offline.execution_history(sync_id) if event["type"].endswith("StateEntered")]
        # + StartImport, IsImportStarted (the start), IsImportFinished, FinishSync
        assert len(entered) == checks + 1 + 4
        values = offline.progress_values(sync_id)
        assert_strictly_increasing_to_one(values)
        # uploading, accepted, four running steps, done (after "starts in a few seconds" when the start came
        # within the settle time, as it usually does)
        assert len([value for value in values if value > SETTLING_PROGRESS]) == 2 + 4 + 1


def test_charthop_5xx_then_recovery_inside_the_lambda(offline: Offline) -> None:
    offline.emulator.inject("getProcess", Fault.http(503), Fault.http(500))
    sync_id = drop_roster(offline)
    assert offline.wait_for_process(sync_id)["status"] == "DONE"
    statuses = [call.status for call in offline.emulator.calls_of("getProcess")]
    assert statuses[:3] == [503, 500, 200]
    assert states_entered(offline, sync_id, "ReportWorkflowFailure") == 0


def test_charthop_outage_longer_than_client_retries_is_waited_out_by_the_loop(offline: Offline) -> None:
    offline.emulator.inject("getProcess", *[Fault.http(502)] * 18)  # three whole checks' worth of 502s
    sync_id = drop_roster(offline)
    assert offline.wait_for_process(sync_id, timeout=90)["status"] == "DONE"
    history = offline.execution_history(sync_id)
    assert [event for event in history if event["type"] in ("TaskFailed", "LambdaFunctionFailed")] == []
    assert states_entered(offline, sync_id, "FollowImport") >= 4
    assert [call.status for call in offline.emulator.calls_of("getProcess")].count(502) == 18
    assert offline.execution_status(sync_id) == "SUCCEEDED"


def test_rejected_charthop_call_marks_the_sync_error_and_fails_the_execution(offline: Offline) -> None:
    offline.emulator.inject("getProcess", Fault.http(403))
    sync_id = drop_roster(offline)
    process = offline.wait_for_process(sync_id)
    assert process["status"] == "ERROR"
    assert process["message"].startswith("Could not follow ChartHop's import of roster.csv (import ")
    assert "ChartHop refused to read the process" in process["message"]
    assert "Primary Editor" in process["message"]
    assert "may still be running or have finished in ChartHop" in process["message"]  # not "the import failed"
    assert offline.execution_status(sync_id) == "FAILED"


def test_import_that_never_finishes_times_out_with_a_clear_message() -> None:
    with offline_environment(
        import_behaviour=ImportBehaviour(duration_s=300),
        import_timeout_seconds=1,
        poll_initial_seconds=1,
        poll_max_seconds=1,
    ) as offline:
        sync_id = drop_roster(offline)
        process = offline.wait_for_process(sync_id)
        assert process["status"] == "ERROR"
        assert "did not finish within" in process["message"]


def test_sync_now_imports_the_staged_file_under_charthops_process() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.5), import_on_upload=False) as offline:
        offline.stage("roster.csv", ROSTER)
        offline.wait_idle()
        assert offline.emulator.uploads == []  # waits for "Sync Now"
        pressed = offline.emulator.press_sync_now()
        assert pressed["status"] == 202
        sync_id = pressed["process"]["id"]
        process = offline.wait_for_process(sync_id)
        assert process["status"] == "DONE"
        assert_strictly_increasing_to_one(offline.progress_values(sync_id))
        assert [upload.file_name for upload in offline.emulator.uploads] == ["roster.csv"]


def test_sync_now_with_nothing_staged_tells_the_user(offline: Offline) -> None:
    pressed = offline.emulator.press_sync_now()
    assert pressed["status"] == 202
    offline.wait_idle()
    process = offline.emulator.process(pressed["process"]["id"])
    assert process["status"] == "ERROR"
    assert "No CSV is staged" in process["message"]
    assert offline.execution_status(process["id"]) == "SUCCEEDED"  # the start closed it: nothing to follow
    assert states_entered(offline, process["id"], "FollowImport") == 0


def test_webhook_ignores_other_events_over_http(offline: Offline) -> None:
    event = json.loads((EVENTS / "webhook_other_event.json").read_text())["body"]
    response = requests.post(
        offline.authorised_webhook_url, data=event, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 202
    assert response.json()["action"] == "ignored"
    offline.wait_idle()
    assert offline.runtime.invocations_of("ImportStarterFunction") == []


@pytest.mark.parametrize("token", [None, "", "wrong", WEBHOOK_TOKEN[:-1], WEBHOOK_TOKEN + "x"])
def test_sync_now_without_the_webhook_token_is_401_and_starts_nothing(offline: Offline, token: str | None) -> None:
    offline.stage("roster.csv", ROSTER)
    offline.wait_idle()
    uploads_before = len(offline.emulator.uploads)
    process = offline.emulator.create_sync_process()
    params = {} if token is None else {"token": token}
    response = requests.post(
        offline.webhook_url, params=params, json=offline.emulator.sync_now_event(process), timeout=10
    )
    assert response.status_code == 401
    offline.wait_idle()
    sync_now_triggers = [
        invocation
        for invocation in offline.runtime.invocations_of("ImportStarterFunction")
        if invocation.event.get("kind") == "sync-now"
    ]
    assert sync_now_triggers == []
    assert len(offline.emulator.uploads) == uploads_before
    assert offline.emulator.process(process["id"])["status"] == "PENDING"


def test_skipped_rows_end_done_with_their_count_in_the_log_and_a_report_beside_the_file(offline: Offline) -> None:
    offline.emulator.config.required_columns = ("Work Email",)
    lines = ROSTER.decode().splitlines(keepends=True)
    for index in (3, 10):  # data rows 3 and 10 lose their Work Email (the last column)
        lines[index] = lines[index].rstrip("\n").rsplit(",", 1)[0] + ",\n"
    known = {process["id"] for process in offline.sync_processes()}
    offline.stage("roster.csv", "".join(lines).encode())
    sync_id = str(offline.wait_for_new_sync(known)["id"])
    process = offline.wait_for_process(sync_id)
    report = f"reports/{offline.org_id}/roster.csv.errors.csv"
    assert process["status"] == "DONE", offline.dump(sync_id)
    assert process["message"].startswith("Imported roster.csv: 25 rows, 23 created")
    assert process["message"].endswith(f"; 2 rows skipped with errors, see {report}")
    assert process["results"]["rowErrors"]["skipped"] == 2
    log = offline.emulator.log_of(sync_id)
    levels_and_rows = [(entry["level"], entry["data"].get("row")) for entry in log]
    assert levels_and_rows == [("WARN", None), ("ERROR", 3), ("ERROR", 10)]
    assert offline.read(report).decode().splitlines() == [
        "row,column,message",
        "3,Work Email,Work Email is required",
        "10,Work Email,Work Email is required",
    ]
    assert offline.execution_status(sync_id) == "SUCCEEDED"


@pytest.mark.parametrize("with_payload", [True, False], ids=["echo with payload", "echo without payload"])
def test_echoes_of_our_own_processes_start_nothing(with_payload: bool) -> None:
    """With ChartHop echoing process.create for every process the app creates (the upload's sync process,
    each import's child process), an upload and a Sync Now each import once, and the echo handling neither
    updates the sync process nor starts a second execution. Without a payload the webhook cannot tell, so
    the import starter decides (start journal, then the process's options mark)."""
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.5)) as offline:
        assert offline.emulator.config.echo_process_events, "the harness echoes by default"
        offline.emulator.config.echo_with_payload = with_payload
        upload_sync = drop_roster(offline)
        assert offline.wait_for_process(upload_sync)["status"] == "DONE", offline.dump(upload_sync)
        offline.emulator.wait_for_echoes()
        offline.wait_idle()
        updates_after_upload = len(offline.emulator.updates_for(upload_sync))
        pressed = offline.emulator.press_sync_now()
        press_sync = pressed["process"]["id"]
        assert offline.wait_for_process(press_sync)["status"] == "DONE", offline.dump(press_sync)
        echoes = offline.emulator.wait_for_echoes()
        offline.wait_idle()

        assert len(offline.emulator.uploads) == 2, "one import per staged file and per press"
        [upload_child, press_child] = [upload.import_process_id for upload in offline.emulator.uploads]
        assert sorted(pid for pid, _ in echoes) == sorted([upload_sync, upload_child, press_child])
        assert {status for _, status in echoes} == ({200} if with_payload else {202})
        assert len(offline.emulator.updates_for(upload_sync)) == updates_after_upload
        assert [u for u in offline.emulator.updates_for(upload_sync) if u.get("status") == "ERROR"] == []
        assert offline.execution_status(upload_sync) == "SUCCEEDED"
        assert offline.execution(upload_child) is None
        assert offline.execution(press_child) is None
        sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
        runs = sfn.list_executions(stateMachineArn=offline.stack.state_machine_arn())["executions"]
        assert sorted(run["name"] for run in runs) == sorted([f"sync-{upload_sync}", f"sync-{press_sync}"])
