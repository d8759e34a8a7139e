"""Sync history: one record per sync (any target, any org) and a bounded timeline of its events, for operators
(`python -m tools.people_sync_admin syncs list|show`).

Kept in its own DynamoDB table (SyncHistoryTable), not in the sync table: it lives as long as the personal data
it names (PersonalDataRetentionDays, DynamoDB TTL on `expiration`) while the sync table's coordination items
expire within days; operators list it by time and org through two sparse GSIs (`byDay`, `byOrg`: only sync
records carry their keys), never a Scan; and the functions may only write it (UpdateItem), never read it.

Items (`syncId` + `entry`):
- `entry = "sync"`: the record: org, target, trigger (upload, sync-now; a `failed retry` marks its staged
  version `retry#...` and readers show "retry"), file, object version, start/end, status, message, row counts,
  the failed/ report and reports/ row-error report, the execution ARN, the import id, checks made.
- `entry = "event#<kind>#<key>"`: one timeline entry (open, progress, check, fault, close). The key names the
  event (a progress value, a check's attempt number), so a repeated write overwrites instead of adding.

Bounded: progress entries are claimed strictly increasing, at least MIN_PROGRESS_STEP apart (at most ~100); the
first MAX_CHECK_EVENTS checks and MAX_FAULT_EVENTS faults are listed (the record keeps the total number of
checks); messages are cut to MAX_MESSAGE characters. A sync has at most TIMELINE_CAP entries.

Every write is best effort: bounded in time (a client with short timeouts and one retry), logged and swallowed
on failure, and never raised into a sync. Each is idempotent: first-time facts are conditional
(`attribute_not_exists`), so a retried open or close neither duplicates the record nor counts its metrics twice.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from botocore.config import Config
from botocore.exceptions import ClientError

from people_sync import sync_metrics
from people_sync.sync_table import condition_failed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from people_sync.models import ImportJob, StagedFile, StartRequest, SyncState
    from people_sync.sync_service import SyncContext

logger = logging.getLogger(__name__)

RECORD = "sync"
EVENT_PREFIX = "event#"
RETRY_MARK_PREFIX = "retry#"
MAX_CHECK_EVENTS = 50
MAX_FAULT_EVENTS = 20
MAX_PROGRESS_EVENTS = 100
MAX_MESSAGE = 500
#: open + import started + progress + checks + faults + close.
TIMELINE_CAP = 1 + 1 + MAX_PROGRESS_EVENTS + MAX_CHECK_EVENTS + MAX_FAULT_EVENTS + 1
DEFAULT_RETENTION_DAYS = 30
BY_DAY_INDEX = "byDay"
BY_ORG_INDEX = "byOrg"
#: The counters copied from a sync's results into its record (progress.RESULT_COUNTS).
RESULT_COUNTS = ("rows", "imported", "created", "updated", "deleted", "unchanged", "errors")
_MOVED_TO = re.compile(r"moved to s3://(?P<bucket>[^/\s]+)/(?P<key>failed/\S+?) with a report")


class HistoryStore(Protocol):
    def update(
        self,
        sync_id: str,
        entry: str,
        values: dict[str, Any],
        *,
        keep: dict[str, Any] | None = None,
        only_if_missing: str | None = None,
        only_if_below: tuple[str, float] | None = None,
    ) -> bool:
        """SET `values`, SET `keep` where not set yet, with the TTL. `only_if_missing`: only if that attribute
        is not set yet; `only_if_below`: only if that number is missing or below the value. False: the
        condition failed (the write was a repeat)."""
        ...


@dataclass
class InMemoryHistoryStore:
    """Unit tests and local runs; the same rules as the table."""

    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(
        self,
        sync_id: str,
        entry: str,
        values: dict[str, Any],
        *,
        keep: dict[str, Any] | None = None,
        only_if_missing: str | None = None,
        only_if_below: tuple[str, float] | None = None,
    ) -> bool:
        with self._lock:
            item = self.items.get((sync_id, entry), {"syncId": sync_id, "entry": entry})
            if only_if_missing and only_if_missing in item:
                return False
            if only_if_below and item.get(only_if_below[0], float("-inf")) >= only_if_below[1]:
                return False
            updated = {**item, **{k: v for k, v in (keep or {}).items() if k not in item}, **values}
            self.items[(sync_id, entry)] = json.loads(json.dumps(updated))
            return True

    def record(self, sync_id: str) -> dict[str, Any] | None:
        return self.items.get((sync_id, RECORD))

    def events(self, sync_id: str) -> list[dict[str, Any]]:
        return _in_order([item for (sid, entry), item in self.items.items() if sid == sync_id and entry != RECORD])


#: Entries written in the same instant: the open first, the close last.
_KIND_ORDER = {"open": 0, "import": 1, "close": 9}


def _in_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def order(event: dict[str, Any]) -> tuple[float, int, str]:
        return float(event.get("at") or 0), _KIND_ORDER.get(str(event.get("kind")), 5), str(event.get("entry", ""))

    return sorted(events, key=order)


class DynamoDBHistoryStore:
    """The SyncHistoryTable; its own client, with short timeouts, so a slow table never holds a sync up."""

    def __init__(
        self, table_name: str, retention_days: int = DEFAULT_RETENTION_DAYS, client: DynamoDBClient | None = None
    ) -> None:
        self.table_name = table_name
        self.retention_seconds = retention_days * 24 * 3600
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            import boto3

            config = Config(connect_timeout=2, read_timeout=2, retries={"max_attempts": 2, "mode": "standard"})
            self._client = boto3.client("dynamodb", config=config)
        return self._client

    def update(
        self,
        sync_id: str,
        entry: str,
        values: dict[str, Any],
        *,
        keep: dict[str, Any] | None = None,
        only_if_missing: str | None = None,
        only_if_below: tuple[str, float] | None = None,
    ) -> bool:
        names: dict[str, str] = {}
        attribute_values: dict[str, Any] = {":expiration": {"N": str(int(time.time()) + self.retention_seconds)}}
        assignments = ["#expiration = :expiration"]
        names["#expiration"] = "expiration"
        for index, (name, value) in enumerate({**values, **(keep or {})}.items()):
            names[f"#a{index}"] = name
            attribute_values[f":a{index}"] = to_attribute(value)
            if name in values:
                assignments.append(f"#a{index} = :a{index}")
            else:
                assignments.append(f"#a{index} = if_not_exists(#a{index}, :a{index})")
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"syncId": {"S": sync_id}, "entry": {"S": entry}},
            "UpdateExpression": "SET " + ", ".join(assignments),
        }
        if only_if_missing:
            names["#c"] = only_if_missing
            kwargs["ConditionExpression"] = "attribute_not_exists(#c)"
        elif only_if_below:
            names["#c"] = only_if_below[0]
            attribute_values[":c"] = to_attribute(only_if_below[1])
            kwargs["ConditionExpression"] = "attribute_not_exists(#c) OR #c < :c"
        kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = attribute_values
        try:
            self.client.update_item(**kwargs)
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True


def to_attribute(value: Any) -> dict[str, Any]:
    """A JSON-like value as a DynamoDB attribute (numbers as N, None as NULL)."""
    from boto3.dynamodb.types import TypeSerializer

    return dict(TypeSerializer().serialize(json.loads(json.dumps(value), parse_float=Decimal)))


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {key: _plain(deserializer.deserialize(value)) for key, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | set):
        return [_plain(item) for item in value]
    return value


def from_env(env: dict[str, str] | None = None) -> HistoryStore | None:
    """The table named by SYNC_HISTORY_TABLE (template.yaml), kept SYNC_HISTORY_RETENTION_DAYS; None without."""
    env = dict(os.environ) if env is None else env
    table = env.get("SYNC_HISTORY_TABLE", "")
    if not table:
        return None
    return DynamoDBHistoryStore(table, int(env.get("SYNC_HISTORY_RETENTION_DAYS") or DEFAULT_RETENTION_DAYS))


# --- what the sync paths record (each call best effort) ----------------------------------------------


def _store(ctx: SyncContext) -> HistoryStore | None:
    return getattr(ctx, "history", None)


def _safely(what: str, sync_id: str, write: Any) -> bool | None:
    try:
        return bool(write())
    except Exception:  # the history must never fail a sync
        logger.warning(
            "could not write the sync history", exc_info=True, extra={"sync_process_id": sync_id, "what": what}
        )
        return None


def _day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def _cut(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def execution_arn(state_machine_arn: str, sync_id: str) -> str | None:
    if ":stateMachine:" not in state_machine_arn:
        return None
    from people_sync.sync_service import execution_name

    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{execution_name(sync_id)}"


def _identity(ctx: SyncContext, at: float) -> dict[str, Any]:
    """What a record is listed by, set once (whoever writes the record first)."""
    return {
        "orgId": ctx.org_id,
        "target": ctx.target.name,
        "startedAt": at,
        "listDay": _day(at),
        "status": "RUNNING",
    }


def _file(staged: StagedFile) -> dict[str, Any]:
    return {
        "file": staged.name,
        "bucket": staged.bucket,
        "key": staged.key,
        "versionId": staged.version_id,
        "folder": staged.org_id,
        **({"size": staged.size} if staged.size is not None else {}),
    }


def _event(ctx: SyncContext, sync_id: str, kind: str, key: str, message: str, **fields: Any) -> None:
    store = _store(ctx)
    if store is None:
        return
    values = {"kind": kind, "at": ctx.clock(), "message": _cut(message), **fields}
    _safely(kind, sync_id, lambda: store.update(sync_id, f"{EVENT_PREFIX}{kind}#{key}", values))


def sync_opened(ctx: SyncContext, request: StartRequest) -> None:
    """A sync's status loop is being started (upload or Sync Now): its record, once."""
    store = _store(ctx)
    sync_id = request.sync_process_id
    at = ctx.clock()
    values: dict[str, Any] = {**_identity(ctx, at), "trigger": request.kind}
    arn = execution_arn(ctx.settings.state_machine_arn, sync_id)
    if arn:
        values["executionArn"] = arn
    if request.file is not None:
        values.update(_file(request.file))
    first = True
    if store is not None:
        first = (
            _safely("open", sync_id, lambda: store.update(sync_id, RECORD, values, only_if_missing="trigger"))
            is not False
        )
    if first:
        sync_metrics.emit(ctx, "SyncsStarted", 1)
    what = f"Sync opened ({request.kind})" + (f" for {request.file.name}" if request.file else "")
    _event(ctx, sync_id, "open", "0", what)


