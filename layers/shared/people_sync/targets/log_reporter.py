"""Progress of syncs into targets other than ChartHop: structured log lines (CloudWatch) and metrics.

Orgvue and ELMA365 have no "Sync Now" progress bar of ours to drive, so a sync into them is reported
where an operator looks: one JSON log line per step, with the sync id, target, progress and message.

A sync is closed once: the status loop and the watchdog (sync finalizer) may run in different containers,
so "closed" is an item `closed#<sync id>` in the sync table, written with a condition that only the first
close passes. Without a table (unit tests, single-process runs) it is remembered in memory.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from people_sync import aws_clients

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger("people_sync.progress")

#: A closed item outlives the state machine's 2 h limit (the watchdog comes after it) and then expires.
CLOSED_TTL_SECONDS = 2 * 24 * 3600


class LogProgressReporter:
    def __init__(
        self,
        target: str,
        *,
        table: str | None = None,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.table = table or None
        self._client = client
        self.clock = clock
        #: Syncs this container saw closed (with a table, a shortcut before asking it).
        self.closed: set[str] = set()
        self._lock = threading.Lock()

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws_clients.dynamodb()
        return self._client

    def start_sync(self, name: str, source: str, version_id: str | None) -> str:
        """A deterministic id (the same object version is the same sync), short enough for an execution name."""
        digest = hashlib.sha256(f"{source}#{version_id}".encode()).hexdigest()[:24]
        sync_id = f"{self.target}-{digest}"
        logger.info("sync started", extra={"sync_id": sync_id, "target": self.target, "file": name, "source": source})
        return sync_id

    def is_closed(self, sync_id: str) -> bool:
        if sync_id in self.closed or self.table is None:
            return sync_id in self.closed
        item = self.client.get_item(TableName=self.table, Key=_key(sync_id), ConsistentRead=True).get("Item")
        return item is not None

    def report_progress(self, sync_id: str, progress: float, message: str) -> None:
        logger.info(
            "sync progress",
            extra={
                "sync_id": sync_id,
                "target": self.target,
                "progress": round(progress, 3),
                "progress_message": message,
            },
        )

    def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None:
        status = "DONE" if succeeded else "ERROR"
        if not self._close(sync_id, status):
            logger.info("sync already closed", extra={"sync_id": sync_id, "target": self.target, "status": status})
            return
        log = logger.info if succeeded else logger.error
        log(
            "sync finished",
            extra={
                "sync_id": sync_id,
                "target": self.target,
                "status": status,
                "progress_message": message,
                "results": results,
            },
        )

    def _close(self, sync_id: str, status: str) -> bool:
        """Marks the sync closed; False when it already was (here or in another container)."""
        with self._lock:
            if sync_id in self.closed:
                return False
            self.closed.add(sync_id)
        if self.table is None:
            return True
        now = self.clock()
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    **_key(sync_id),
                    "status": {"S": status},
                    "closedAt": {"N": str(int(now))},
                    "expiration": {"N": str(int(now) + CLOSED_TTL_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(#id)",
                ExpressionAttributeNames={"#id": "id"},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            # The close is what an operator must see: log it even if a second line may follow elsewhere.
            logger.warning("could not record the sync as closed", extra={"sync_id": sync_id}, exc_info=True)
        return True


def _key(sync_id: str) -> dict[str, Any]:
    return {"id": {"S": f"closed#{sync_id}"}}
