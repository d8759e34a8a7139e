"""Issue 11's fault paths, one test (or more) per defect, black-box through the offline stack.

Each test stages files or presses "Sync Now", injects emulator faults, AWS faults or crashes
(`runtime.external_call_hook`: `ClientError`, `InvocationKilled`), and then reads only what is outside the
app: the ChartHop emulator's processes, updates and imports, the ELMA365 emulator, the bucket, the sync
table and the executions. They use only harness features that predate the restructure of the start, so the
same file also runs against the code before the fix (where each test fails).

Step Functions' retry waits are shortened for these tests (the `quick_state_machine_retries` fixture): the
finalizer's retries alone (2, 6, 18, 54 s with full jitter) would take over a minute.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from offline.charthop_emulator import Fault, ImportBehaviour
from offline.elma365_emulator import ImportBehaviour as ElmaBehaviour
from offline.harness import TERMINAL, Offline, offline_environment
from offline.lambda_runtime import ExternalCall, InvocationKilled
from people_sync import api_assumptions as assumed
from tests.conftest import EVENTS

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("quick_state_machine_retries")]

ROSTER = (EVENTS / "roster.csv").read_bytes()
ROSTER_ROWS = 25
#: The ChartHop client's tries per call (1 + 5 retries): a longer burst outlasts them.
CLIENT_TRIES = 6
IMPORTER = "ImportStarterFunction"
CHECKER = "StatusCheckerFunction"
FINALIZER = "SyncFinalizerFunction"
Phase = Literal["before", "after"]


# --- helpers ---------------------------------------------------------------------------------------


def aws_error(code: str, operation: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"injected {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def hook(offline: Offline, rule: Callable[[ExternalCall, Phase], None]) -> None:
    """Installs `rule` as the external-call hook, serialised (the functions run on several threads)."""
    lock = threading.Lock()

    def guarded(call: ExternalCall, phase: Phase) -> None:
        with lock:
            rule(call, phase)

    offline.runtime.external_call_hook = guarded


def drop_roster(offline: Offline) -> str:
    known = {process["id"] for process in offline.sync_processes()}
    offline.stage("roster.csv", ROSTER)
    return str(offline.wait_for_new_sync(known)["id"])


def wait_closed(offline: Offline, sync_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The sync process once it is DONE or ERROR and its execution no longer runs; as it stands after
    `timeout` otherwise (a sync left open then fails the test's assertions, not a TimeoutError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process = offline.emulator.process(sync_id)
        if process["status"] in TERMINAL and not offline.execution_running(sync_id):
            offline.runtime.wait_idle()
            return process
        time.sleep(0.05)
    return offline.emulator.process(sync_id)


def quiet(offline: Offline, timeout: float = 30.0) -> None:
    """Waits until no invocation is pending and no execution runs."""
    sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        offline.runtime.wait_idle(max(0.1, deadline - time.monotonic()))
        executions = sfn.list_executions(stateMachineArn=offline.stack.state_machine_arn())["executions"]
        if not any(execution["status"] == "RUNNING" for execution in executions):
            offline.runtime.wait_idle(max(0.1, deadline - time.monotonic()))
            return
        time.sleep(0.05)
    raise TimeoutError("executions still running")


def failed_objects(offline: Offline) -> list[str]:
    s3 = boto3.client("s3", region_name=offline.stack.region)
    return sorted(
        item["Key"] for item in s3.list_objects_v2(Bucket=offline.bucket, Prefix="failed/").get("Contents", [])
    )


def sync_now_slot_held(offline: Offline) -> bool:
    """The org's Sync Now slot (sync table item `sync-now#<org>`) has an owner and has not expired."""
    now = time.time()
    return any(
        item["id"]["S"] == f"sync-now#{offline.org_id}"
        and "owner" in item
        and float(item.get("expiration", {}).get("N", "0")) > now
        for item in offline.sync_table_items()
    )


