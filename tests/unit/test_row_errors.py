"""Issue 12 (ChartHop 4-6): skipped rows reach the user, the import's progress in either scale, dry runs.

The ChartHop side is the emulator over loopback HTTP (the real client and target); S3 is moto.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from offline.charthop_emulator import ChartHopEmulator, EmulatorConfig, Fault, ImportBehaviour
from people_sync import api_assumptions as assumed
from people_sync import sync_service
from people_sync.charthop_client import ChartHopClient, ProcessEventsTooLarge
from people_sync.errors import ChartHopUnavailable
from people_sync.models import ImportJob, ImportOptions, Process, StagedFile, SyncState
from people_sync.sync_service import SyncContext
from people_sync.targets.charthop import ChartHopProgressReporter, ChartHopTarget
from tests.fakes import app_settings

BUCKET = "people-sync-staging-test"
ORG = EmulatorConfig.org_id
HEADER = "Employee ID,First Name,Work Email\n"


def roster(good: int, bad_rows: dict[int, str]) -> bytes:
    """`good` + len(bad_rows) data rows; row n (1-based) in `bad_rows` is "ragged" (a field short) or
    "no-email" (empty Work Email, a required column)."""
    lines = [HEADER]
    for row in range(1, good + len(bad_rows) + 1):
        kind = bad_rows.get(row)
        if kind == "ragged":
            lines.append(f"E{row},Name{row}\n")
        elif kind == "no-email":
            lines.append(f"E{row},Name{row},\n")
        else:
            lines.append(f"E{row},Name{row},e{row}@example.com\n")
    return "".join(lines).encode()


@pytest.fixture
def emulator() -> Iterator[ChartHopEmulator]:
    with ChartHopEmulator(EmulatorConfig(required_columns=("Work Email",))) as running:
        running.import_behaviour = ImportBehaviour(duration_s=0)  # done at the first look
        yield running


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def make_ctx(
    emulator: ChartHopEmulator, client: ChartHopClient, s3: Any, options: ImportOptions
) -> tuple[SyncContext, ChartHopTarget]:
    target = ChartHopTarget(client, ORG, options)
    reporter = ChartHopProgressReporter(client, ORG, app_name="people-sync", app_user_id=emulator.config.app_user_id)
    ctx = SyncContext(
        settings=app_settings(org_id=ORG, staging_bucket=BUCKET),
        charthop=client,
        target=target,
        reporter=reporter,
        s3=s3,
        stepfunctions=boto3.client("stepfunctions"),
        clock=lambda: 1_000.0,
    )
    return ctx, target


def finished_import(ctx: SyncContext, target: ChartHopTarget, s3: Any, body: bytes) -> SyncState:
    """Stages `body`, opens a sync process, runs the import in the emulator and returns the loop's last state."""
    key = f"staging/{ORG}/roster.csv"
    version = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]
    staged = StagedFile(bucket=BUCKET, key=key, version_id=version, org_id=ORG, size=len(body))
    sync_id = ctx.reporter.start_sync("roster.csv", key, version)
    job = target.start_import(staged, lambda: (io.BytesIO(body), len(body)), sync_id=sync_id)
    status, job = target.import_status(job, lambda: (io.BytesIO(body), len(body)))
    assert status.finished
    state = sync_service.loop_state(ctx, staged, sync_id, job)
    return state.model_copy(
        update={
            "results": status.results,
            "import_state": status.state,
            "import_detail": job.detail,
            "finished": True,
            "outcome": "DONE" if status.state == "done" else "ERROR",
        }
    )


def report_rows(s3: Any, key: str) -> list[dict[str, str]]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return list(csv.DictReader(io.StringIO(body)))


# --- 4. row errors --------------------------------------------------------------------------------


