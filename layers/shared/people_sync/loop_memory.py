"""What the status loop remembers between two checks outside the state machine's data.

The loop's task waits on a task token whose timeout is the poll wait; when a wait just runs out, the
next check gets the same execution data again. What must still carry over from check to check (the
progress last shown, outages in a row), what a target's callback needs (the task token of the wait
in progress and the data to hand back) and what must never be lost or undone lives here: one DynamoDB
item per sync, each field updated on its own, so a callback and a check never overwrite each other.

The record is also the sync's guard, because a hand-back can be lost (a check that runs past its wait)
and two checks can overlap (a wait ran out while a check was still running):
- the import job as last changed (an ELMA365 chunk started) is saved here before anything else, so a
  check entered with older execution data continues the newer job instead of starting a chunk again;
- one check at a time holds the sync's check lease (`checkOwner`/`checkUntil`, expiring on its own);
- progress is claimed with a conditional write (`reportedProgress` only grows), so the bar never moves
  back, whichever writer is late;
- closing takes the lease and sets `closedAt`: no progress is claimed after that, and a check still
  holding the lease makes the close wait (it is retried) instead of racing the check's last write.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError
from pydantic import Field

from people_sync.models import CamelModel
from people_sync.sync_table import SyncTableStore, condition_failed

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

logger = logging.getLogger(__name__)

#: Loop records outlive the longest sync (the state machine's 2 h limit) and then expire (DynamoDB TTL).
RECORD_TTL_SECONDS = 2 * 24 * 3600
#: The owner name the closing step holds the check lease under.
CLOSER = "closer"


class LoopRecord(CamelModel):
    reported_progress: float = 0.0
    unavailable_checks: int = 0
    #: Checks in a row that failed with an error that is not the target's (AWS, a bug): transient ones
    #: are waited out like an outage.
    failed_checks: int = 0
    #: The token of the wait in progress and the execution data to hand back with it.
    task_token: str | None = None
    waiting_state: dict[str, Any] | None = None
    #: The query parameters of a target's completion callback, once it has called.
    callback: dict[str, str] | None = Field(default=None)
    #: The import job as last changed by a check (id and target bookkeeping); newer than the execution
    #: data whenever a hand-back was lost.
    import_id: str | None = None
    import_detail: dict[str, Any] | None = None
    #: What the target said when its import finished (state, message, results), kept so that whoever
    #: closes the sync can say what is known even if the loop broke afterwards.
    outcome: dict[str, Any] | None = None
    #: Who holds the check lease, and until when (epoch seconds).
    check_owner: str | None = None
    check_until: float | None = None
    #: When the sync was closed (its final status is being or was written); nothing is reported after.
    closed_at: float | None = None
    #: The final status the first close decided on (succeeded, message, results, summary): a retried close
    #: writes exactly this again, so a retry never shows a different final (a new elapsed time, a new
    #: failed/ copy).
    final: dict[str, Any] | None = None
    #: The final status was written (so a retried close does not write it again).
    final_written: bool = False
    #: The skipped rows of a finished import as the close reported them (count, report key, why details are
    #: missing), kept once the report and the log are done: a retried close says the same without reading again.
    row_errors: dict[str, Any] | None = None
    #: Row-error entries already appended to the sync process's log (ChartHop's log has no idempotency key:
    #: a retried close appends only what is left; a batch is repeated only if the close died between its POST
    #: and this count).
    log_entries_appended: int = 0


class CheckInProgress(Exception):
    """Another check holds the sync's lease: this one must not run (or the close must wait)."""