def import_started(ctx: SyncContext, sync_id: str, staged: StagedFile, job: ImportJob, upload_seconds: float) -> None:
    """The file reached the target and its import started (a Sync Now learns its file here)."""
    store = _store(ctx)
    values = {**_file(staged), "importId": job.import_id, "uploadSeconds": round(upload_seconds, 3)}
    first = True
    if store is not None:
        written = _safely(
            "import",
            sync_id,
            lambda: store.update(sync_id, RECORD, values, keep=_identity(ctx, ctx.clock()), only_if_missing="importId"),
        )
        first = written is not False
    if first and staged.size is not None:
        sync_metrics.emit(ctx, "UploadBytes", staged.size, unit="Bytes")
        sync_metrics.emit(ctx, "UploadSeconds", upload_seconds, unit="Seconds")
    _event(
        ctx,
        sync_id,
        "import",
        job.import_id or "0",
        f"{ctx.target.display_name} accepted {staged.name}; import {job.import_id}",
    )


def progress_shown(ctx: SyncContext, sync_id: str, progress: float, message: str) -> None:
    _event(ctx, sync_id, "progress", f"{progress:.3f}", message, progress=progress)


def checked(ctx: SyncContext, state: SyncState) -> None:
    """One check of the status loop (after it ran): the record counts it, the first MAX_CHECK_EVENTS are listed."""
    sync_id, attempt = state.sync_process_id, checks_made(state)
    store = _store(ctx)
    if store is not None:
        _safely(
            "checks",
            sync_id,
            lambda: store.update(sync_id, RECORD, {"checks": attempt}, only_if_below=("checks", attempt)),
        )
    if attempt > MAX_CHECK_EVENTS:
        return
    unavailable = state.poll.unavailable_checks
    words = f"{ctx.target.display_name} unavailable ({unavailable} in a row); waiting it out" if unavailable else None
    message = words or f"import {state.import_state}" + (f": {state.import_message}" if state.import_message else "")
    _event(ctx, sync_id, "check", f"{attempt:05d}", message, attempt=attempt, importState=state.import_state)