def imports_under(offline: Offline, sync_id: str) -> list[str]:
    """The ChartHop imports (one per importDataCsv upload) filed under a sync process."""
    parents = {
        upload.import_process_id: offline.emulator.process(upload.import_process_id)
        for upload in offline.emulator.uploads
    }
    return [import_id for import_id, process in parents.items() if process.get("parentProcessId") == sync_id]


def updates_after_final(offline: Offline, sync_id: str) -> list[dict[str, Any]]:
    updates = offline.emulator.updates_for(sync_id)
    finals = [i for i, update in enumerate(updates) if update.get("status") in TERMINAL]
    return updates[finals[0] + 1 :] if finals else []


def press_sync_now(offline: Offline) -> str:
    pressed = offline.emulator.press_sync_now()
    assert pressed["status"] == 202, pressed
    return str(pressed["process"]["id"])


def assert_done_with_one_import(offline: Offline, sync_id: str, process: dict[str, Any]) -> None:
    assert process["status"] == "DONE", offline.dump(sync_id)
    assert len(offline.emulator.uploads) == 1
    assert imports_under(offline, sync_id) == [offline.emulator.uploads[0].import_process_id]
    assert [p["id"] for p in offline.sync_processes()] == [sync_id]
    assert updates_after_final(offline, sync_id) == []


# --- 1: a 503 burst on the "accepted" update ---------------------------------------------------------


def test_1_a_503_burst_on_the_accepted_update_imports_once() -> None:
    """The progress update right after importDataCsv succeeded (0.05 "accepted", the second updateProcess)
    fails with a 503 burst longer than the client's tries: still one import, one sync, DONE."""
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.5)) as offline:
        for index in range(1, 1 + CLIENT_TRIES + 1):  # updateProcess #0 is "Checking and uploading" (0.02)
            offline.emulator.inject_at("updateProcess", index, Fault.http(503))
        sync_id = drop_roster(offline)
        process = wait_closed(offline, sync_id)
        quiet(offline)
        assert len(offline.sync_processes()) == 1
        assert_done_with_one_import(offline, sync_id, process)


# --- 2: an AWS error, and a crash, while the import starts -------------------------------------------


def test_2_s3_access_denied_while_opening_the_staged_file_closes_the_sync_and_frees_the_slot() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), import_on_upload=False) as offline:
        offline.stage("roster.csv", ROSTER)
        quiet(offline)

        def deny_reads(call: ExternalCall, phase: Phase) -> None:
            if phase == "before" and call.function == IMPORTER and call.name == "s3.GetObject":
                raise aws_error("AccessDenied", "GetObject", 403)

        hook(offline, deny_reads)
        sync_id = press_sync_now(offline)
        process = wait_closed(offline, sync_id)
        quiet(offline)
        assert process["status"] == "ERROR", offline.dump(sync_id)
        assert "stays staged" in process["message"]
        assert offline.emulator.uploads == []
        assert offline.staged_keys() == [offline.staged_key("roster.csv")]
        assert failed_objects(offline) == []
        assert not offline.execution_running(sync_id)
        assert not sync_now_slot_held(offline)
        assert updates_after_final(offline, sync_id) == []

        offline.runtime.external_call_hook = None  # S3 recovers: a later "Sync Now" goes through
        again = press_sync_now(offline)
        assert wait_closed(offline, again)["status"] == "DONE", offline.dump(again)
        assert len(offline.emulator.uploads) == 1


def test_2_import_starter_killed_right_after_showing_checking_continues_to_done() -> None:
    """The import starter dies right after its first updateProcess (0.02, "Checking and uploading"; no settle
    time, so no "starts in a few seconds" before it)."""
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), queue_settle_seconds=0) as offline:
        killed: list[ExternalCall] = []

        def kill_after_first_progress(call: ExternalCall, phase: Phase) -> None:
            if phase == "after" and not killed and call.function == IMPORTER and call.name.startswith("PATCH "):
                killed.append(call)
                raise InvocationKilled("Sandbox.Timedout")

        hook(offline, kill_after_first_progress)
        sync_id = drop_roster(offline)
        process = wait_closed(offline, sync_id)
        quiet(offline)
        assert killed, "the crash was not injected"
        assert offline.progress_values(sync_id)[:1] == [0.02]
        assert_done_with_one_import(offline, sync_id, process)


