"""The sync use cases with moto S3/Step Functions, the emulator, and a scripted import target."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from offline.charthop_emulator import ChartHopEmulator
from people_sync import sync_service, sync_start
from people_sync.charthop_client import ChartHopClient
from people_sync.config import AppSettings
from people_sync.errors import ChartHopRejected, TargetUnavailable
from people_sync.models import ImportJob, ImportOptions, ImportStatus, StagedFile, StartRequest, SyncState
from people_sync.start_journal import upload_trigger
from people_sync.sync_service import SyncContext
from people_sync.targets.base import OpenBody
from people_sync.targets.charthop import ChartHopProgressReporter

BUCKET = "people-sync-staging-test"
ORG = "588f7ee98f138b19220041a7"


class ScriptedTarget:
    """An import target whose statuses are scripted, so each loop decision can be checked."""

    name = "scripted"
    display_name = "Scripted"
    calls_back = False
    min_check_interval_seconds = 1

    def __init__(self, statuses: list[ImportStatus] | None = None, fail: Exception | None = None) -> None:
        self.statuses = statuses or []
        self.fail = fail
        self.started: list[tuple[StagedFile, bytes, str]] = []
        self.abandoned: list[ImportJob] = []

    def start_import(
        self, staged: StagedFile, open_body: OpenBody, *, sync_id: str, callback_url: str | None = None
    ) -> ImportJob:
        if self.fail:
            raise self.fail
        body, _size = open_body()
        self.started.append((staged, body.read(), sync_id))
        return ImportJob(import_id=f"import-{len(self.started)}")

    def abandon(self, job: ImportJob) -> None:
        self.abandoned.append(job)

    def import_status(self, job: ImportJob, open_body: OpenBody) -> tuple[ImportStatus, ImportJob]:
        return self.statuses.pop(0), job


class RecordingReporter:
    """Records progress and outcomes; opens syncs in ChartHop (the emulator) when given its reporter."""

    def __init__(self, charthop: ChartHopProgressReporter | None = None) -> None:
        self.progress: list[tuple[str, float, str]] = []
        self.finished: list[dict[str, Any]] = []
        self.charthop = charthop

    def start_sync(self, name: str, source: str, version_id: str | None) -> str:
        assert self.charthop is not None, "this test opens no syncs"
        return self.charthop.start_sync(name, source, version_id)

    def is_closed(self, sync_id: str) -> bool:
        return any(entry["sync_id"] == sync_id for entry in self.finished)

    def report_progress(self, sync_id: str, progress: float, message: str) -> None:
        self.progress.append((sync_id, progress, message))

    def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None:
        self.finished.append({"sync_id": sync_id, "succeeded": succeeded, "message": message, "results": results})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sfn = boto3.client("stepfunctions")
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        machine = sfn.create_state_machine(
            name="sync",
            roleArn=role,
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        )["stateMachineArn"]
        yield {"s3": s3, "sfn": sfn, "machine": machine}


def make_ctx(
    aws: dict[str, Any],
    emulator: ChartHopEmulator,
    client: ChartHopClient,
    target: ScriptedTarget,
    *,
    import_on_upload: bool = True,
    queue_settle_seconds: float = 1.0,
) -> tuple[SyncContext, RecordingReporter, Clock]:
    settings = AppSettings(
        org_id=ORG,
        app_name="people-sync",
        app_user_id=emulator.config.app_user_id,
        charthop_base_url=emulator.base_url,
        token_secret_name="unused",
        settings_parameter_name="unused",
        staging_bucket=BUCKET,
        staging_prefix="staging/",
        state_machine_arn=aws["machine"],
        import_starter_function="unused",
        poll_initial_seconds=5,
        poll_max_seconds=60,
        import_timeout_seconds=600,
        import_on_upload=import_on_upload,
        app_id=emulator.config.app_id,
        queue_settle_seconds=queue_settle_seconds,  # test-sized, as offline (2 s deployed)
    )
    reporter = RecordingReporter(
        ChartHopProgressReporter(client, ORG, app_name="people-sync", app_user_id=emulator.config.app_user_id)
    )
    clock = Clock()
    ctx = SyncContext(
        settings=settings,
        charthop=client,
        target=target,
        reporter=reporter,
        s3=aws["s3"],
        stepfunctions=aws["sfn"],
        clock=clock,
        sleep=clock.sleep,
    )
    return ctx, reporter, clock


def csv_body(marker: str) -> bytes:
    return f"Employee ID,Note\nE1,{marker}\n".encode()


def stage(aws: dict[str, Any], name: str, body: bytes = b"Employee ID\nE1\n") -> StagedFile:
    key = f"staging/{ORG}/{name}"
    version = aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]
    return StagedFile(bucket=BUCKET, key=key, version_id=version, org_id=ORG, size=len(body))


def test_sync_now_imports_the_newest_csv_and_starts_one_loop(aws, emulator, client) -> None:
    target = ScriptedTarget()
    ctx, reporter, _ = make_ctx(aws, emulator, client, target)
    stage(aws, "old.csv", csv_body("old"))
    time.sleep(1.05)  # S3 lists modification times to the second
    stage(aws, "new.csv", csv_body("new"))
    stage(aws, "notes.txt", b"not a csv")
    sync_id = emulator.create_sync_process()["id"]
    assert sync_start.sync_now_requested(ctx, ORG, sync_id, app_id=emulator.config.app_id) == sync_id
    [execution] = aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]
    assert execution["name"] == f"sync-{sync_id}"
    started_with = json.loads(aws["sfn"].describe_execution(executionArn=execution["executionArn"])["input"])
    state = sync_start.begin_sync(ctx, StartRequest.model_validate(started_with))
    assert isinstance(state, SyncState)
    assert [(staged.name, body, sync) for staged, body, sync in target.started] == [
        ("new.csv", csv_body("new"), sync_id)
    ]
    # "starts in a few seconds" (the settle time), "checking and uploading", "accepted"
    assert [round(p, 3) for _, p, _ in reporter.progress] == [0.005, 0.02, 0.05]
    assert state.import_id == "import-1"
    assert state.poll.wait_seconds == 5


def test_same_second_uploads_pick_the_greater_key(aws, emulator, client) -> None:
    target = ScriptedTarget()
    ctx, _, _ = make_ctx(aws, emulator, client, target)
    for _ in range(5):  # S3 times are to the second: stage both within one second (a boundary may fall between)
        later = stage(aws, "roster-2026-11-23T0900.csv", csv_body("later"))
        earlier = stage(aws, "roster-2026-11-22T0900.csv", csv_body("earlier"))
        times = [aws["s3"].head_object(Bucket=BUCKET, Key=f.key)["LastModified"] for f in (later, earlier)]
        if times[0] == times[1]:
            break
    assert times[0] == times[1], "could not stage two files within one second"
    sync_start.sync_now(ctx, ORG, emulator.create_sync_process()["id"])
    assert target.started[0][1] == csv_body("later")


def test_sync_now_without_a_staged_file_marks_the_sync_error(aws, emulator, client) -> None:
    target = ScriptedTarget()
    ctx, reporter, _ = make_ctx(aws, emulator, client, target)
    assert sync_start.sync_now(ctx, ORG, emulator.create_sync_process()["id"]) is None
    [finished] = reporter.finished
    assert not finished["succeeded"]
    assert "No CSV is staged" in finished["message"]
    assert target.started == []


def test_a_second_start_for_the_same_sync_runs_no_second_loop(aws, emulator, client) -> None:
    ctx, _, _ = make_ctx(aws, emulator, client, ScriptedTarget())
    staged = stage(aws, "roster.csv")
    request = StartRequest(kind="upload", org_id=ORG, sync_process_id="sync-1", file=staged)
    sync_start.start_status_loop(ctx, request)
    sync_start.start_status_loop(ctx, request)
    sync_start.start_status_loop(ctx, request.model_copy(update={"kind": "sync-now"}))
    assert len(aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]) == 1


def test_import_that_cannot_start_marks_the_sync_error(aws, emulator, client) -> None:
    target = ScriptedTarget(fail=ChartHopRejected("ChartHop refused to start the import (HTTP 403)", status=403))
    ctx, reporter, _ = make_ctx(aws, emulator, client, target)
    assert sync_start.start_import(ctx, stage(aws, "roster.csv"), "sync-1") is None
    assert reporter.finished[0]["message"].startswith("Scripted refused roster.csv")
    assert "HTTP 403" in reporter.finished[0]["message"]
    assert "moved to s3://" in reporter.finished[0]["message"]


def test_file_drop_creates_a_charthop_sync_process(aws, emulator, client) -> None:
    target = ScriptedTarget()
    ctx, _, _ = make_ctx(aws, emulator, client, target)
    sync_id = sync_start.file_dropped(ctx, stage(aws, "roster.csv"))
    process = emulator.process(sync_id)
    assert process["type"] == "sync"
    assert process["runUserId"] == emulator.config.app_user_id
    assert "roster.csv" in process["label"]


def test_file_drop_waits_for_sync_now_when_configured(aws, emulator, client) -> None:
    target = ScriptedTarget()
    ctx, _, _ = make_ctx(aws, emulator, client, target, import_on_upload=False)
    staged = stage(aws, "roster.csv")
    assert sync_start.object_staged(ctx, BUCKET, staged.key, staged.version_id, staged.size) is None
    assert target.started == []
    assert emulator.processes == {}


def loop_state(aws: dict[str, Any], clock: Clock) -> SyncState:
    staged = StagedFile(bucket=BUCKET, key=f"staging/{ORG}/roster.csv", org_id=ORG)
    return SyncState.model_validate(
        {
            "orgId": ORG,
            "syncProcessId": "sync-1",
            "importId": "import-1",
            "file": staged.to_json_dict(),
            "poll": {
                "waitSeconds": 5,
                "initialSeconds": 5,
                "maxSeconds": 60,
                "timeoutSeconds": 600,
                "startedAt": clock.now,
            },
            "reportedProgress": 0.05,
        }
    )


def test_check_import_reports_only_forward_progress_and_backs_off(aws, emulator, client) -> None:
    target = ScriptedTarget(
        [
            ImportStatus(state="pending"),
            ImportStatus(state="running", progress=0.5),
            ImportStatus(state="running", progress=0.5),
            ImportStatus(state="running", progress=0.4),
        ]
    )
    ctx, reporter, clock = make_ctx(aws, emulator, client, target)
    state = loop_state(aws, clock)
    waits = []
    for _ in range(4):
        clock.now += state.poll.wait_seconds
        state = sync_service.check_import(ctx, state)
        waits.append(state.poll.wait_seconds)
        assert not state.finished
    assert [round(p, 2) for _, p, _ in reporter.progress] == [0.5]
    assert "importing (50%)" in reporter.progress[0][2]
    assert waits == [15, 60, 60, 60]  # the ladder: 3x the import's age early, PollMaxSeconds after


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (ImportStatus(state="done", progress=1, results={"rows": 2}), "DONE"),
        (ImportStatus(state="failed", message="Unknown column Salary"), "ERROR"),
    ],
)
def test_check_import_stops_on_a_terminal_import(aws, emulator, client, status, outcome) -> None:
    ctx, _, clock = make_ctx(aws, emulator, client, ScriptedTarget([status]))
    state = sync_service.check_import(ctx, loop_state(aws, clock))
    assert (state.finished, state.outcome) == (True, outcome)


def test_check_import_times_out(aws, emulator, client) -> None:
    ctx, _, clock = make_ctx(aws, emulator, client, ScriptedTarget([ImportStatus(state="running", progress=0.2)]))
    state = loop_state(aws, clock)
    clock.now += 600
    state = sync_service.check_import(ctx, state)
    assert (state.finished, state.outcome) == (True, "TIMED_OUT")


def test_finish_sync_messages(aws, emulator, client) -> None:
    ctx, reporter, clock = make_ctx(aws, emulator, client, ScriptedTarget())
    base = loop_state(aws, clock)
    done = base.model_copy(update={"outcome": "DONE", "results": {"rows": 2, "created": 1, "updated": 1}})
    assert sync_service.finish_sync(ctx, done) == {
        "status": "DONE",
        "message": "Imported roster.csv: 2 rows, 1 created, 1 updated",
    }
    failed = base.model_copy(
        update={"sync_process_id": "sync-2", "outcome": "ERROR", "import_message": "Unknown column Salary"}
    )
    assert "Unknown column Salary" in sync_service.finish_sync(ctx, failed)["message"]
    late = base.model_copy(update={"sync_process_id": "sync-3", "outcome": "TIMED_OUT"})
    assert "did not finish within 10 minutes" in sync_service.finish_sync(ctx, late)["message"]
    assert [entry["succeeded"] for entry in reporter.finished] == [True, False, False]
    assert reporter.finished[0]["results"]["importProcessId"] == "import-1"
    sync_service.finish_sync(ctx, failed.model_copy(update={"sync_process_id": base.sync_process_id}))
    assert len(reporter.finished) == 3  # a sync is closed once: nothing is written after its final status


def test_giving_up_on_an_import_frees_what_the_target_holds_for_it(aws, emulator, client) -> None:
    target = ScriptedTarget()
    ctx, _, clock = make_ctx(aws, emulator, client, target)
    base = loop_state(aws, clock)
    sync_service.finish_sync(ctx, base.model_copy(update={"outcome": "DONE"}))
    assert target.abandoned == []
    sync_service.finish_sync(ctx, base.model_copy(update={"sync_process_id": "sync-2", "outcome": "TIMED_OUT"}))
    sync_service.workflow_failed(
        ctx, base.model_copy(update={"sync_process_id": "sync-3"}), {"Error": "States.Timeout", "Cause": "x"}
    )
    assert [job.import_id for job in target.abandoned] == ["import-1", "import-1"]


def test_workflow_failure_shows_the_lambda_error_message(aws, emulator, client) -> None:
    ctx, reporter, clock = make_ctx(aws, emulator, client, ScriptedTarget())
    error = {"Error": "ChartHopRejected", "Cause": json.dumps({"errorMessage": "token revoked", "errorType": "X"})}
    outcome = sync_service.workflow_failed(ctx, loop_state(aws, clock), error)
    assert outcome == {
        "status": "ERROR",
        "message": "Could not follow Scripted's import of roster.csv (import import-1): token revoked. "
        "The import may still be running or have finished in Scripted; check it there.",
    }
    assert not reporter.finished[0]["succeeded"]


def test_sync_now_for_another_org_starts_nothing(aws, emulator, client) -> None:
    target = ScriptedTarget()
    ctx, reporter, _ = make_ctx(aws, emulator, client, target)
    stage(aws, "roster.csv", csv_body("x"))
    assert sync_start.sync_now(ctx, "some-other-org", emulator.create_sync_process()["id"]) is None
    assert (target.started, reporter.progress, reporter.finished) == ([], [], [])
    assert emulator.calls == []


def test_a_second_sync_now_while_the_first_is_starting_is_refused_by_the_orgs_slot(aws, emulator, client) -> None:
    target = ScriptedTarget()
    ctx, reporter, _ = make_ctx(aws, emulator, client, target)
    stage(aws, "roster.csv")
    first, second = emulator.create_sync_process()["id"], emulator.create_sync_process()["id"]
    # the first press's import starter is half-way: it holds the slot, ChartHop shows nothing RUNNING yet
    assert ctx.slots.acquire(sync_service.sync_now_slot(ORG), first, 60)
    assert sync_start.sync_now(ctx, ORG, second) is None
    assert reporter.finished[-1]["sync_id"] == second
    assert reporter.finished[-1]["message"].startswith("Another sync is already running; this one was not started.")
    assert target.started == []
    sync_service.fail_sync(ctx, first, "The sync of roster.csv stopped: ...")  # the first sync is closed
    third = emulator.create_sync_process()["id"]
    state = sync_start.sync_now(ctx, ORG, third)
    assert state is not None
    assert not ctx.slots.acquire(sync_service.sync_now_slot(ORG), "someone-else", 60)  # held by the third
    sync_service.finish_sync(ctx, state.model_copy(update={"outcome": "DONE"}))
    assert ctx.slots.acquire(sync_service.sync_now_slot(ORG), "someone-else", 60)  # freed when it was closed


class FlakyFinishReporter(RecordingReporter):
    """ChartHop takes the final update but the answer is lost the first time (campaign seed 73)."""

    def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None:
        super().finish(sync_id, succeeded=succeeded, message=message, results=results, summary=summary)
        self.finished[-1]["summary"] = summary
        if len(self.finished) == 1:
            raise TargetUnavailable("ChartHop did not answer when trying to update the sync process.")


@pytest.mark.parametrize("outcome", ["DONE", "ERROR"])
def test_a_retried_close_writes_the_same_final_status_again(aws, emulator, client, outcome) -> None:
    """The finalizer is retried after a final update whose answer was lost: the retry must write the very same
    final status (not a new elapsed time or a second failed/ copy), so nothing different follows the final."""
    ctx, _, clock = make_ctx(aws, emulator, client, ScriptedTarget())
    reporter = FlakyFinishReporter()
    ctx.reporter = reporter
    staged = stage(aws, "roster.csv")
    state = loop_state(aws, clock).model_copy(
        update={"file": staged, "outcome": outcome, "import_message": "Unknown column Salary"}
    )
    with pytest.raises(TargetUnavailable):
        sync_service.finish_sync(ctx, state)
    clock.now += 42
    sync_service.finish_sync(ctx, state)
    first, second = reporter.finished
    assert first == second
    failed_copies = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="failed/").get("KeyCount", 0)
    assert failed_copies == (2 if outcome == "ERROR" else 0)  # one copy and its report, moved once


@pytest.mark.parametrize(("waited", "wait"), [(2, 5), (300, 30), (5000, 60)])
def test_a_queued_start_asks_again_less_often_the_longer_it_waits(aws, emulator, client, waited, wait) -> None:
    ctx, reporter, clock = make_ctx(aws, emulator, client, ScriptedTarget())
    ctx.queue.take_turn(
        sync_service.target_queue_key(ctx), "holder", at=0.0, name="roster-1.csv", now=clock.now, hold_seconds=600
    )
    staged = stage(aws, "roster-2.csv")
    request = StartRequest(
        kind="upload", org_id=ORG, sync_process_id="waiting", file=staged, staged_at=clock.now - waited
    )
    queued = sync_start.begin_sync(ctx, request)
    assert queued == sync_start.Queued("roster-1.csv", wait)
    assert reporter.progress[-1][2].startswith("roster-2.csv is queued behind roster-1.csv")


def test_a_sync_opened_by_a_simultaneous_duplicate_delivery_is_closed_not_left_open(aws, emulator, client) -> None:
    """Two deliveries of one object version open a sync at the same time: the journal keeps the first one
    recorded, and the other process is closed (I2: no sync the app opened stays open)."""
    ctx, reporter, _ = make_ctx(aws, emulator, client, ScriptedTarget())
    staged = stage(aws, "roster.csv")
    trigger = upload_trigger(staged.bucket, staged.key, staged.version_id)
    opened = reporter.start_sync

    def start_sync_while_the_other_delivery_wins(name: str, source: str, version_id: str | None) -> str:
        ctx.journal.opened(trigger, "the-other-delivery's-sync")
        return opened(name, source, version_id)

    reporter.start_sync = start_sync_while_the_other_delivery_wins  # type: ignore[method-assign]
    assert sync_start.open_sync(ctx, staged) == "the-other-delivery's-sync"
    [closed] = reporter.finished
    assert closed["succeeded"]
    assert closed["sync_id"] != "the-other-delivery's-sync"
    assert "synced under another sync process" in closed["message"]


# --- echoes of our own processes (issue 12): a process.create for them starts and touches nothing -------


def _own_upload_process(emulator: ChartHopEmulator, client: ChartHopClient) -> str:
    """The sync process an upload opens (through the production reporter: marked in its options)."""
    reporter = ChartHopProgressReporter(
        client, ORG, app_name="people-sync", app_user_id=emulator.config.app_user_id, app_id=emulator.config.app_id
    )
    return reporter.start_sync("roster.csv", f"s3://{BUCKET}/staging/{ORG}/roster.csv", "v1")


def _journal_only_process(ctx: SyncContext, client: ChartHopClient, emulator: ChartHopEmulator) -> str:
    """A sync process an upload opened whose mark ChartHop did not keep: only the start journal knows it."""
    process = client.create_process(
        ORG, label="people-sync: roster.csv", process_type="sync", run_user_id=emulator.config.app_user_id, app_id=ORG
    )
    emulator.processes[process.id]["appId"] = emulator.config.app_id
    assert emulator.process(process.id)["options"] == {}
    ctx.journal.opened(upload_trigger(BUCKET, f"staging/{ORG}/roster.csv", "v1"), process.id)
    return process.id


def _child_import_process(emulator: ChartHopEmulator, client: ChartHopClient) -> str:
    """The child process importDataCsv creates under a sync."""
    parent = emulator.create_sync_process()["id"]
    body = b"Employee ID\nE1\n"
    child = client.import_csv(
        ORG,
        lambda: (io.BytesIO(body), len(body)),
        file_name="roster.csv",
        options=ImportOptions(),
        parent_process_id=parent,
    )
    return child.id


@pytest.mark.parametrize("kind", ["options mark", "journal only", "child import"])
def test_an_echo_of_our_own_process_starts_and_touches_nothing(aws, emulator, client, kind: str) -> None:
    target = ScriptedTarget()
    ctx, reporter, _ = make_ctx(aws, emulator, client, target)
    stage(aws, "roster.csv", csv_body("staged"))
    if kind == "options mark":
        sync_id = _own_upload_process(emulator, client)
    elif kind == "journal only":
        sync_id = _journal_only_process(ctx, client, emulator)
    else:
        sync_id = _child_import_process(emulator, client)
    imports_before = len(emulator.uploads)
    # the trigger starts no execution ...
    assert sync_start.sync_now_requested(ctx, ORG, sync_id, app_id=emulator.config.app_id) is None
    assert aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"] == []
    # ... and an echo that slipped past it is ignored by the loop's first task without touching the process
    request = StartRequest(kind="sync-now", org_id=ORG, sync_process_id=sync_id, app_id=emulator.config.app_id)
    assert sync_start.begin_sync(ctx, request) is None
    assert target.started == []
    assert reporter.progress == []
    assert reporter.finished == []
    assert emulator.updates_for(sync_id) == []
    assert len(emulator.uploads) == imports_before
    assert ctx.slots.acquire(sync_service.sync_now_slot(ORG), "probe", 60), "the echo took the Sync Now slot"


def test_a_genuine_press_is_not_taken_for_an_echo(aws, emulator, client) -> None:
    """A process ChartHop created for a press (no mark, no parent, not in the journal) still starts a sync."""
    target = ScriptedTarget()
    ctx, _, _ = make_ctx(aws, emulator, client, target)
    stage(aws, "roster.csv", csv_body("staged"))
    sync_id = emulator.create_sync_process()["id"]
    assert sync_start.echo_of_own_process(ctx, ORG, sync_id) is None
    assert sync_start.sync_now_requested(ctx, ORG, sync_id, app_id=emulator.config.app_id) == sync_id
    [execution] = aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]
    started_with = json.loads(aws["sfn"].describe_execution(executionArn=execution["executionArn"])["input"])
    assert isinstance(sync_start.begin_sync(ctx, StartRequest.model_validate(started_with)), SyncState)
    assert [sync for _, _, sync in target.started] == [sync_id]


def test_a_closed_sync_whose_slot_release_failed_does_not_refuse_the_next_press(aws, emulator, client) -> None:
    """Campaign seed 192: the DeleteItem that frees the org's Sync Now slot failed when the first sync closed
    (nothing retries it), and every later press was refused until the slot expired. A holder whose sync is
    closed is done: the next press takes the slot over."""
    target = ScriptedTarget()
    ctx, reporter, _ = make_ctx(aws, emulator, client, target)
    stage(aws, "roster.csv")
    first = emulator.create_sync_process()["id"]
    assert ctx.slots.acquire(sync_service.sync_now_slot(ORG), first, 3600)
    real_release = ctx.slots.release

    def failing_release(key: str, owner: str) -> None:
        raise RuntimeError("DynamoDB InternalError")

    ctx.slots.release = failing_release  # type: ignore[method-assign]
    sync_service.fail_sync(ctx, first, "The sync of roster.csv stopped: ...")
    ctx.slots.release = real_release  # type: ignore[method-assign]
    assert ctx.slots.holder(sync_service.sync_now_slot(ORG)) == first  # still held by the closed sync

    second = emulator.create_sync_process()["id"]
    assert sync_start.sync_now(ctx, ORG, second) is not None
    assert [f["sync_id"] for f in reporter.finished] == [first]  # the second press was not refused
    assert ctx.slots.holder(sync_service.sync_now_slot(ORG)) == second


def test_a_slot_held_by_a_sync_still_running_is_not_taken_over(aws, emulator, client) -> None:
    target = ScriptedTarget()
    ctx, reporter, _ = make_ctx(aws, emulator, client, target)
    stage(aws, "roster.csv")
    first, second = emulator.create_sync_process()["id"], emulator.create_sync_process()["id"]
    assert ctx.slots.acquire(sync_service.sync_now_slot(ORG), first, 3600)
    assert sync_start.sync_now(ctx, ORG, second) is None
    assert reporter.finished[-1]["message"].startswith("Another sync is already running")
    assert ctx.slots.holder(sync_service.sync_now_slot(ORG)) == first


def test_a_slot_release_that_fails_once_is_tried_again_when_the_sync_closes(aws, emulator, client) -> None:
    ctx, _, _ = make_ctx(aws, emulator, client, ScriptedTarget())
    first = emulator.create_sync_process()["id"]
    assert ctx.slots.acquire(sync_service.sync_now_slot(ORG), first, 3600)
    real_release, failures = ctx.slots.release, [RuntimeError("DynamoDB InternalError")]

    def flaky_release(key: str, owner: str) -> None:
        if failures:
            raise failures.pop()
        real_release(key, owner)

    ctx.slots.release = flaky_release  # type: ignore[method-assign]
    sync_service.fail_sync(ctx, first, "The sync of roster.csv stopped: ...")
    assert ctx.slots.holder(sync_service.sync_now_slot(ORG)) is None


# --- ChartHop refuses the org's token half-way through a start (issue 13) ---------------------------------------


@pytest.mark.parametrize("close_refused_too", [False, True], ids=["close-written", "close-refused-too"])
def test_a_token_refused_mid_start_keeps_the_file_staged_records_it_and_holds_nothing(
    aws, emulator, client, monkeypatch: pytest.MonkeyPatch, close_refused_too: bool
) -> None:
    """Not the file's fault: it stays staged (no copy in failed/); the refusal is recorded for the org with the
    sync; the org's Sync Now slot and its queue turn are freed even when the close cannot be written either."""
    from people_sync import org_tokens
    from people_sync.errors import ChartHopTokenRefused

    refused = ChartHopTokenRefused("ChartHop refused to start the import (HTTP 401).", operation="start the import")
    target = ScriptedTarget(fail=refused)
    ctx, reporter, clock = make_ctx(aws, emulator, client, target)
    noted: list[tuple[str, str, str | None]] = []

    def note(settings: AppSettings, org_id: str, error: ChartHopTokenRefused, *, sync_process_id: str | None = None):
        noted.append((org_id, error.operation, sync_process_id))

    monkeypatch.setattr(org_tokens, "note_refusal", note)
    if close_refused_too:

        def finish(*args: Any, **kwargs: Any) -> None:
            raise ChartHopTokenRefused("ChartHop refused to update the sync process (HTTP 401).", operation="update")

        monkeypatch.setattr(reporter, "finish", finish)
    staged = stage(aws, "roster.csv")
    slot = sync_service.sync_now_slot(ORG)
    assert ctx.slots.acquire(slot, "sync-1", 600)
    ctx.queue.join(sync_service.target_queue_key(ctx), "sync-1", at=clock(), name=staged.name, now=clock())

    assert sync_start.start_import(ctx, staged, "sync-1") is None

    assert noted == [(ORG, "start the import", "sync-1")]
    assert aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="failed/").get("KeyCount") == 0
    assert aws["s3"].head_object(Bucket=BUCKET, Key=staged.key)["VersionId"] == staged.version_id
    assert ctx.slots.holder(slot) is None
    turn = ctx.queue.take_turn(
        sync_service.target_queue_key(ctx), "sync-2", at=clock(), name="next.csv", now=clock() + 5, hold_seconds=60
    )
    assert turn.granted  # nobody is ahead: sync-1 left the queue
    if not close_refused_too:
        [finished] = reporter.finished
        assert "ChartHop refused the app's token (start the import)" in finished["message"]
        assert "stays staged" in finished["message"]