def checks_made(state: SyncState) -> int:
    """Checks of the import so far: each check that did not finish it advanced `poll.attempt`; the last did not."""
    return state.poll.attempt + (1 if state.finished else 0)


def fault(ctx: SyncContext, sync_id: str, where: str, number: int, message: str) -> None:
    """Something went wrong in `where` (a check, the start, the loop) and is retried or ends the loop; the
    `number`th time (in a row) it did. Listed up to MAX_FAULT_EVENTS."""
    if number > MAX_FAULT_EVENTS:
        return
    _event(ctx, sync_id, "fault", f"{where}#{number:03d}", message)


def import_finished(ctx: SyncContext, state: SyncState, elapsed: float) -> None:
    """A followed import ended (done, failed, timed out): its duration and checks, counted once."""
    store = _store(ctx)
    sync_id = state.sync_process_id
    checks = checks_made(state)
    values = {"importSeconds": round(elapsed, 3), "checks": checks, "outcome": state.outcome}
    first = True
    if store is not None:
        first = (
            _safely("finished", sync_id, lambda: store.update(sync_id, RECORD, values, only_if_missing="importSeconds"))
            is not False
        )
    if first:
        sync_metrics.emit(ctx, "ImportDurationSeconds", elapsed, unit="Seconds")
        sync_metrics.emit(ctx, "ChecksPerSync", checks)


