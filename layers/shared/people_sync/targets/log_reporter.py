"""Progress of syncs into targets other than ChartHop: structured log lines (CloudWatch) and metrics.

Orgvue and ELMA365 have no "Sync Now" progress bar of ours to drive, so a sync into them is reported
where an operator looks: one JSON log line per step, with the sync id, target, progress and message.

A sync's final line ("sync finished") is written once, whichever container closes it and wherever one dies.
Its record is the sync table's item `closed#<sync id>`, in two steps a retry can finish: a close first
claims the line (state `writing`, the first close's status and message, a short lease), then logs it, then
marks it `written`. A close that finds the line `written` writes nothing; one that finds a live claim is
told to come back (CheckInProgress, which every closer's caller retries); one that finds a claim whose
lease ran out (its writer died between the claim and the line) writes the claimed line itself. Without a
table (unit tests, single-process runs) "closed" is remembered in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from people_sync.loop_memory import CheckInProgress
from people_sync.sync_table import SyncTableStore, condition_failed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger("people_sync.progress")

#: A closed item outlives the state machine's 2 h limit (the watchdog comes after it) and then expires.
CLOSED_TTL_SECONDS = 2 * 24 * 3600
#: How long a claimed final line is left to its writer: logging it takes milliseconds, so a claim older than
#: this belongs to a close that died (a Lambda timeout or kill) between the claim and the line.
FINAL_LINE_LEASE_SECONDS = 60
WRITING, WRITTEN = "writing", "written"


class LogProgressReporter:
    def __init__(
        self,
        target: str,
        *,
        org_id: str | None = None,
        table: str | None = None,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        #: The org whose syncs these are, when it is not the stack's own: its sync ids name it.
        self.org_id = org_id
        self._org: dict[str, str] = {"org_id": org_id} if org_id else {}
        self.store = SyncTableStore(table, client) if table else None
        self.clock = clock
        #: Syncs whose final line this container wrote (with a table, a shortcut before asking it).
        self.closed: set[str] = set()
        self._lock = threading.Lock()

    def start_sync(self, name: str, source: str, version_id: str | None) -> str:
        """A deterministic id (the same object version is the same sync), short enough for an execution name:
        `<target>-<digest>`, and `-<org>` after it for an org other than the stack's own (the digest first, so
        that cutting a long org id to fit an execution name never cuts the part that tells syncs apart)."""
        digest = hashlib.sha256(f"{source}#{version_id}".encode()).hexdigest()[:24]
        sync_id = f"{self.target}-{digest}" + (f"-{self.org_id}" if self.org_id else "")
        logger.info(
            "sync started",
            extra={"sync_id": sync_id, "target": self.target, **self._org, "file": name, "source": source},
        )
        return sync_id

    def is_closed(self, sync_id: str) -> bool:
        """The sync's final line is written (a claimed, unwritten line is not closed yet)."""
        if sync_id in self.closed or self.store is None:
            return sync_id in self.closed
        item = self.store.get(_key(sync_id))
        return bool(item) and _state(item) == WRITTEN

    def report_progress(self, sync_id: str, progress: float, message: str) -> None:
        logger.info(
            "sync progress",
            extra={
                "sync_id": sync_id,
                "target": self.target,
                **self._org,
                "progress": round(progress, 3),
                "progress_message": message,
            },
        )

    def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None:
        decided = {"status": "DONE" if succeeded else "ERROR", "message": message, "results": results}
        final = self._claim(sync_id, decided)
        if final is None:
            logger.info(
                "sync already closed", extra={"sync_id": sync_id, "target": self.target, "status": decided["status"]}
            )
            return
        log = logger.info if final["status"] == "DONE" else logger.error
        log(
            "sync finished",
            extra={
                "sync_id": sync_id,
                "target": self.target,
                **self._org,
                "status": final["status"],
                "progress_message": final["message"],
                "results": final["results"],
            },
        )
        self._mark_written(sync_id)

    def _claim(self, sync_id: str, decided: dict[str, Any]) -> dict[str, Any] | None:
        """The final line this close must write (the first close's decision), or None when it is written.
        Raises CheckInProgress while another close holds a live claim on it."""
        with self._lock:
            if sync_id in self.closed:
                return None
            if self.store is None:
                self.closed.add(sync_id)
                return decided
        now = int(self.clock())
        try:
            item = self.store.client.update_item(
                TableName=self.store.table_name,
                Key={"id": {"S": _key(sync_id)}},
                UpdateExpression=(
                    "SET #state = :writing, leaseUntil = :until, closedAt = if_not_exists(closedAt, :now), "
                    "expiration = if_not_exists(expiration, :expires), #status = if_not_exists(#status, :status), "
                    "message = if_not_exists(message, :message), results = if_not_exists(results, :results)"
                ),
                ConditionExpression="attribute_not_exists(#id) OR (#state = :writing AND leaseUntil < :now)",
                ExpressionAttributeNames={"#id": "id", "#state": "state", "#status": "status"},
                ExpressionAttributeValues={
                    ":writing": {"S": WRITING},
                    ":until": {"N": str(now + FINAL_LINE_LEASE_SECONDS)},
                    ":now": {"N": str(now)},
                    ":expires": {"N": str(now + CLOSED_TTL_SECONDS)},
                    ":status": {"S": decided["status"]},
                    ":message": {"S": decided["message"]},
                    ":results": {"S": json.dumps(decided["results"], sort_keys=True, default=str)},
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if not condition_failed(error):
                # The close is what an operator must see: log it even if a second line may follow elsewhere.
                logger.warning("could not record the sync as closed", extra={"sync_id": sync_id}, exc_info=True)
                return decided
            if _state(self.store.get(_key(sync_id))) == WRITING:
                raise CheckInProgress(f"the final line of {sync_id} is being written by another close") from error
            with self._lock:
                self.closed.add(sync_id)
            return None
        return {
            "status": item["status"]["S"],
            "message": item["message"]["S"],
            "results": json.loads(item["results"]["S"]),
        }

    def _mark_written(self, sync_id: str) -> None:
        with self._lock:
            self.closed.add(sync_id)
        if self.store is None:
            return
        try:
            self.store.client.update_item(
                TableName=self.store.table_name,
                Key={"id": {"S": _key(sync_id)}},
                UpdateExpression="SET #state = :written REMOVE leaseUntil",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":written": {"S": WRITTEN}},
            )
        except ClientError:
            # Left `writing`: a close after the lease writes the line again (better twice than never).
            logger.warning("could not mark the final line written", extra={"sync_id": sync_id}, exc_info=True)


def _key(sync_id: str) -> str:
    return f"closed#{sync_id}"


def _state(item: dict[str, Any]) -> str:
    """An item from before the two steps (no state) was written with its line."""
    return str(item.get("state", {}).get("S", WRITTEN))