class FailsOnceTarget(ScriptedTarget):
    """The first start_import is refused with a transient SyncError (a 503 burst before the import took effect)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def start_import(
        self, staged: StagedFile, open_body: OpenBody, *, sync_id: str, callback_url: str | None = None
    ) -> ImportJob:
        self.calls += 1
        if self.calls == 1:
            raise TargetUnavailable("Scripted did not answer (HTTP 503).")
        return super().start_import(staged, open_body, sync_id=sync_id, callback_url=callback_url)

    def find_started_import(self, staged: StagedFile, sync_id: str) -> ImportJob | None:
        """As ChartHop: an import under the sync process, if one was started (none was: the POST got 503s)."""
        return None


class FinishFailsOnceReporter(RecordingReporter):
    """The close's final update is lost once (ChartHop 5xx burst past the client's tries, or a throttle)."""

    def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None:
        super().finish(sync_id, succeeded=succeeded, message=message, results=results, summary=summary)
        if len(self.finished) == 1:
            raise TargetUnavailable("ChartHop did not answer when trying to update the sync process.")


def _closed_by_a_start_whose_final_write_failed(
    aws: dict[str, Any], emulator: ChartHopEmulator, client: ChartHopClient
) -> tuple[SyncContext, FailsOnceTarget, FinishFailsOnceReporter, Clock, StartRequest]:
    """StartImport: the target refuses the import (transient) -> fail_sync("... The file stays staged") -> the
    final update fails -> close_sync's finally leaves the queue -> the task fails; the state machine then
    retries StartImport (States.TaskFailed)."""
    target = FailsOnceTarget()
    ctx, _, clock = make_ctx(aws, emulator, client, target)
    reporter = FinishFailsOnceReporter()
    ctx.reporter = reporter
    staged = stage(aws, "roster.csv")
    request = StartRequest(
        kind="upload",
        org_id=ORG,
        sync_process_id="sync-1",
        file=staged,
        staged_at=clock.now - 10,
        loop_started_at=clock.now - 10,
    )
    ctx.queue.join(sync_service.target_queue_key(ctx), "sync-1", at=clock.now - 10, name="roster.csv", now=clock.now)
    with pytest.raises(TargetUnavailable):  # attempt 1: the close's write failed, the task fails
        sync_start.begin_sync(ctx, request)
    assert ctx.loop_memory.load("sync-1").closed_at is not None
    assert "stays staged" in reporter.finished[0]["message"]
    clock.now += 2  # StartImport's retry (States.TaskFailed, 2 s)
    return ctx, target, reporter, clock, request


def test_a_start_retried_after_its_close_failed_imports_nothing_and_takes_no_turn(aws, emulator, client) -> None:
    """Review of the turn under faults: the retry imported the file of a sync already closed ERROR ("the file
    stays staged") and took the target's turn again (I1, I3)."""
    ctx, target, _, clock, request = _closed_by_a_start_whose_final_write_failed(aws, emulator, client)
    state = sync_start.begin_sync(ctx, request)
    assert target.started == [], "the retried start imported the file of a sync already closed ERROR"
    assert state is None
    key = sync_service.target_queue_key(ctx)
    assert ctx.queue.next_in_line(key, clock.now) is None
    assert ctx.queue.items[key].get("holder") is None  # type: ignore[attr-defined]


def test_a_start_retried_after_its_close_failed_writes_the_kept_final_and_frees_the_turn(aws, emulator, client) -> None:
    """Before: the retry started an import, the loop's first check found the sync closed ("busy"), wrote the
    stranded final and freed the turn while that import ran: the next file was imported alongside it. Now the
    retry repeats the close (the final the first attempt decided) and the next file gets the turn at once."""
    ctx, target, reporter, clock, request = _closed_by_a_start_whose_final_write_failed(aws, emulator, client)
    sync_start.begin_sync(ctx, request)
    key = sync_service.target_queue_key(ctx)
    later = ctx.queue.take_turn(key, "sync-2", at=clock.now - 5, name="later.csv", now=clock.now, hold_seconds=600)
    assert later.granted, f"the next file waits behind {later.ahead!r}, a sync already closed"
    assert target.started == []
    assert [entry["message"] for entry in reporter.finished] == [reporter.finished[0]["message"]] * 2
    assert ctx.loop_memory.load("sync-1").final_written


def test_a_retried_trigger_after_its_sync_closed_leaves_no_phantom_ahead_of_later_files(aws, emulator, client) -> None:
    """The trigger's StartExecution took effect but answered a throttle: Lambda delivers the event again a minute
    later, after the loop imported the file and closed the sync. The retry used to re-join the closed sync to the
    target's queue, earliest-staged and fresh: every later file waited behind a sync that never asks again."""
    target = ScriptedTarget()
    ctx, _, clock = make_ctx(aws, emulator, client, target)
    key = sync_service.target_queue_key(ctx)
    first = stage(aws, "roster-1.csv")
    staged_at = clock.now
    sync_id = sync_start.file_dropped(ctx, first, staged_at)  # trigger attempt 1 (its loop was started)
    clock.now += 2
    request = StartRequest(
        kind="upload", org_id=ORG, sync_process_id=sync_id, file=first, staged_at=staged_at, loop_started_at=staged_at
    )
    state = sync_start.begin_sync(ctx, request)  # the loop: turn granted, import started
    assert isinstance(state, SyncState)
    clock.now += 20
    sync_service.close_sync(ctx, sync_id, succeeded=True, message="Imported", results={}, summary="Imported")
    clock.now += 40
    assert sync_start.file_dropped(ctx, first, staged_at) == sync_id  # Lambda's retry of the trigger: same sync

    later = stage(aws, "roster-2.csv")
    clock.now += 5
    turn = ctx.queue.take_turn(key, "sync-later", at=clock.now - 3, name=later.name, now=clock.now, hold_seconds=600)
    assert turn.granted, f"nothing is importing, yet the later file waits behind {turn.ahead!r} (a closed sync)"


def test_a_trigger_that_joined_as_its_sync_closed_removes_its_entry(aws, emulator, client, monkeypatch) -> None:
    """The retried trigger looked (import not begun) and joined; the sync closed in between (its turn expired):
    the look after the join removes the entry. A trigger whose removal failed is retried, and the retry does."""
    target = ScriptedTarget()
    ctx, _, clock = make_ctx(aws, emulator, client, target)
    key = sync_service.target_queue_key(ctx)
    first = stage(aws, "roster-1.csv")
    sync_id = sync_start.file_dropped(ctx, first, clock.now)
    real_join = ctx.queue.join

    def join_as_it_closes(*args: Any, **kwargs: Any) -> bool:
        sync_service.fail_sync(ctx, sync_id, "roster-1.csv was not imported: its turn did not come ...")
        return real_join(*args, **kwargs)

    def leave_fails(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("DynamoDB InternalError")

    monkeypatch.setattr(ctx.queue, "join", join_as_it_closes)
    monkeypatch.setattr(ctx.queue, "leave", leave_fails)
    clock.now += 60
    with pytest.raises(RuntimeError):  # the removal failed: the trigger fails and Lambda retries it
        sync_start.file_dropped(ctx, first, clock.now - 60)
    assert ctx.queue.next_in_line(key, clock.now) == sync_id  # a phantom, for now
    monkeypatch.undo()
    assert sync_start.file_dropped(ctx, first, clock.now - 60) == sync_id  # the retry
    assert ctx.queue.next_in_line(key, clock.now) is None


class _Killed(BaseException):
    """The Lambda died here (timeout, out of memory): nothing after this line runs, no `finally` either."""


def test_a_sync_now_start_killed_in_its_close_does_not_keep_the_targets_turn(
    aws, emulator, client, monkeypatch
) -> None:
    """A "Sync Now" that holds the target's turn fails to start its import (a 503 burst) and closes ERROR; the
    import starter dies after the final update, before freeing the turn. StartImport's retry used to read the
    process, see it ERROR ("a replay") and return nothing to follow: the execution SUCCEEDED, so the watchdog
    never ran, and every later file of the org waited until the turn expired (~90 min by default)."""
    target = FailsOnceTarget()
    ctx, _, clock = make_ctx(aws, emulator, client, target)
    charthop_reporter = RecordingReporter(ctx.reporter.charthop)  # type: ignore[attr-defined]

    def finish_in_charthop(sync_id: str, **kwargs: Any) -> None:
        charthop_reporter.charthop.finish(sync_id, **kwargs)  # type: ignore[union-attr]

    charthop_reporter.finish = finish_in_charthop  # type: ignore[method-assign]
    ctx.reporter = charthop_reporter
    stage(aws, "roster.csv")
    sync_id = emulator.create_sync_process()["id"]
    request = StartRequest(
        kind="sync-now",
        org_id=ORG,
        sync_process_id=sync_id,
        app_id=emulator.config.app_id,
        staged_at=clock.now - 10,
        loop_started_at=clock.now - 10,
    )
    real_leave = sync_service._leave_queue

    def killed(ctx: Any, sync_id: str) -> None:
        raise _Killed

    monkeypatch.setattr(sync_service, "_leave_queue", killed)
    monkeypatch.setattr(sync_service, "_free_sync_now_slot", lambda ctx, sync_id: None)
    with pytest.raises(_Killed):
        sync_start.begin_sync(ctx, request)  # attempt 1: took the turn, import refused (503), closed, killed
    monkeypatch.undo()
    key = sync_service.target_queue_key(ctx)
    assert ctx.queue.items[key]["holder"] == sync_id  # type: ignore[attr-defined]
    assert ctx.slots.holder(sync_service.sync_now_slot(ORG)) == sync_id
    assert real_leave is sync_service._leave_queue

    clock.now += 2
    assert sync_start.begin_sync(ctx, request) is None  # the retry: nothing to follow, the execution SUCCEEDS

    clock.now += 60
    turn = ctx.queue.take_turn(key, "sync-later", at=clock.now - 5, name="later.csv", now=clock.now, hold_seconds=600)
    assert turn.granted, f"the turn is still held by the closed sync ({turn.ahead!r}); nobody will free it"
    assert ctx.slots.holder(sync_service.sync_now_slot(ORG)) is None
    assert target.started == []


class ShowingReporter(RecordingReporter):
    """Records progress and writes it to ChartHop too, as the deployed reporter does (the process turns RUNNING)."""

    def report_progress(self, sync_id: str, progress: float, message: str) -> None:
        super().report_progress(sync_id, progress, message)
        assert self.charthop is not None
        self.charthop.report_progress(sync_id, progress, message)


def test_a_sync_now_pressed_while_an_upload_settles_is_refused_not_a_second_import_of_the_file(
    aws, emulator, client
) -> None:
    """QueueSettleSeconds (5 s here): the upload's start waits for files staged just before it. A "Sync Now" pressed
    meanwhile must see that sync running and be refused; it used to find the upload's process still PENDING
    (nothing was shown while it settled), pass, and import the newest staged file: the same roster.csv again.
    (Review finding on the settle time.)"""
    target = ScriptedTarget()
    ctx, recorded, clock = make_ctx(aws, emulator, client, target, queue_settle_seconds=5.0)
    reporter = ShowingReporter(recorded.charthop)
    staged = stage(aws, "roster.csv")
    staged_at = clock.now
    press: dict[str, Any] = {}

    def settle(seconds: float) -> None:  # the user presses Sync Now 1.5 s after uploading, as the upload settles
        clock.now += 1.0
        press["id"] = emulator.create_sync_process()["id"]
        pressed = StartRequest(
            kind="sync-now",
            org_id=ORG,
            sync_process_id=press["id"],
            app_id=emulator.config.app_id,
            staged_at=clock.now,
            loop_started_at=clock.now,
        )
        press["state"] = sync_start.begin_sync(dataclasses.replace(ctx, reporter=reporter, sleep=clock.sleep), pressed)
        clock.now += seconds - 1.0

    ctx = dataclasses.replace(ctx, reporter=reporter, sleep=settle)
    upload = sync_start.file_dropped(ctx, staged, staged_at)
    clock.now += 0.5  # the loop's StartImport
    request = StartRequest(
        kind="upload", org_id=ORG, sync_process_id=upload, file=staged, staged_at=staged_at, loop_started_at=staged_at
    )
    state = sync_start.begin_sync(ctx, request)
    assert isinstance(state, SyncState)
    assert press["state"] is None
    assert [file.name for file, _body, _sync in target.started] == ["roster.csv"]
    [refusal] = [entry for entry in reporter.finished if entry["sync_id"] == press["id"]]
    assert "Another sync is already running" in refusal["message"]
    settling = [message for sync, progress, message in reporter.progress if sync == upload and progress < 0.01]
    assert settling == [
        f"roster.csv starts in a few seconds: files staged just before it go first ({target.display_name} imports "
        "one file at a time, in the order they were staged)"
    ]


def _created(emulator: ChartHopEmulator, process_id: str, at: float) -> None:
    """ChartHop's createAt of the process, on the test's clock (the emulator's is the wall clock)."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    emulator.processes[process_id]["createAt"] = stamp


def _press(emulator: ChartHopEmulator, clock: Clock) -> StartRequest:
    """A "Sync Now" press now: its process in ChartHop, and its loop's start request."""
    process_id = emulator.create_sync_process()["id"]
    _created(emulator, process_id, clock.now)
    return StartRequest(
        kind="sync-now",
        org_id=ORG,
        sync_process_id=process_id,
        app_id=emulator.config.app_id,
        staged_at=clock.now,
        loop_started_at=clock.now,
    )


def _upload_request(staged: StagedFile, sync_id: str, staged_at: float) -> StartRequest:
    return StartRequest(
        kind="upload", org_id=ORG, sync_process_id=sync_id, file=staged, staged_at=staged_at, loop_started_at=staged_at
    )


def test_a_sync_now_pressed_before_an_uploads_start_shows_anything_is_refused_not_a_second_import(
    aws, emulator, client
) -> None:
    """The upload's trigger has opened its sync (PENDING) and queued the file; its loop's start has not run yet
    (StartExecution and a cold start: a second or two), or showing the settle message failed. A "Sync Now" then
    finds nothing RUNNING in ChartHop, takes the newest staged file (the same roster.csv) and used to queue behind
    the upload: the same file imported twice. It is refused, as when ChartHop shows the upload RUNNING."""
    target = ScriptedTarget()
    ctx, _, clock = make_ctx(aws, emulator, client, target)
    reporter = ShowingReporter(ctx.reporter.charthop)  # type: ignore[attr-defined]
    ctx = dataclasses.replace(ctx, reporter=reporter)
    staged = stage(aws, "roster.csv")
    staged_at = clock.now
    upload = sync_start.file_dropped(ctx, staged, staged_at)
    assert client.get_process(ORG, upload).status == "PENDING"

    clock.now += 0.5
    press = _press(emulator, clock)
    assert sync_start.begin_sync(ctx, press) is None, "the press waits to import roster.csv a second time"
    [refusal] = [entry for entry in reporter.finished if entry["sync_id"] == press.sync_process_id]
    assert refusal["message"] == (
        "Another sync is already running (roster.csv is queued to be imported); this one was not started. "
        "Press Sync Now again when it has finished."
    )
    key = sync_service.target_queue_key(ctx)
    assert press.sync_process_id not in ctx.queue.items[key]["waiting"]  # type: ignore[attr-defined]
    assert ctx.slots.holder(sync_service.sync_now_slot(ORG)) is None

    clock.now += 2
    assert isinstance(sync_start.begin_sync(ctx, _upload_request(staged, upload, staged_at)), SyncState)
    assert [(file.name, sync) for file, _body, sync in target.started] == [("roster.csv", upload)]


def test_a_sync_now_whose_settle_sees_an_upload_join_is_refused_not_a_second_import(aws, emulator, client) -> None:
    """The press comes first: nothing is queued yet and it waits out its settle time. The upload's trigger (S3's
    event is slower than the press) queues the same file meanwhile, staged before the press: it goes first, and the
    press used to wait behind it and then import roster.csv again."""
    target = ScriptedTarget()
    ctx, _, clock = make_ctx(aws, emulator, client, target, queue_settle_seconds=2.0)
    reporter = ShowingReporter(ctx.reporter.charthop)  # type: ignore[attr-defined]
    staged = stage(aws, "roster.csv")
    staged_at = clock.now
    uploads: list[str] = []

    def trigger_arrives(seconds: float) -> None:
        uploads.append(sync_start.file_dropped(ctx, staged, staged_at))
        clock.now += seconds

    ctx = dataclasses.replace(ctx, reporter=reporter, sleep=trigger_arrives)
    clock.now += 0.3
    press = _press(emulator, clock)
    assert sync_start.begin_sync(ctx, press) is None
    [refusal] = [entry for entry in reporter.finished if entry["sync_id"] == press.sync_process_id]
    assert refusal["message"].startswith("Another sync is already running (roster.csv is queued to be imported)")
    assert target.started == []

    [upload] = uploads
    ctx = dataclasses.replace(ctx, sleep=clock.sleep)
    assert isinstance(sync_start.begin_sync(ctx, _upload_request(staged, upload, staged_at)), SyncState)
    assert [(file.name, sync) for file, _body, sync in target.started] == [("roster.csv", upload)]


def test_a_sync_now_behind_an_import_in_progress_names_it(aws, emulator, client) -> None:
    """A press while another file holds the turn (its sync not shown RUNNING: its progress writes failed) is refused
    naming the file being imported; the holder keeps the turn."""
    target = ScriptedTarget()
    ctx, reporter, clock = make_ctx(aws, emulator, client, target)
    stage(aws, "first.csv")
    key = sync_service.target_queue_key(ctx)
    assert ctx.queue.take_turn(key, "holder", at=clock.now - 60, name="first.csv", now=clock.now, hold_seconds=600)
    press = _press(emulator, clock)
    assert sync_start.begin_sync(ctx, press) is None
    [refusal] = [entry for entry in reporter.finished if entry["sync_id"] == press.sync_process_id]
    assert refusal["message"].startswith("Another sync is already running (first.csv is being imported)")
    assert target.started == []
    assert ctx.queue.items[key]["holder"] == "holder"  # type: ignore[attr-defined]


def test_a_sync_now_whose_import_began_still_waits_for_the_turn_it_lost(aws, emulator, client) -> None:
    """A press whose start began its import and then died, and whose turn expired meanwhile and was taken: its retry
    must not close the sync while the import it started runs. It waits for the turn as any file would."""
    target = ScriptedTarget()
    ctx, _, clock = make_ctx(aws, emulator, client, target)
    staged = stage(aws, "roster.csv")
    press = _press(emulator, clock)
    ctx.journal.own(press.sync_process_id, staged)
    ctx.journal.begin_import(press.sync_process_id, staged)  # the attempt that died in the import's start
    key = sync_service.target_queue_key(ctx)
    assert ctx.queue.take_turn(key, "other", at=clock.now - 60, name="other.csv", now=clock.now, hold_seconds=600)
    clock.now += 5
    queued = sync_start.begin_sync(ctx, press)
    assert isinstance(queued, sync_start.Queued), queued
    assert not ctx.reporter.is_closed(press.sync_process_id)  # type: ignore[attr-defined]


def _upload_opened_not_queued(ctx: SyncContext, emulator: ChartHopEmulator, staged: StagedFile) -> str:
    """An upload's trigger that has opened the file's sync and recorded it (now), and not yet joined the queue."""
    sync_id = sync_start.open_sync(ctx, staged)
    _created(emulator, sync_id, ctx.clock())
    return sync_id


def test_a_sync_now_given_the_turn_while_its_files_upload_sync_is_open_is_refused(aws, emulator, client) -> None:
    """The upload's trigger has opened the sync of roster.csv but not yet queued it: the press finds the queue empty
    and gets the turn. Its file's version has an upload sync still open: that one imports it, the press does not."""
    target = ScriptedTarget()
    ctx, reporter, clock = make_ctx(aws, emulator, client, target)
    staged = stage(aws, "roster.csv")
    upload = _upload_opened_not_queued(ctx, emulator, staged)
    press = _press(emulator, clock)
    clock.now += 2  # past the press's settle time
    assert sync_start.begin_sync(ctx, press) is None
    [refusal] = [entry for entry in reporter.finished if entry["sync_id"] == press.sync_process_id]
    assert refusal["message"] == (
        "Another sync is already running (roster.csv is being synced by its upload); this one was not started. "
        "Press Sync Now again when it has finished."
    )
    assert (refusal["succeeded"], refusal["results"]) == (False, {"file": "roster.csv", "syncedBy": upload})
    assert target.started == []


def test_a_sync_now_refused_and_killed_before_its_close_does_not_import_the_file_its_upload_imported(
    aws, emulator, client, monkeypatch
) -> None:
    """The press is refused behind the upload of roster.csv and its Lambda dies before the close is written. By the
    retry the upload has imported roster.csv and closed: the turn is free, and the retry used to take it and import
    roster.csv again. It sees that the upload imported that very version after the press, and closes DONE saying so.
    (Review finding.)"""
    target = ScriptedTarget()
    ctx, reporter, clock = make_ctx(aws, emulator, client, target)
    staged = stage(aws, "roster.csv")
    staged_at = clock.now
    upload = sync_start.file_dropped(ctx, staged, staged_at)
    clock.now += 0.5
    press = _press(emulator, clock)

    def killed(*args: Any, **kwargs: Any) -> None:  # the close's first write: the Lambda dies before it
        raise _Killed

    monkeypatch.setattr(ctx.loop_memory, "close", killed)
    with pytest.raises(_Killed):
        sync_start.begin_sync(ctx, press)
    monkeypatch.undo()

    clock.now += 2
    assert isinstance(sync_start.begin_sync(ctx, _upload_request(staged, upload, staged_at)), SyncState)
    sync_service.close_sync(ctx, upload, succeeded=True, message="Imported", results={}, summary="Imported")
    clock.now += 5  # Step Functions retries the press's start
    assert sync_start.begin_sync(ctx, press) is None
    assert [(file.name, sync) for file, _body, sync in target.started] == [("roster.csv", upload)]
    [closed] = [entry for entry in reporter.finished if entry["sync_id"] == press.sync_process_id]
    assert closed["succeeded"] is True
    assert closed["message"] == (
        f"roster.csv was imported by its upload's sync ({upload}) after Sync Now was pressed; it was not imported "
        "again. Press Sync Now again to import it once more."
    )


def test_a_sync_now_pressed_after_the_uploads_sync_closed_imports_the_file_once_more(aws, emulator, client) -> None:
    """Pressed once the upload's sync is over: a deliberate import of the newest file again. So is one pressed while
    the upload's sync was open, if that sync failed (it did not import the file)."""
    target = ScriptedTarget()
    ctx, _, clock = make_ctx(aws, emulator, client, target)
    staged = stage(aws, "roster.csv")
    upload = sync_start.file_dropped(ctx, staged, clock.now)
    clock.now += 2
    assert isinstance(sync_start.begin_sync(ctx, _upload_request(staged, upload, clock.now - 2)), SyncState)
    sync_service.close_sync(ctx, upload, succeeded=True, message="Imported", results={}, summary="Imported")
    clock.now += 1
    press = _press(emulator, clock)
    clock.now += 2
    assert isinstance(sync_start.begin_sync(ctx, press), SyncState)
    assert [sync for _file, _body, sync in target.started] == [upload, press.sync_process_id]

    failed = stage(aws, "roster2.csv")  # the newest: later, or in the same second a greater key
    upload = _upload_opened_not_queued(ctx, emulator, failed)
    second = _press(emulator, clock)
    sync_service.close_sync(ctx, press.sync_process_id, succeeded=True, message="Imported", results={}, summary="x")
    clock.now += 1
    sync_service.fail_sync(ctx, upload, "ChartHop refused the file")
    clock.now += 2
    assert isinstance(sync_start.begin_sync(ctx, second), SyncState)
    assert [file.name for file, _body, _sync in target.started][-1] == "roster2.csv"


def test_a_sync_now_of_a_file_whose_upload_sync_was_stranded_long_ago_imports_it(aws, emulator, client) -> None:
    """The upload's trigger opened its sync and then failed for good (it waits in the failed-events queue; the
    sync stays PENDING, never queued). A press minutes later is the way to get the file imported: it is not refused
    for an upload that will not import it. (Review finding: it was refused for the journal's 8 days.)"""
    target = ScriptedTarget()
    ctx, reporter, clock = make_ctx(aws, emulator, client, target)
    staged = stage(aws, "roster.csv")
    upload = _upload_opened_not_queued(ctx, emulator, staged)
    clock.now += sync_start.UPLOAD_QUEUED_WITHIN_SECONDS + 1
    press = _press(emulator, clock)
    clock.now += 2
    assert isinstance(sync_start.begin_sync(ctx, press), SyncState)
    assert [(file.name, sync) for file, _body, sync in target.started] == [("roster.csv", press.sync_process_id)]
    [closed] = [entry for entry in reporter.finished if entry["sync_id"] == upload]  # not PENDING for ever
    assert (closed["succeeded"], closed["results"]) == (
        False,
        {"file": "roster.csv", "syncedBy": press.sync_process_id},
    )
    assert closed["message"].endswith(f"Sync Now ({press.sync_process_id}) imports it instead.")

    clock.now += 600  # the upload's trigger, redriven from the failed-events queue, comes at last
    assert sync_start.file_dropped(ctx, staged, clock.now - 1000) == upload
    assert ctx.queue.next_in_line(sync_service.target_queue_key(ctx), clock.now) is None  # nothing queued
    assert [sync for _file, _body, sync in target.started] == [press.sync_process_id]


def test_a_sync_now_after_a_dry_run_of_the_upload_imports_the_file(aws, emulator, client) -> None:
    """The upload's sync only validated the file (a dry run): a press during it is no duplicate of an import, so it
    imports the file once it gets the turn. (Review finding: it was closed "imported by its upload's sync".)"""
    target = ScriptedTarget()
    ctx, _, clock = make_ctx(aws, emulator, client, target)
    staged = stage(aws, "roster.csv")
    upload = _upload_opened_not_queued(ctx, emulator, staged)
    press = _press(emulator, clock)
    clock.now += 1
    sync_service.close_sync(
        ctx, upload, succeeded=True, message="Validated", results={"dryRun": True}, summary="Validated"
    )
    clock.now += 2
    assert isinstance(sync_start.begin_sync(ctx, press), SyncState)
    assert [sync for _file, _body, sync in target.started] == [press.sync_process_id]


def test_when_a_sync_now_was_pressed_is_charthops_createat_not_when_its_delivery_was_handled(
    aws, emulator, client
) -> None:
    """The press's delivery was handled late (redriven from the failed-events queue an hour on): its start request
    says "now", but the user pressed before the upload's sync imported the file. (Review finding.)"""
    target = ScriptedTarget()
    ctx, reporter, clock = make_ctx(aws, emulator, client, target)
    staged = stage(aws, "roster.csv")
    upload = _upload_opened_not_queued(ctx, emulator, staged)
    press = _press(emulator, clock)  # created in ChartHop now
    clock.now += 60
    sync_service.close_sync(ctx, upload, succeeded=True, message="Imported", results={}, summary="Imported")
    clock.now += 3600
    redriven = press.model_copy(update={"staged_at": clock.now, "loop_started_at": clock.now})
    assert sync_start.begin_sync(ctx, redriven) is None
    assert target.started == []
    [closed] = [entry for entry in reporter.finished if entry["sync_id"] == press.sync_process_id]
    assert (closed["succeeded"], closed["results"]) == (True, {"file": "roster.csv", "importedBy": upload})


def test_a_sync_now_whose_files_upload_sync_charthop_no_longer_shows_imports_it(aws, emulator, client) -> None:
    """The upload's sync process is gone from ChartHop (404): nothing of it can run or be closed; the press imports
    (closing it, as a stranded one is, would fail the press's start on ChartHop's 404 at every retry)."""
    target = ScriptedTarget()
    ctx, recorded, clock = make_ctx(aws, emulator, client, target)

    class WritingReporter(RecordingReporter):
        def finish(self, sync_id: str, **kwargs: Any) -> None:
            super().finish(sync_id, **kwargs)
            assert self.charthop is not None
            self.charthop.finish(sync_id, **kwargs)

    ctx = dataclasses.replace(ctx, reporter=WritingReporter(recorded.charthop))
    staged = stage(aws, "roster.csv")
    upload = _upload_opened_not_queued(ctx, emulator, staged)
    del emulator.processes[upload]
    press = _press(emulator, clock)
    clock.now += 2
    assert isinstance(sync_start.begin_sync(ctx, press), SyncState)
    assert [sync for _file, _body, sync in target.started] == [press.sync_process_id]


def test_a_sync_now_killed_while_closing_a_stranded_upload_sync_writes_that_close_on_its_retry(
    aws, emulator, client, monkeypatch
) -> None:
    """The press closes the stranded upload sync (loop memory first) and its Lambda dies before ChartHop is told. No
    execution of that upload will ever repeat its close: the press's retry writes it, then imports the file once."""
    target = ScriptedTarget()
    ctx, reporter, clock = make_ctx(aws, emulator, client, target)
    staged = stage(aws, "roster.csv")
    upload = _upload_opened_not_queued(ctx, emulator, staged)
    clock.now += sync_start.UPLOAD_QUEUED_WITHIN_SECONDS + 1
    press = _press(emulator, clock)
    clock.now += 2
    finish = reporter.finish

    def killed_telling_charthop(sync_id: str, **kwargs: Any) -> None:
        if sync_id == upload:
            raise _Killed
        finish(sync_id, **kwargs)

    monkeypatch.setattr(reporter, "finish", killed_telling_charthop)
    with pytest.raises(_Killed):
        sync_start.begin_sync(ctx, press)
    monkeypatch.undo()
    assert ctx.loop_memory.load(upload).closed_at is not None
    assert not reporter.is_closed(upload)  # ChartHop still shows it PENDING

    clock.now += 5  # Step Functions retries the press's start
    assert isinstance(sync_start.begin_sync(ctx, press), SyncState)
    [closed] = [entry for entry in reporter.finished if entry["sync_id"] == upload]
    assert closed["message"].endswith(f"Sync Now ({press.sync_process_id}) imports it instead.")
    assert [sync for _file, _body, sync in target.started] == [press.sync_process_id]
