"""Sync history (people_sync/sync_history.py): one record per sync, a bounded timeline, idempotent under
retries, listed by Query (never Scan), expiring with the personal-data retention, and never failing a sync."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws

from offline.aws_stack import load_template
from people_sync import sync_history, sync_metrics
from people_sync.models import ImportJob, PollState, StagedFile, StartRequest, SyncState
from people_sync.sync_service import SyncContext

TABLE = "history"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:people-sync-sync-status"
NOW = 1_780_000_000.0


@dataclass
class Clock:
    """Each reading a millisecond later (every step of a sync happens after the one before)."""

    now: float = NOW

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@dataclass
class Emitted:
    lines: list[dict[str, Any]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for line in self.lines for name in line if name in sync_metrics.METRICS]


def make_ctx(store: sync_history.HistoryStore | None, *, org: str = "acme", target: str = "charthop") -> SyncContext:
    ctx = SimpleNamespace(
        # the stack's own org differs: the record and the metrics name the sync's org (ctx.org_id)
        org_id=org,
        settings=SimpleNamespace(org_id="stack-org", state_machine_arn=MACHINE),
        target=SimpleNamespace(name=target, display_name=target.capitalize()),
        clock=Clock(),
        history=store,
    )
    return cast(SyncContext, ctx)


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> Emitted:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    return Emitted()


def read_emitted(capsys: pytest.CaptureFixture[str], emitted: Emitted) -> Emitted:
    emitted.lines.extend(json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{"))
    return emitted


@pytest.fixture
def table() -> Iterator[Any]:
    """The template's SyncHistoryTable (keys and GSIs as declared), in moto."""
    props = load_template()["Resources"]["SyncHistoryTable"]["Properties"]
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def staged(name: str = "roster.csv", size: int = 1234, folder: str = "acme") -> StagedFile:
    return StagedFile(bucket="b", key=f"staging/{folder}/{name}", version_id="v1", org_id=folder, size=size)


def loop_state(sync_id: str, attempt: int, *, finished: bool = False, **update: Any) -> SyncState:
    poll = PollState(
        attempt=attempt, wait_seconds=5, initial_seconds=5, max_seconds=60, timeout_seconds=600, started_at=NOW
    )
    return SyncState(
        org_id="acme",
        sync_process_id=sync_id,
        import_id="imp-1",
        file=staged(),
        poll=poll,
        finished=finished,
        import_state="done" if finished else "running",
        outcome="DONE" if finished else None,
        **update,
    )


def one_sync(ctx: SyncContext, sync_id: str = "s1", *, checks: int = 3) -> None:
    request = StartRequest(kind="upload", org_id="acme", sync_process_id=sync_id, file=staged())
    sync_history.sync_opened(ctx, request)
    sync_history.import_started(ctx, sync_id, staged(), ImportJob(import_id="imp-1"), 0.5)
    sync_history.progress_shown(ctx, sync_id, 0.05, "ChartHop accepted roster.csv")
    for attempt in range(1, checks):
        sync_history.checked(ctx, loop_state(sync_id, attempt))
    sync_history.checked(ctx, loop_state(sync_id, checks - 1, finished=True))
    sync_history.import_finished(ctx, loop_state(sync_id, checks - 1, finished=True), 12.5)
    final = {"succeeded": True, "message": "Imported roster.csv: 3 rows", "results": {"rows": 3, "created": 2}}
    sync_history.sync_closed(ctx, sync_id, final)


def test_a_sync_leaves_a_record_and_a_timeline_in_the_order_it_happened(table: Any) -> None:
    store = sync_history.DynamoDBHistoryStore(TABLE, retention_days=30, client=table)
    ctx = make_ctx(store)
    one_sync(ctx)
    reader = sync_history.SyncHistoryReader(TABLE, table)

    record = reader.record("s1")
    assert record is not None
    assert {k: record[k] for k in ("orgId", "target", "trigger", "file", "key", "versionId", "status")} == {
        "orgId": "acme",
        "target": "charthop",
        "trigger": "upload",
        "file": "roster.csv",
        "key": "staging/acme/roster.csv",
        "versionId": "v1",
        "status": "DONE",
    }
    assert record["counts"] == {"rows": 3, "created": 2}
    assert record["checks"] == 3
    assert record["executionArn"] == MACHINE.replace(":stateMachine:", ":execution:") + ":sync-s1"
    assert NOW < record["startedAt"] < record["endedAt"] < NOW + 1
    # expires with the personal-data retention (30 days here)
    assert abs(record["expiration"] - (time.time() + 30 * 86400)) < 60
    kinds = [event["kind"] for event in reader.events("s1")]
    assert kinds == ["open", "import", "progress", "check", "check", "check", "close"]