def test_skipped_rows_are_counted_reported_beside_the_file_and_logged(emulator, client, s3) -> None:
    ctx, target = make_ctx(emulator, client, s3, ImportOptions(skip_errors=True))
    state = finished_import(ctx, target, s3, roster(46, {3: "ragged", 17: "no-email"}))

    outcome = sync_service.finish_sync(ctx, state)

    report = f"reports/{ORG}/roster.csv.errors.csv"
    assert outcome["status"] == "DONE"
    assert outcome["message"].startswith("Imported roster.csv: 48 rows, ")
    assert outcome["message"].endswith(f"; 2 rows skipped with errors, see {report}")
    assert "2 errors" not in outcome["message"]
    sync = emulator.process(state.sync_process_id)
    assert (sync["status"], sync["message"]) == ("DONE", outcome["message"])
    assert sync["results"]["rowErrors"] == {"skipped": 2, "listed": 2, "report": report}
    rows = report_rows(s3, report)
    assert [(row["row"], row["column"]) for row in rows] == [("3", ""), ("17", "Work Email")]
    assert rows[1]["message"] == "Work Email is required"
    head = s3.head_object(Bucket=BUCKET, Key=report)
    assert head["Metadata"] == {"sync-process-id": state.sync_process_id, "import-process-id": state.import_id}
    log = emulator.log_of(state.sync_process_id)
    assert [entry["level"] for entry in log] == ["WARN", "ERROR", "ERROR"]
    assert log[0]["data"]["skippedRows"] == 2
    assert log[0]["data"]["report"] == report
    assert log[2]["message"] == "row 17, column Work Email: Work Email is required"
    assert log[2]["data"] == {"row": 17, "column": "Work Email", "message": "Work Email is required"}
    assert all(entry["at"].endswith("Z") for entry in log)


def test_an_import_without_skipped_rows_reads_no_events_and_writes_no_report(emulator, client, s3) -> None:
    ctx, target = make_ctx(emulator, client, s3, ImportOptions())
    state = finished_import(ctx, target, s3, roster(5, {}))
    outcome = sync_service.finish_sync(ctx, state)
    assert outcome["message"] == "Imported roster.csv: 5 rows, 5 created, 0 updated, 0 errors"
    assert emulator.calls_of("getProcessEvents") == []
    assert emulator.log_of(state.sync_process_id) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="reports/")


def test_events_that_cannot_be_read_do_not_block_the_close(emulator, client, s3) -> None:
    ctx, target = make_ctx(emulator, client, s3, ImportOptions())
    state = finished_import(ctx, target, s3, roster(3, {2: "ragged"}))
    emulator.inject("getProcessEvents", *[Fault.http(503)] * 10)
    outcome = sync_service.finish_sync(ctx, state)
    assert outcome["status"] == "DONE"
    assert (
        "1 row skipped with errors (the details could not be read: ChartHop is unavailable (HTTP 503)"
        in (outcome["message"])
    )
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="reports/")
    [entry] = emulator.log_of(state.sync_process_id)  # the count still reaches the log
    assert entry["level"] == "WARN"
    assert entry["data"]["skippedRows"] == 1


def test_a_retried_close_appends_only_the_batches_not_yet_appended(emulator, client, s3, monkeypatch) -> None:
    monkeypatch.setattr(assumed, "CHARTHOP_LOG_BATCH", 2)
    ctx, target = make_ctx(emulator, client, s3, ImportOptions())
    state = finished_import(ctx, target, s3, roster(2, {1: "ragged", 2: "ragged", 3: "no-email", 4: "ragged"}))
    reporter = ctx.reporter
    real_append = reporter.append_log  # type: ignore[attr-defined]
    posts: list[int] = []

    def dies_on_the_second_batch(sync_id: str, entries: list[dict[str, Any]]) -> None:
        posts.append(len(entries))
        if len(posts) == 2:
            raise SystemExit("the Lambda died")  # after one batch was appended and counted
        real_append(sync_id, entries)

    monkeypatch.setattr(reporter, "append_log", dies_on_the_second_batch)
    with pytest.raises(SystemExit):
        sync_service.finish_sync(ctx, state)
    assert len(emulator.log_of(state.sync_process_id)) == 2
    assert emulator.process(state.sync_process_id)["status"] != "DONE"

    monkeypatch.setattr(reporter, "append_log", real_append)
    outcome = sync_service.finish_sync(ctx, state)  # Step Functions retries the finalizer
    log = emulator.log_of(state.sync_process_id)
    assert [entry["data"].get("row") for entry in log] == [None, 1, 2, 3, 4]  # summary + 4 rows, none twice
    assert "4 rows skipped with errors" in outcome["message"]
    report = report_rows(s3, f"reports/{ORG}/roster.csv.errors.csv")  # written twice, same key, same rows
    assert [row["row"] for row in report] == ["1", "2", "3", "4"]
    events_reads = len(emulator.calls_of("getProcessEvents"))
    sync_service.finish_sync(ctx, state)  # a late duplicate: nothing read, appended or written again
    assert len(emulator.calls_of("getProcessEvents")) == events_reads
    assert len(emulator.log_of(state.sync_process_id)) == 5