# --- 3: a lost hand-back when ELMA365 moves to its next chunk ----------------------------------------


def test_3_a_lost_hand_back_after_the_next_elma365_chunk_started_imports_each_row_once() -> None:
    with offline_environment(
        further_targets=True, poll_initial_seconds=1, poll_max_seconds=1, parameters={"Elma365ChunkRows": "10"}
    ) as offline:
        assert offline.elma365 is not None
        offline.elma365.import_behaviour = ElmaBehaviour(polls=1)
        lost: list[ExternalCall] = []

        def lose_first_hand_back(call: ExternalCall, phase: Phase) -> None:
            if (
                phase == "before"
                and not lost
                and call.function == CHECKER
                and call.name == "stepfunctions.SendTaskSuccess"
            ):
                lost.append(call)
                # the modeled exception, as botocore raises it for this answer (the app's clients share boto3's
                # default session, so this is the class they catch)
                sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
                response: Any = {
                    "Error": {"Code": "TaskTimedOut", "Message": "Task Timed Out"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                }
                raise sfn.exceptions.TaskTimedOut(response, "SendTaskSuccess")

        hook(offline, lose_first_hand_back)
        header = b"Employee ID,Full name,Department\n"
        offline.stage(
            "roster.csv",
            header + b"".join(b"E%06d,Person %d,Engineering\n" % (i, i) for i in range(25)),
            folder="elma365",
        )
        execution = offline.execution_for_file("elma365")
        ended = offline.wait_for_execution(execution["executionArn"], timeout=40)
        quiet(offline)
        outcomes = [i.result for i in offline.runtime.invocations_of(FINALIZER) if i.result]
        assert lost, "the hand-back was not lost"
        assert outcomes, "the sync was never closed"
        assert outcomes[-1]["status"] == "DONE", outcomes
        assert ended["status"] == "SUCCEEDED"
        assert [run.rows for run in offline.elma365.own_imports()] == [10, 10, 5]
        assert offline.elma365.imported_rows() == 25
        # a hand-back that came too late is not the check's failure: the next check carries on
        assert [i.error for i in offline.runtime.invocations_of(CHECKER) if i.error is not None] == []


# --- 4: nothing after the final status ---------------------------------------------------------------


def _first_check_event(offline: Offline, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checks = offline.runtime.invocations_of(CHECKER)
        if checks:
            return checks[0].event
        time.sleep(0.02)
    raise TimeoutError("the status loop never checked")


def _invoke_checker(offline: Offline, event: dict[str, Any]) -> None:
    boto3.client("lambda", region_name=offline.stack.region).invoke(
        FunctionName=offline.stack.function(CHECKER).name, Payload=json.dumps(event).encode()
    )


def test_4_a_stale_check_running_over_the_close_writes_nothing_after_the_final_status() -> None:
    """An overlapping check (the status checker entered again with the loop's first task event) reads the
    import while it runs, and is then slow: it stalls until the sync is DONE (or 6 s pass) before it goes on.
    Whatever it then reports must not land after the final status, and the bar never moves back."""
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=3.0)) as offline:
        stale_thread: list[threading.Thread] = []
        stalled: list[ExternalCall] = []

        def stall_the_stale_check(call: ExternalCall, phase: Phase) -> None:
            if phase != "after" or stalled or threading.current_thread() not in stale_thread:
                return
            if call.kind == "http" and call.name.startswith("GET ") and "/process/" in call.name:
                stalled.append(call)
                deadline = time.monotonic() + 6.0
                while time.monotonic() < deadline and offline.emulator.process(sync_id)["status"] not in TERMINAL:
                    time.sleep(0.05)

        sync_id = drop_roster(offline)
        stale_event = _first_check_event(offline)
        # Halfway between two of the loop's checks (1 s apart from the import's start), and past the
        # target's minimum interval: the stale entry checks instead of only waiting.
        time.sleep(max(0.0, stale_event["state"]["poll"]["checkedAt"] + 1.5 - time.time()))
        offline.runtime.external_call_hook = stall_the_stale_check  # only ever blocks its own thread

        def check_until_it_reads_the_import() -> None:
            # A check that finds the loop's own check holding the lease only waits (it reads nothing); on a
            # loaded machine the loop's check can be running just then, so the stale check is entered again.
            while not stalled and offline.emulator.process(sync_id)["status"] not in TERMINAL:
                _invoke_checker(offline, stale_event)
                time.sleep(0.1)

        stale = threading.Thread(target=check_until_it_reads_the_import, name="stale-check")
        stale_thread.append(stale)
        stale.start()
        process = wait_closed(offline, sync_id, timeout=30)
        stale.join(timeout=30)
        quiet(offline)
        assert stalled, "the stale check never read the import"
        assert process["status"] == "DONE", offline.dump(sync_id)
        assert updates_after_final(offline, sync_id) == [], offline.dump(sync_id)
        assert offline.emulator.process(sync_id)["status"] == "DONE"
        values = offline.progress_values(sync_id)
        assert values == sorted(set(values)), values  # strictly forward
        assert len(offline.emulator.uploads) == 1