def test_a_retried_open_and_close_keep_one_record_and_count_once(
    table: Any, emitted: Emitted, capsys: pytest.CaptureFixture[str]
) -> None:
    store = sync_history.DynamoDBHistoryStore(TABLE, client=table)
    ctx = make_ctx(store)
    one_sync(ctx)
    reader = sync_history.SyncHistoryReader(TABLE, table)
    first = reader.record("s1")
    cast(Clock, ctx.clock).now += 100
    one_sync(ctx)  # every step again: Lambda, Step Functions or the watchdog repeating them

    record = reader.record("s1")
    assert record is not None
    assert first is not None
    assert (record["startedAt"], record["endedAt"]) == (first["startedAt"], first["endedAt"])  # the first stand
    assert len(reader.events("s1")) == 7  # repeated entries overwrote themselves
    items = table.query(
        TableName=TABLE, KeyConditionExpression="syncId = :s", ExpressionAttributeValues={":s": {"S": "s1"}}
    )["Items"]
    assert len(items) == 8  # one record + 7 timeline entries
    names = read_emitted(capsys, emitted).names()
    not_of_a_sync = {"OrgTokenRefused", "OrgTokenRefreshed", "UnservedOrgFiles"}  # an org's, not a sync's
    assert sorted(names) == sorted(
        sync_metrics.METRICS.keys() - {"SyncsFailed", "DuplicateSyncsClosed"} - not_of_a_sync
    )


def test_the_timeline_is_capped(table: Any) -> None:
    store = sync_history.DynamoDBHistoryStore(TABLE, client=table)
    ctx = make_ctx(store)
    for attempt in range(1, sync_history.MAX_CHECK_EVENTS + 30):
        sync_history.checked(ctx, loop_state("s2", attempt))
    for failed in range(1, sync_history.MAX_FAULT_EVENTS + 10):
        sync_history.fault(ctx, "s2", "check", failed, "A check failed")
    reader = sync_history.SyncHistoryReader(TABLE, table)
    events = reader.events("s2")
    assert sum(event["kind"] == "check" for event in events) == sync_history.MAX_CHECK_EVENTS
    assert sum(event["kind"] == "fault" for event in events) == sync_history.MAX_FAULT_EVENTS
    record = reader.record("s2")
    assert record is not None
    assert record["checks"] == sync_history.MAX_CHECK_EVENTS + 29  # every check is counted
    sync_history.checked(ctx, loop_state("s2", 3))  # a late, older check does not lower the count
    assert reader.record("s2")["checks"] == sync_history.MAX_CHECK_EVENTS + 29  # type: ignore[index]


def test_records_are_listed_newest_first_by_day_or_by_org_with_query_only(table: Any) -> None:
    store = sync_history.DynamoDBHistoryStore(TABLE, client=table)
    for number, (org, target, age_days) in enumerate(
        [("acme", "charthop", 0), ("beta", "charthop", 0), ("acme", "orgvue", 1), ("acme", "charthop", 9)]
    ):
        ctx = make_ctx(store, org=org, target=target)
        cast(Clock, ctx.clock).now = NOW - age_days * 86400 - number - 1
        request = StartRequest(kind="sync-now", org_id=org, sync_process_id=f"s{number}")
        sync_history.sync_opened(ctx, request)
    calls: list[str] = []
    reader = sync_history.SyncHistoryReader(TABLE, _Recording(table, calls))

    recent = list(reader.records(since=NOW - 2 * 86400, until=NOW))
    by_org = list(reader.records(org="acme", since=NOW - 30 * 86400, until=NOW))

    assert [r["syncId"] for r in recent] == ["s0", "s1", "s2"]
    assert [r["syncId"] for r in by_org] == ["s0", "s2", "s3"]
    assert [r["trigger"] for r in by_org] == ["sync-now"] * 3
    assert set(calls) <= {"query", "get_item"}
    assert list(reader.records(since=NOW - 30 * 86400, until=NOW, limit=2)) == recent[:2]


class _Recording:
    def __init__(self, client: Any, calls: list[str]) -> None:
        self._client, self._calls = client, calls

    def __getattr__(self, name: str) -> Any:
        self._calls.append(name)
        return getattr(self._client, name)


