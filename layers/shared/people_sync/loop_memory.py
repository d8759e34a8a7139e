"""What the status loop remembers between two checks outside the state machine's data.

The loop's task waits on a task token whose timeout is the poll wait; when a wait just runs out, the
next check gets the same execution data again. What must still carry over from check to check (the
progress last shown, outages in a row) and what a target's callback needs (the task token of the wait
in progress and the data to hand back) lives here: one DynamoDB item per sync, each field updated on
its own, so a callback and a check never overwrite each other.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field

from people_sync import aws_clients
from people_sync.models import CamelModel

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_stepfunctions import SFNClient

logger = logging.getLogger(__name__)

#: Loop records outlive the longest sync (the state machine's 2 h limit) and then expire (DynamoDB TTL).
RECORD_TTL_SECONDS = 2 * 24 * 3600


class LoopRecord(CamelModel):
    reported_progress: float = 0.0
    unavailable_checks: int = 0
    #: The token of the wait in progress and the execution data to hand back with it.
    task_token: str | None = None
    waiting_state: dict[str, Any] | None = None
    #: The query parameters of a target's completion callback, once it has called.
    callback: dict[str, str] | None = Field(default=None)


class LoopMemory(Protocol):
    def load(self, sync_id: str) -> LoopRecord: ...

    def save_turn(
        self,
        sync_id: str,
        *,
        reported_progress: float,
        unavailable_checks: int,
        task_token: str | None,
        waiting_state: dict[str, Any] | None,
    ) -> None:
        """Records a check's outcome and the wait that follows it (token None: nothing waits)."""
        ...

    def record_callback(self, sync_id: str, callback: dict[str, str]) -> LoopRecord:
        """Stores a target's callback and returns the record as it now stands."""
        ...


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


class InMemoryLoopMemory:
    """For unit tests and local experiments."""

    def __init__(self) -> None:
        self.records: dict[str, LoopRecord] = {}
        self._lock = threading.Lock()

    def load(self, sync_id: str) -> LoopRecord:
        with self._lock:
            return self.records.get(sync_id, LoopRecord()).model_copy()

    def save_turn(
        self,
        sync_id: str,
        *,
        reported_progress: float,
        unavailable_checks: int,
        task_token: str | None,
        waiting_state: dict[str, Any] | None,
    ) -> None:
        with self._lock:
            record = self.records.get(sync_id, LoopRecord())
            self.records[sync_id] = record.model_copy(
                update={
                    "reported_progress": reported_progress,
                    "unavailable_checks": unavailable_checks,
                    "task_token": task_token,
                    "waiting_state": waiting_state,
                }
            )

    def record_callback(self, sync_id: str, callback: dict[str, str]) -> LoopRecord:
        with self._lock:
            record = self.records.get(sync_id, LoopRecord()).model_copy(update={"callback": callback})
            self.records[sync_id] = record
            return record.model_copy()


class DynamoDBLoopMemory:
    """One item per sync (`id` = loop#<sync id>), in the table shared with the import slots."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws_clients.dynamodb()
        return self._client

    def load(self, sync_id: str) -> LoopRecord:
        item = self.client.get_item(TableName=self.table_name, Key=_key(sync_id), ConsistentRead=True).get("Item")
        if not item:
            return LoopRecord()
        values: dict[str, Any] = {}
        if "reportedProgress" in item:
            values["reported_progress"] = float(item["reportedProgress"]["N"])
        if "unavailableChecks" in item:
            values["unavailable_checks"] = int(item["unavailableChecks"]["N"])
        if "taskToken" in item:
            values["task_token"] = item["taskToken"]["S"]
        if "waitingState" in item:
            values["waiting_state"] = json.loads(item["waitingState"]["S"])
        if "callback" in item:
            values["callback"] = json.loads(item["callback"]["S"])
        return LoopRecord(**values)

    def save_turn(
        self,
        sync_id: str,
        *,
        reported_progress: float,
        unavailable_checks: int,
        task_token: str | None,
        waiting_state: dict[str, Any] | None,
    ) -> None:
        values: dict[str, Any] = {
            ":progress": {"N": repr(reported_progress)},
            ":unavailable": {"N": str(unavailable_checks)},
            ":expiration": {"N": str(_expiration())},
        }
        assignments = ["reportedProgress = :progress", "unavailableChecks = :unavailable", "expiration = :expiration"]
        removals = []
        if task_token is not None and waiting_state is not None:
            values[":token"] = {"S": task_token}
            values[":state"] = {"S": json.dumps(waiting_state)}
            assignments += ["taskToken = :token", "waitingState = :state"]
        else:
            removals = ["taskToken", "waitingState"]
        expression = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(removals) if removals else "")
        self.client.update_item(
            TableName=self.table_name,
            Key=_key(sync_id),
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
        )

    def record_callback(self, sync_id: str, callback: dict[str, str]) -> LoopRecord:
        self.client.update_item(
            TableName=self.table_name,
            Key=_key(sync_id),
            UpdateExpression="SET callback = :callback, expiration = if_not_exists(expiration, :expiration)",
            ExpressionAttributeValues={
                ":callback": {"S": json.dumps(callback)},
                ":expiration": {"N": str(_expiration())},
            },
        )
        return self.load(sync_id)


def _key(sync_id: str) -> dict[str, Any]:
    return {"id": {"S": f"loop#{sync_id}"}}


def _expiration() -> int:
    return int(time.time()) + RECORD_TTL_SECONDS