def test_4_a_stale_task_event_after_done_changes_nothing() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.5)) as offline:
        sync_id = drop_roster(offline)
        assert wait_closed(offline, sync_id)["status"] == "DONE"
        quiet(offline)
        updates = len(offline.emulator.updates_for(sync_id))
        _invoke_checker(offline, offline.runtime.invocations_of(CHECKER)[0].event)
        quiet(offline)
        assert len(offline.emulator.updates_for(sync_id)) == updates
        assert offline.emulator.process(sync_id)["status"] == "DONE"


# --- 11: crashes in the import starter ---------------------------------------------------------------


class _KillAfterImportPost:
    """Kills the invocation that POSTed importDataCsv at its next external call (the journal write, or
    whatever the code does right after the import started), once."""

    def __init__(self) -> None:
        self.posted: tuple[str, int] | None = None
        self.killed: ExternalCall | None = None

    def __call__(self, call: ExternalCall, phase: Phase) -> None:
        if self.killed is not None:
            return
        if (
            phase == "after"
            and call.kind == "http"
            and call.name.startswith("POST ")
            and "/import/csv/data" in call.name
        ):
            self.posted = (call.function, call.attempt)
        elif phase == "before" and self.posted == (call.function, call.attempt):
            self.killed = call
            raise InvocationKilled("Sandbox.Timedout")


def test_11a_import_starter_killed_right_after_the_import_started_imports_once() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3)) as offline:
        crash = _KillAfterImportPost()
        hook(offline, crash)
        sync_id = drop_roster(offline)
        process = wait_closed(offline, sync_id)
        quiet(offline)
        assert crash.killed is not None, "the crash was not injected"
        assert_done_with_one_import(offline, sync_id, process)


def test_11b_sync_now_killed_right_after_the_import_started_imports_once() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), import_on_upload=False) as offline:
        offline.stage("roster.csv", ROSTER)
        quiet(offline)
        crash = _KillAfterImportPost()
        hook(offline, crash)
        sync_id = press_sync_now(offline)
        process = wait_closed(offline, sync_id)
        quiet(offline)
        assert crash.killed is not None, "the crash was not injected"
        assert_done_with_one_import(offline, sync_id, process)
        assert not sync_now_slot_held(offline)


def test_11c_import_starter_killed_in_the_pre_flight_checks_every_time_closes_the_sync() -> None:
    """Every try dies while the checks read the staged file (after S3 answered GetObject)."""
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), import_on_upload=False) as offline:
        offline.stage("roster.csv", ROSTER)
        quiet(offline)
        kills: list[ExternalCall] = []

        def kill_while_checking(call: ExternalCall, phase: Phase) -> None:
            if phase == "after" and call.function == IMPORTER and call.name == "s3.GetObject":
                kills.append(call)
                raise InvocationKilled("Sandbox.Timedout")

        hook(offline, kill_while_checking)
        sync_id = press_sync_now(offline)
        process = wait_closed(offline, sync_id)
        quiet(offline)
        assert kills, "the crash was not injected"
        assert process["status"] == "ERROR", offline.dump(sync_id)
        assert process.get("message"), offline.dump(sync_id)
        assert "stays staged" in process["message"]
        assert offline.emulator.uploads == []
        assert offline.staged_keys() == [offline.staged_key("roster.csv")]
        assert failed_objects(offline) == []
        assert not offline.execution_running(sync_id)
        assert not sync_now_slot_held(offline)

        offline.runtime.external_call_hook = None
        again = press_sync_now(offline)
        assert wait_closed(offline, again)["status"] == "DONE", offline.dump(again)