def sync_closed(ctx: SyncContext, sync_id: str, final: dict[str, Any]) -> None:
    """The sync's final status (the one the first close decided): the record's end, once."""
    store = _store(ctx)
    at = ctx.clock()
    results = dict(final.get("results") or {})
    succeeded = bool(final.get("succeeded"))
    message = str(final.get("message") or "")
    values: dict[str, Any] = {
        "status": "DONE" if succeeded else "ERROR",
        "endedAt": at,
        "message": _cut(message),
        "counts": {key: results[key] for key in RESULT_COUNTS if isinstance(results.get(key), int | float)},
    }
    moved = _MOVED_TO.search(message)
    if moved:
        values["failedKey"] = moved["key"]
        values["failedReport"] = f"{moved['key']}.report.json"
    row_errors = results.get("rowErrors")
    if isinstance(row_errors, dict) and row_errors.get("report"):
        values["rowErrorReport"] = row_errors["report"]
    if results.get("dryRun"):
        values["dryRun"] = True
    if results.get("duplicateOf"):
        values["duplicateOf"] = results["duplicateOf"]
    if results.get("file") and isinstance(results["file"], str):
        values["file"] = results["file"]
    keep = {**_identity(ctx, at), "trigger": "upload"}
    keep.pop("status")
    first = True
    if store is not None:
        first = (
            _safely(
                "close", sync_id, lambda: store.update(sync_id, RECORD, values, keep=keep, only_if_missing="endedAt")
            )
            is not False
        )
    if first:
        if results.get("duplicateOf"):
            sync_metrics.emit(ctx, "DuplicateSyncsClosed", 1)
        elif succeeded:
            sync_metrics.emit(ctx, "SyncsDone", 1)
        else:
            sync_metrics.emit(ctx, "SyncsFailed", 1)
    _event(ctx, sync_id, "close", "0", message, status=values["status"])