def test_row_errors_are_capped_and_the_cap_is_said(emulator, client, s3, monkeypatch) -> None:
    monkeypatch.setattr(assumed, "CHARTHOP_MAX_LOG_ROW_ERRORS", 3)
    ctx, target = make_ctx(emulator, client, s3, ImportOptions())
    state = finished_import(ctx, target, s3, roster(1, dict.fromkeys(range(2, 12), "ragged")))
    found = target.row_errors(state.job, limit=5)
    assert (len(found.errors), found.truncated) == (5, True)
    monkeypatch.setattr(target, "row_errors", lambda job: target.__class__.row_errors(target, job, limit=5))
    outcome = sync_service.finish_sync(ctx, state)
    assert "10 rows skipped with errors, see reports/" in outcome["message"]
    assert outcome["message"].endswith("(the first 5 are listed)")
    assert len(report_rows(s3, f"reports/{ORG}/roster.csv.errors.csv")) == 5
    log = emulator.log_of(state.sync_process_id)
    assert len(log) == 1 + 3
    assert log[0]["message"].endswith("3 of them are in this log")


def test_the_client_reads_the_event_list_only_up_to_its_byte_cap(emulator, client) -> None:
    sync = emulator.create_sync_process()
    body = roster(30, {})
    process = client.import_csv(
        ORG, lambda: (io.BytesIO(body), len(body)), file_name="r.csv", options=ImportOptions(), parent_process_id=None
    )
    client.get_process(ORG, process.id)
    events = client.get_process_events(ORG, process.id, max_bytes=1_000_000)
    assert [event["type"] for event in events] == ["HIRE"] * 30
    with pytest.raises(ProcessEventsTooLarge):
        client.get_process_events(ORG, process.id, max_bytes=500)
    client.append_process_log(ORG, sync["id"], [{"level": "INFO", "at": "2026-01-01T00:00:00Z", "data": {}}])
    assert emulator.log_of(sync["id"]) == [{"level": "INFO", "at": "2026-01-01T00:00:00Z", "data": {}}]


def test_the_emulator_refuses_log_entries_outside_the_spec(emulator, client) -> None:
    sync = emulator.create_sync_process()
    for entry in ({"level": "DEBUG", "at": "t", "data": {}}, {"level": "INFO", "at": "t"}):
        with pytest.raises(Exception, match="HTTP 400"):
            client.append_process_log(ORG, sync["id"], [entry])
    assert emulator.log_of(sync["id"]) == []


def test_row_errors_of_event_reads_the_assumed_shape_and_tolerates_others() -> None:
    event = assumed.row_error_event(event_id="e", row=7, column="Email", message="bad", at="t")
    assert assumed.row_errors_of_event(event) == [(7, "Email", "bad")]
    nested = {**event, "entityData": {"row": {"number": 8}}}
    assert assumed.row_errors_of_event(nested) == [(8, "Email", "bad")]
    assert assumed.row_errors_of_event({"type": "ERROR", "updates": [], "at": "t"}) == [(None, None, "no reason given")]
    assert assumed.row_errors_of_event({"type": "HIRE", "updates": [], "at": "t"}) == []
    assert assumed.row_errors_of_event("junk") == []