# --- 12: one transient error in a check --------------------------------------------------------------


def _throttle_first_dynamodb_call(call: ExternalCall, phase: Phase, fired: list[ExternalCall]) -> None:
    if phase == "before" and not fired and call.function == CHECKER and call.name.startswith("dynamodb."):
        fired.append(call)
        raise aws_error("ThrottlingException", call.name.split(".", 1)[1])


def _break_first_import_read(call: ExternalCall, phase: Phase, fired: list[ExternalCall]) -> None:
    if phase == "before" and not fired and call.function == CHECKER and call.name.startswith("GET "):
        fired.append(call)
        raise RuntimeError("injected: an unexpected error in one check")


@pytest.mark.parametrize(
    "fault", [_throttle_first_dynamodb_call, _break_first_import_read], ids=["dynamodb-throttle", "unexpected-error"]
)
def test_12_one_transient_error_in_a_check_still_ends_done(
    fault: Callable[[ExternalCall, Phase, list[ExternalCall]], None],
) -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=1.5)) as offline:
        fired: list[ExternalCall] = []
        hook(offline, lambda call, phase: fault(call, phase, fired))
        sync_id = drop_roster(offline)
        process = wait_closed(offline, sync_id)
        quiet(offline)
        assert fired, "the fault was not injected"
        assert process["status"] == "DONE", offline.dump(sync_id)
        assert offline.execution_status(sync_id) == "SUCCEEDED"
        assert len(offline.emulator.uploads) == 1


# --- 13: the final update keeps failing; the watchdog closes the sync later --------------------------


def test_13_watchdog_shows_a_finished_import_as_done_after_the_final_update_kept_failing() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.5)) as offline:
        armed: list[ExternalCall] = []

        def fail_every_final_update(call: ExternalCall, phase: Phase) -> None:
            # from the finalizer's first call on, ChartHop answers 503 to every updateProcess
            if phase == "before" and not armed and call.function == FINALIZER:
                armed.append(call)
                offline.emulator.inject("updateProcess", *[Fault.http(503)] * 400)

        hook(offline, fail_every_final_update)
        sync_id = drop_roster(offline)
        execution = offline.execution(sync_id)
        deadline = time.monotonic() + 10
        while execution is None and time.monotonic() < deadline:
            time.sleep(0.05)
            execution = offline.execution(sync_id)
        assert execution is not None
        ended = offline.wait_for_execution(execution["executionArn"], timeout=40)
        offline.runtime.wait_idle()
        assert armed, "the finalizer never ran"
        assert ended["status"] == "FAILED"  # the finalizer gave up: the sync could not be closed
        assert offline.emulator.process(sync_id)["status"] not in TERMINAL

        offline.runtime.external_call_hook = None
        offline.emulator.clear_faults()  # ChartHop recovers; EventBridge hands the failed execution over
        offline.deliver_execution_end(ended["executionArn"])
        offline.runtime.wait_idle()
        process = offline.emulator.process(sync_id)
        assert process["status"] == "DONE", offline.dump(sync_id)
        assert process["message"].startswith("Imported roster.csv")
        assert f"{ROSTER_ROWS} rows" in process["message"]
        assert "status loop failed" not in process["message"]
        assert len(offline.emulator.uploads) == 1


# --- 16: another app's process -----------------------------------------------------------------------