class LoopMemory(Protocol):
    def load(self, sync_id: str) -> LoopRecord: ...

    def save_turn(
        self,
        sync_id: str,
        *,
        unavailable_checks: int,
        task_token: str | None,
        waiting_state: dict[str, Any] | None,
    ) -> None:
        """Records a check's outcome and the wait that follows it (token None: nothing waits). The progress
        shown is recorded by `claim_progress` alone."""
        ...

    def record_callback(self, sync_id: str, callback: dict[str, str]) -> LoopRecord:
        """Stores a target's callback and returns the record as it now stands."""
        ...

    def save_job(self, sync_id: str, import_id: str, detail: dict[str, Any]) -> None:
        """The import job as a check just changed it (written before the hand-back that may be lost)."""
        ...

    def save_outcome(self, sync_id: str, outcome: dict[str, Any]) -> None:
        """What the target said when the import finished."""
        ...

    def set_failed_checks(self, sync_id: str, count: int) -> None: ...

    def acquire_check(self, sync_id: str, owner: str, now: float, lease_seconds: float) -> bool:
        """The sync's check lease for `owner`: False while another owner holds it or once the sync is
        closed."""
        ...

    def release_check(self, sync_id: str, owner: str) -> None: ...

    def claim_progress(self, sync_id: str, progress: float) -> bool:
        """True when `progress` is above what was reported and the sync is not closed; it is then the
        reported progress. Only a claimed progress may be shown."""
        ...

    def close(self, sync_id: str, now: float, lease_seconds: float, final: dict[str, Any]) -> LoopRecord:
        """Marks the sync closed under the check lease and keeps `final` unless an earlier close decided one;
        raises CheckInProgress while a check holds the lease. Returns the record as it was (its `final` is
        the decision to write, when set; `final_written` tells whether it is written)."""
        ...

    def mark_final_written(self, sync_id: str) -> None: ...

    def save_row_errors(self, sync_id: str, summary: dict[str, Any]) -> None:
        """The skipped rows' summary, once their report and log entries are written."""
        ...

    def set_log_entries_appended(self, sync_id: str, count: int) -> None: ...


def callback_received(memory: LoopMemory, stepfunctions: SFNClient, sync_id: str, callback: dict[str, str]) -> bool:
    """A target called back: remember what it said and end the wait in progress, if there is one.

    The callback is stored first, so a callback that arrives between two waits is still seen by the
    next check. Returns True when a waiting task was completed.
    """
    record = memory.record_callback(sync_id, callback)
    if not record.task_token or record.waiting_state is None:
        logger.info("callback stored; no wait in progress", extra={"sync_process_id": sync_id})
        return False
    try:
        stepfunctions.send_task_success(taskToken=record.task_token, output=json.dumps(record.waiting_state))
    except (stepfunctions.exceptions.TaskTimedOut, stepfunctions.exceptions.TaskDoesNotExist):
        logger.info("that wait already ran out; the next check reads the callback", extra={"sync_process_id": sync_id})
        return False
    return True


def _lease_free(record: LoopRecord, owner: str, now: float) -> bool:
    return record.check_owner in (None, owner) or record.check_until is None or record.check_until < now