def test_report_cells_that_spreadsheets_would_run_as_formulas_are_quoted() -> None:
    from people_sync.models import RowError
    from people_sync.row_errors import report_csv

    text = report_csv([RowError(row=1, column="=cmd", message="@SUM(A1)")]).decode()
    assert text == "row,column,message\n1,'=cmd,'@SUM(A1)\n"


# --- 5. progress in either scale --------------------------------------------------------------------


class ScriptedChartHop:
    """A ChartHop client whose import reports the scripted progress values, RUNNING, then DONE."""

    def __init__(self, values: list[float | None]) -> None:
        self.values = list(values)

    def get_process(self, org_id: str, process_id: str) -> Process:
        if self.values:
            return Process(id=process_id, org_id=org_id, status="RUNNING", progress=self.values.pop(0))
        return Process(id=process_id, org_id=org_id, status="DONE", progress=1.0, results={"rows": 1})


class Bar:
    def __init__(self) -> None:
        self.shown: list[float] = []

    def report_progress(self, sync_id: str, progress: float, message: str) -> None:
        self.shown.append(progress)


fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
percents = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
odd = st.one_of(st.none(), st.just(float("nan")), st.just(float("inf")), st.floats(-5, 0), st.floats(100, 1e6))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.one_of(
        st.lists(fractions, max_size=15),
        st.lists(percents, max_size=15),
        st.lists(st.one_of(fractions, percents, odd), max_size=15),
    )
)
def test_the_bar_only_moves_forward_and_stays_in_bounds_in_either_scale(values: list[float | None]) -> None:
    """Arbitrary sequences, in order or not, in either scale or mixed, with junk: the bar never goes back,
    never reaches 1.0 before the end, and the end shows 1.0 (the close's final update)."""
    target = ChartHopTarget(ScriptedChartHop(values), ORG, ImportOptions())  # type: ignore[arg-type]
    bar = Bar()
    ctx = SyncContext(
        settings=app_settings(org_id=ORG),
        charthop=None,  # type: ignore[arg-type]
        target=target,
        reporter=bar,  # type: ignore[arg-type]
        s3=None,  # type: ignore[arg-type]
        stepfunctions=None,  # type: ignore[arg-type]
        clock=lambda: 1_000.0,
    )
    staged = StagedFile(bucket=BUCKET, key=f"staging/{ORG}/r.csv", org_id=ORG)
    state = sync_service.loop_state(ctx, staged, "sync-1", ImportJob(import_id="import-1"))
    shown = [state.reported_progress]  # what the start showed
    while not state.finished:
        state = sync_service.check_import(ctx, state)
    shown += bar.shown
    assert all(b > a for a, b in itertools.pairwise(shown)), shown
    assert all(0.0 <= value < 1.0 for value in shown)  # 1.0 is the final update's alone


@given(percents=st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=20))
def test_once_a_percentage_was_seen_every_later_value_is_a_percentage(percents: list[float]) -> None:
    client = ScriptedChartHop([50.0, *percents])
    target = ChartHopTarget(client, ORG, ImportOptions())  # type: ignore[arg-type]
    job = ImportJob(import_id="i")
    seen: list[float] = []
    while True:
        status, job = target.import_status(job, lambda: (io.BytesIO(b""), 0))
        if status.finished:
            break
        seen.append(status.progress)
        assert job.detail[assumed.CHARTHOP_PROGRESS_SCALE_DETAIL] == "percent"
    assert seen == [value / 100 for value in [50.0, *percents]]


def test_a_later_one_after_a_percentage_is_one_percent_and_an_early_running_one_is_no_news() -> None:
    fraction = assumed.charthop_import_fraction
    assert fraction(1.0, percent=True, finished=False) == (0.01, True)
    assert fraction(1.0, percent=False, finished=False) == (0.0, False)  # 1 % or 100 %: moves nothing
    assert fraction(1.0, percent=False, finished=True) == (1.0, False)
    assert fraction(0.4, percent=False, finished=False) == (0.4, False)
    assert fraction(40, percent=False, finished=False) == (0.4, True)
    assert fraction(250, percent=False, finished=False) == (1.0, True)
    assert fraction(float("nan"), percent=True, finished=False) == (0.0, True)