def test_16_sync_now_without_app_id_for_another_apps_process_touches_nothing() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), import_on_upload=False) as offline:
        offline.stage("roster.csv", ROSTER)
        quiet(offline)
        emulator = offline.emulator
        theirs = emulator._new_process(
            label="someone else's sync",
            process_type=assumed.CHARTHOP_SYNC_PROCESS_TYPE,
            run_user_id=emulator.config.admin_user_id,
            options={},
            app_id="0123456789abcdef01234567",
        )
        event = emulator.sync_now_event(theirs)
        del event["appId"]  # a delivery that does not say whose process it is
        event["payload"] = {key: value for key, value in theirs.items() if key != "appId"}
        assert requests.post(offline.authorised_webhook_url, json=event, timeout=10).status_code == 202
        quiet(offline)
        assert emulator.uploads == []
        assert emulator.updates_for(theirs["id"]) == []
        assert emulator.process(theirs["id"])["status"] == "PENDING"
        assert offline.staged_keys() == [offline.staged_key("roster.csv")]


def test_a_sync_now_whose_process_cannot_be_read_is_still_closed() -> None:
    """ChartHop answers every getProcess with 503 while the start runs: the checks never confirm the process,
    but its delivery named this app's id, so the process handed to the app is closed, not left PENDING."""
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), import_on_upload=False) as offline:
        offline.stage("roster.csv", ROSTER)
        quiet(offline)
        # the trigger reads the process once (to tell an echo), the loop's first task on each of its 3 attempts
        offline.emulator.inject("getProcess", *[Fault.http(503)] * (CLIENT_TRIES * 4))
        process = offline.emulator.press_sync_now()["process"]
        closed = wait_closed(offline, process["id"])
        assert closed["status"] == "ERROR", closed
        assert "Could not start the import" in closed["message"]
        assert "stays staged" in closed["message"]
        assert offline.emulator.uploads == []
        assert offline.staged_keys() == [offline.staged_key("roster.csv")]


# --- 17: folder markers --------------------------------------------------------------------------------


def test_17_folder_markers_start_no_sync_and_move_nothing() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3)) as offline:
        prefix = offline.stack.parameters["StagingPrefix"]
        offline.put(f"{prefix}{offline.org_id}/", b"")
        offline.put(f"{prefix}{offline.org_id}/sub/", b"")
        quiet(offline)
        assert offline.runtime.invocations_of(IMPORTER), "S3 did not notify the import starter"
        assert offline.sync_processes() == []
        assert offline.emulator.updates == []
        assert failed_objects(offline) == []


def test_an_upload_staged_while_charthop_is_down_is_imported_once_by_the_redriver() -> None:
    """Campaign seeds 373 and 431: createProcess failed through every try of the trigger and Lambda's retries,
    so the upload's event ended in the failed-events queue with its file still staged and no sync saying why
    (ChartHop was down: there was nowhere to say it). The scheduled redriver sends it again once ChartHop
    answers: one sync, one import; a second run finds nothing to do."""
    with offline_environment(
        import_behaviour=ImportBehaviour(duration_s=0.3), extra_env={"AUTO_REDRIVE_RETRY_SECONDS": "0"}
    ) as offline:
        offline.emulator.inject("createProcess", *[Fault.http(502)] * 200)
        offline.stage("roster.csv", ROSTER)
        quiet(offline)
        assert offline.failed_events() == 1
        assert offline.sync_processes() == []
        assert offline.emulator.uploads == []
        assert offline.redrive_failed_events() == {"outcomes": {"failed": 1}}  # still down: kept for later
        assert offline.failed_events() == 1

        offline.emulator.clear_faults()  # ChartHop answers again; the next scheduled run:
        assert offline.redrive_failed_events() == {"outcomes": {"redriven": 1}}
        [sync] = offline.sync_processes()
        assert wait_closed(offline, sync["id"])["status"] == "DONE"
        assert len(offline.emulator.uploads) == 1
        assert offline.failed_events() == 0
        assert offline.redrive_failed_events() == {"outcomes": {}}
        assert len(offline.sync_processes()) == 1
        assert len(offline.emulator.uploads) == 1