class InMemoryLoopMemory:
    """For unit tests and local experiments; the same rules as the DynamoDB record."""

    def __init__(self) -> None:
        self.records: dict[str, LoopRecord] = {}
        self._lock = threading.Lock()

    def load(self, sync_id: str) -> LoopRecord:
        with self._lock:
            return self.records.get(sync_id, LoopRecord()).model_copy()

    def _update(self, sync_id: str, **values: Any) -> LoopRecord:
        record = self.records.get(sync_id, LoopRecord()).model_copy(update=values)
        self.records[sync_id] = record
        return record

    def save_turn(
        self,
        sync_id: str,
        *,
        unavailable_checks: int,
        task_token: str | None,
        waiting_state: dict[str, Any] | None,
    ) -> None:
        with self._lock:
            self._update(
                sync_id,
                unavailable_checks=unavailable_checks,
                task_token=task_token,
                waiting_state=waiting_state,
            )

    def record_callback(self, sync_id: str, callback: dict[str, str]) -> LoopRecord:
        with self._lock:
            return self._update(sync_id, callback=callback).model_copy()

    def save_job(self, sync_id: str, import_id: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self._update(sync_id, import_id=import_id, import_detail=detail)

    def save_outcome(self, sync_id: str, outcome: dict[str, Any]) -> None:
        with self._lock:
            self._update(sync_id, outcome=outcome)

    def set_failed_checks(self, sync_id: str, count: int) -> None:
        with self._lock:
            self._update(sync_id, failed_checks=count)

    def acquire_check(self, sync_id: str, owner: str, now: float, lease_seconds: float) -> bool:
        with self._lock:
            record = self.records.get(sync_id, LoopRecord())
            if record.closed_at is not None or not _lease_free(record, owner, now):
                return False
            self._update(sync_id, check_owner=owner, check_until=now + lease_seconds)
            return True

    def release_check(self, sync_id: str, owner: str) -> None:
        with self._lock:
            if self.records.get(sync_id, LoopRecord()).check_owner == owner:
                self._update(sync_id, check_owner=None, check_until=None)

    def claim_progress(self, sync_id: str, progress: float) -> bool:
        with self._lock:
            record = self.records.get(sync_id, LoopRecord())
            if record.closed_at is not None or progress <= record.reported_progress:
                return False
            self._update(sync_id, reported_progress=progress)
            return True

    def close(self, sync_id: str, now: float, lease_seconds: float, final: dict[str, Any]) -> LoopRecord:
        with self._lock:
            record = self.records.get(sync_id, LoopRecord())
            if not _lease_free(record, CLOSER, now):
                raise CheckInProgress(f"a check of {sync_id} is in progress")
            self._update(
                sync_id,
                closed_at=record.closed_at or now,
                check_owner=CLOSER,
                check_until=now + lease_seconds,
                final=record.final or final,
            )
            return record.model_copy()

    def mark_final_written(self, sync_id: str) -> None:
        with self._lock:
            self._update(sync_id, final_written=True)

    def save_row_errors(self, sync_id: str, summary: dict[str, Any]) -> None:
        with self._lock:
            self._update(sync_id, row_errors=summary)

    def set_log_entries_appended(self, sync_id: str, count: int) -> None:
        with self._lock:
            self._update(sync_id, log_entries_appended=count)


class DynamoDBLoopMemory(SyncTableStore):
    """One item per sync (`id` = loop#<sync id>), in the sync table."""

    def load(self, sync_id: str) -> LoopRecord:
        item = self.get(f"loop#{sync_id}")
        return _record(item) if item else LoopRecord()

    def _set(
        self,
        sync_id: str,
        values: dict[str, Any],
        *,
        remove: tuple[str, ...] = (),
        condition: str | None = None,
        condition_values: dict[str, Any] | None = None,
    ) -> None:
        """SET each camelCase attribute in `values` (JSON-encoded where not a number), with the TTL."""
        names = {f"#{name}": name for name in values}
        attribute_values: dict[str, Any] = {":expiration": {"N": str(_expiration())}, **(condition_values or {})}
        assignments = ["expiration = :expiration"]
        for name, value in values.items():
            attribute_values[f":{name}"] = _attribute(value)
            assignments.append(f"#{name} = :{name}")
        for name in remove:
            names[f"#{name}"] = name
        expression = "SET " + ", ".join(assignments)
        if remove:
            expression += " REMOVE " + ", ".join(f"#{name}" for name in remove)
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": _key(sync_id),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": attribute_values,
            "ExpressionAttributeNames": {**names, **_condition_names(condition)},
        }
        if condition:
            kwargs["ConditionExpression"] = condition
        self.client.update_item(**kwargs)

    def save_turn(
        self,
        sync_id: str,
        *,
        unavailable_checks: int,
        task_token: str | None,
        waiting_state: dict[str, Any] | None,
    ) -> None:
        values: dict[str, Any] = {"unavailableChecks": unavailable_checks}
        remove: tuple[str, ...] = ("taskToken", "waitingState")
        if task_token is not None and waiting_state is not None:
            values.update(taskToken=task_token, waitingState=waiting_state)
            remove = ()
        self._set(sync_id, values, remove=remove)

    def record_callback(self, sync_id: str, callback: dict[str, str]) -> LoopRecord:
        self._set(sync_id, {"callback": callback})
        return self.load(sync_id)

    def save_job(self, sync_id: str, import_id: str, detail: dict[str, Any]) -> None:
        self._set(sync_id, {"importId": import_id, "importDetail": detail})

    def save_outcome(self, sync_id: str, outcome: dict[str, Any]) -> None:
        self._set(sync_id, {"outcome": outcome})

    def set_failed_checks(self, sync_id: str, count: int) -> None:
        self._set(sync_id, {"failedChecks": count})

    def acquire_check(self, sync_id: str, owner: str, now: float, lease_seconds: float) -> bool:
        try:
            self._set(
                sync_id,
                {"checkOwner": owner, "checkUntil": now + lease_seconds},
                condition=f"attribute_not_exists(#closedAt) AND ({_LEASE_FREE})",
                condition_values={":now": _attribute(now), ":owner": {"S": owner}},
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def release_check(self, sync_id: str, owner: str) -> None:
        try:
            self._set(
                sync_id,
                {},
                remove=("checkOwner", "checkUntil"),
                condition="#checkOwner = :owner",
                condition_values={":owner": {"S": owner}},
            )
        except ClientError as error:
            if not condition_failed(error):
                raise

    def claim_progress(self, sync_id: str, progress: float) -> bool:
        try:
            self._set(
                sync_id,
                {"reportedProgress": progress},
                condition="attribute_not_exists(#closedAt) AND "
                "(attribute_not_exists(#reportedProgress) OR #reportedProgress < :reportedProgress)",
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def close(self, sync_id: str, now: float, lease_seconds: float, final: dict[str, Any]) -> LoopRecord:
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key=_key(sync_id),
                UpdateExpression="SET #checkOwner = :owner, #checkUntil = :until, "
                "#closedAt = if_not_exists(#closedAt, :now), #final = if_not_exists(#final, :final), "
                "expiration = :expiration",
                ConditionExpression=_LEASE_FREE,
                ExpressionAttributeNames={
                    "#checkOwner": "checkOwner",
                    "#checkUntil": "checkUntil",
                    "#closedAt": "closedAt",
                    "#final": "final",
                },
                ExpressionAttributeValues={
                    ":final": _attribute(final),
                    ":owner": {"S": CLOSER},
                    ":until": _attribute(now + lease_seconds),
                    ":now": _attribute(now),
                    ":expiration": {"N": str(_expiration())},
                },
                ReturnValues="ALL_OLD",
            )
        except ClientError as error:
            if condition_failed(error):
                raise CheckInProgress(f"a check of {sync_id} is in progress") from error
            raise
        old = response.get("Attributes")
        return _record(old) if old else LoopRecord()  # type: ignore[arg-type]

    def mark_final_written(self, sync_id: str) -> None:
        self._set(sync_id, {"finalWritten": True})

    def save_row_errors(self, sync_id: str, summary: dict[str, Any]) -> None:
        self._set(sync_id, {"rowErrors": summary})

    def set_log_entries_appended(self, sync_id: str, count: int) -> None:
        self._set(sync_id, {"logEntriesAppended": count})


#: The check lease is free, expired, or already the caller's (`:owner`).
_LEASE_FREE = "attribute_not_exists(#checkUntil) OR #checkUntil < :now OR #checkOwner = :owner"


def _condition_names(condition: str | None) -> dict[str, str]:
    if not condition:
        return {}
    names = {"#closedAt": "closedAt", "#checkUntil": "checkUntil", "#checkOwner": "checkOwner"}
    names["#reportedProgress"] = "reportedProgress"
    return {name: value for name, value in names.items() if name in condition}


def _attribute(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(float(value)) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    return {"S": json.dumps(value)}


_FIELDS: dict[str, tuple[str, Any]] = {
    "reportedProgress": ("reported_progress", float),
    "unavailableChecks": ("unavailable_checks", int),
    "failedChecks": ("failed_checks", int),
    "taskToken": ("task_token", str),
    "waitingState": ("waiting_state", json.loads),
    "callback": ("callback", json.loads),
    "importId": ("import_id", str),
    "importDetail": ("import_detail", json.loads),
    "outcome": ("outcome", json.loads),
    "checkOwner": ("check_owner", str),
    "checkUntil": ("check_until", float),
    "closedAt": ("closed_at", float),
    "final": ("final", json.loads),
    "rowErrors": ("row_errors", json.loads),
    "logEntriesAppended": ("log_entries_appended", int),
}


def _record(item: dict[str, Any]) -> LoopRecord:
    values: dict[str, Any] = {}
    for attribute, (field_name, parse) in _FIELDS.items():
        if attribute in item:
            raw = item[attribute]
            values[field_name] = parse(raw.get("N", raw.get("S")))
    if "finalWritten" in item:
        values["final_written"] = bool(item["finalWritten"].get("BOOL"))
    return LoopRecord(**values)


def _key(sync_id: str) -> dict[str, Any]:
    return {"id": {"S": f"loop#{sync_id}"}}


def _expiration() -> int:
    return int(time.time()) + RECORD_TTL_SECONDS