def test_an_operators_retry_is_shown_as_the_trigger(table: Any) -> None:
    store = sync_history.DynamoDBHistoryStore(TABLE, client=table)
    reader = sync_history.SyncHistoryReader(TABLE, table)
    reader.mark_retry("b", "staging/acme/roster.csv", "v1", "failed/acme/20260101T000000Z-roster.csv")
    sync_history.sync_opened(
        make_ctx(store), StartRequest(kind="upload", org_id="acme", sync_process_id="s9", file=staged())
    )

    record = reader.record("s9")
    assert record is not None
    assert (record["trigger"], record["retryOf"]) == ("retry", "failed/acme/20260101T000000Z-roster.csv")
    assert [r["syncId"] for r in reader.records(since=NOW - 60, until=NOW + 60)] == ["s9"]  # the mark is not listed


def test_a_failed_sync_links_its_failed_copy_and_report() -> None:
    store = sync_history.InMemoryHistoryStore()
    message = (
        "ChartHop could not import roster.csv: Unknown column. The file was moved to "
        "s3://bucket-1/failed/acme/20260101T000000Z-roster.csv with a report beside it."
    )
    results = {"rows": 3, "rowErrors": {"report": "reports/acme/roster.csv.errors.csv"}}
    sync_history.sync_closed(make_ctx(store), "s3", {"succeeded": False, "message": message, "results": results})

    record = store.record("s3")
    assert record is not None
    assert record["status"] == "ERROR"
    assert record["failedKey"] == "failed/acme/20260101T000000Z-roster.csv"
    assert record["failedReport"] == "failed/acme/20260101T000000Z-roster.csv.report.json"
    assert record["rowErrorReport"] == "reports/acme/roster.csv.errors.csv"
    assert record["trigger"] == "upload"  # a rejected upload was never opened: the close creates the record


class _Broken:
    def update(self, *args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("DynamoDB is down")


def test_a_history_that_cannot_be_written_never_fails_a_sync(caplog: pytest.LogCaptureFixture) -> None:
    ctx = make_ctx(cast(sync_history.HistoryStore, _Broken()))
    with caplog.at_level(logging.WARNING):
        one_sync(ctx)
    assert "could not write the sync history" in caplog.text


def test_without_a_table_nothing_is_written() -> None:
    assert sync_history.from_env({}) is None
    store = sync_history.from_env({"SYNC_HISTORY_TABLE": "t", "SYNC_HISTORY_RETENTION_DAYS": "7"})
    assert isinstance(store, sync_history.DynamoDBHistoryStore)
    assert store.retention_seconds == 7 * 86400
    one_sync(make_ctx(None))  # a context without a history (older deployments) syncs as before


def test_messages_are_cut_to_bound_the_timeline() -> None:
    store = sync_history.InMemoryHistoryStore()
    sync_history.progress_shown(make_ctx(store), "s4", 0.5, "x" * 5000)
    [event] = store.events("s4")
    assert len(event["message"]) == sync_history.MAX_MESSAGE


# --- metrics -----------------------------------------------------------------------------------------


def test_metric_dimensions_stay_low_cardinality() -> None:
    assert sync_metrics.dimensions("charthop", "acme") == {"target": "charthop", "org": "acme"}
    assert sync_metrics.dimensions("something", "acme") == {"target": "other", "org": "acme"}
    assert sync_metrics.dimensions("orgvue", "a/b c") == {"target": "orgvue", "org": "other"}
    assert sync_metrics.dimensions("orgvue", "x" * 65)["org"] == "other"


def test_metrics_are_embedded_metric_format_lines_in_the_people_sync_namespace(
    emitted: Emitted, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "PeopleSync")
    sync_metrics.emit(make_ctx(None, org="beta", target="elma365"), "UploadBytes", 2048, unit="Bytes")
    [line] = read_emitted(capsys, emitted).lines
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive == {
        "Namespace": "PeopleSync",
        "Dimensions": [["target", "org"]],
        "Metrics": [{"Name": "UploadBytes", "Unit": "Bytes"}],
    }
    assert (line["target"], line["org"], line["UploadBytes"]) == ("elma365", "beta", 2048)


def test_metrics_are_not_written_when_disabled(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    sync_metrics.emit(make_ctx(None), "SyncsStarted", 1)
    assert capsys.readouterr().out == ""