# --- 6. dry runs ----------------------------------------------------------------------------------


def test_a_dry_run_says_validated_and_nothing_says_imported(emulator, client, s3) -> None:
    ctx, target = make_ctx(emulator, client, s3, ImportOptions(import_dry_run=True))
    state = finished_import(ctx, target, s3, roster(4, {2: "no-email"}))
    assert emulator.roster == set()  # nothing applied
    outcome = sync_service.finish_sync(ctx, state)
    message = outcome["message"]
    assert message.startswith("Validated roster.csv (dry run): 5 rows, 4 would be created, 0 would be updated; ")
    assert f"1 row with errors, see reports/{ORG}/roster.csv.errors.csv" in message
    assert message.endswith("Nothing was written to ChartHop")
    sync = emulator.process(state.sync_process_id)
    assert sync["results"]["dryRun"] is True
    for text in (message, sync["summary"], json.dumps(sync["results"]), json.dumps(emulator.log_of(sync["id"]))):
        assert "imported" not in text.lower(), text
    assert "skipped" not in message


def test_a_dry_runs_progress_says_validating() -> None:
    from people_sync import progress
    from people_sync.models import ImportStatus

    status = ImportStatus(state="running", progress=0.5, message="Imported 5 of 10 rows")
    assert progress.status_message(status, "r.csv", dry_run=True) == "r.csv: ChartHop is validating (dry run, 50%)"


def test_import_after_dry_run_is_sent_and_imports(emulator, client, s3) -> None:
    options = ImportOptions(import_dry_run=True, import_after_dry_run=True)
    assert options.to_query(None)["importAfterDryRun"] == "true"
    assert "importAfterDryRun" not in ImportOptions().to_query(None)
    ctx, target = make_ctx(emulator, client, s3, options)
    state = finished_import(ctx, target, s3, roster(3, {}))
    assert emulator.uploads[-1].query["importAfterDryRun"] == "true"
    assert emulator.roster == {"E1", "E2", "E3"}
    assert sync_service.finish_sync(ctx, state)["message"].startswith("Imported roster.csv: 3 rows, 3 created")


def test_import_after_a_failed_dry_run_applies_nothing(emulator, client) -> None:
    body = roster(3, {2: "ragged"})
    options = ImportOptions(skip_errors=False, import_dry_run=True, import_after_dry_run=True)
    process = client.import_csv(
        ORG, lambda: (io.BytesIO(body), len(body)), file_name="r.csv", options=options, parent_process_id=None
    )
    assert client.get_process(ORG, process.id).status == "ERROR"
    assert emulator.roster == set()


def test_import_after_dry_run_comes_from_the_settings_parameter() -> None:
    options = ImportOptions.model_validate({"importDryRun": True, "importAfterDryRun": True})
    assert (options.import_after_dry_run, options.validates_only) == (True, False)
    assert ImportOptions.model_validate({"importDryRun": True}).validates_only


def test_unreachable_events_are_said_as_unreadable_by_the_target(emulator, client, monkeypatch) -> None:
    target = ChartHopTarget(client, ORG, ImportOptions())

    def down(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise ChartHopUnavailable("ChartHop did not answer")

    monkeypatch.setattr(client, "get_process_events", down)
    found = target.row_errors(ImportJob(import_id="i"))
    assert (found.errors, found.unreadable) == ([], "ChartHop did not answer")


def test_the_scale_changes_the_job_detail_once_not_on_every_check() -> None:
    """The scale is remembered once per import: the job detail changes once, not on every check."""
    target = ChartHopTarget(ScriptedChartHop([0.2, 30.0, 40.0, 1.0]), ORG, ImportOptions())  # type: ignore[arg-type]
    job = ImportJob(import_id="i")
    details = []
    for _ in range(4):
        status, job = target.import_status(job, lambda: (io.BytesIO(b""), 0))
        details.append(dict(job.detail))
    assert details == [{}, {"progressScale": "percent"}, {"progressScale": "percent"}, {"progressScale": "percent"}]
    assert status.progress == 0.01