# --- reading (the operator tool) ---------------------------------------------------------------------


@dataclass
class SyncHistoryReader:
    """Queries the history table (GetItem, Query on the table and its GSIs; never Scan)."""

    table_name: str
    client: Any

    def record(self, sync_id: str) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.table_name, Key={"syncId": {"S": sync_id}, "entry": {"S": RECORD}}
        ).get("Item")
        return self._with_trigger(from_item(item)) if item else None

    def events(self, sync_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "syncId = :id AND begins_with(#entry, :events)",
            "ExpressionAttributeNames": {"#entry": "entry"},
            "ExpressionAttributeValues": {":id": {"S": sync_id}, ":events": {"S": EVENT_PREFIX}},
        }
        for page in self._pages(kwargs):
            events.extend(from_item(item) for item in page)
        return _in_order(events)

    def records(
        self, *, org: str | None = None, since: float, until: float | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Newest first, started in [since, until]: Query byOrg for one org, else byDay, one day at a time."""
        until = time.time() if until is None else until
        bounds = {":since": {"N": str(since)}, ":until": {"N": str(until)}}
        if org:
            partitions = [(BY_ORG_INDEX, "orgId", org)]
        else:
            days, day = [], until
            while day >= since - 86400:
                days.append(_day(day))
                day -= 86400
            partitions = [(BY_DAY_INDEX, "listDay", name) for name in dict.fromkeys(days)]
        count = 0
        for index, key, value in partitions:
            kwargs = {
                "TableName": self.table_name,
                "IndexName": index,
                "KeyConditionExpression": "#key = :value AND startedAt BETWEEN :since AND :until",
                "ExpressionAttributeNames": {"#key": key},
                "ExpressionAttributeValues": {":value": {"S": value}, **bounds},
                "ScanIndexForward": False,
            }
            for page in self._pages(kwargs):
                for item in page:
                    yield self._with_trigger(from_item(item))
                    count += 1
                    if limit is not None and count >= limit:
                        return

    def _pages(self, kwargs: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        while True:
            page = self.client.query(**kwargs)
            yield page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}

    def _with_trigger(self, record: dict[str, Any]) -> dict[str, Any]:
        """An upload of a version the operator tool staged again from failed/ is shown as a retry."""
        if record.get("trigger") == "upload" and record.get("key") and record.get("versionId"):
            mark = self.client.get_item(
                TableName=self.table_name,
                Key={
                    "syncId": {"S": retry_mark(str(record["bucket"]), str(record["key"]), str(record["versionId"]))},
                    "entry": {"S": RECORD},
                },
            ).get("Item")
            if mark:
                record = {**record, "trigger": "retry", "retryOf": from_item(mark).get("retryOf")}
        return record

    def mark_retry(
        self, bucket: str, key: str, version_id: str, retry_of: str, retention_days: int = DEFAULT_RETENTION_DAYS
    ) -> None:
        """Remembers that this staged version is an operator's retry of a failed/ copy."""
        self.client.put_item(
            TableName=self.table_name,
            Item={
                "syncId": {"S": retry_mark(bucket, key, version_id)},
                "entry": {"S": RECORD},
                "retryOf": {"S": retry_of},
                "expiration": {"N": str(int(time.time()) + retention_days * 86400)},
            },
        )


def retry_mark(bucket: str, key: str, version_id: str) -> str:
    return f"{RETRY_MARK_PREFIX}s3://{bucket}/{key}#{version_id}"
