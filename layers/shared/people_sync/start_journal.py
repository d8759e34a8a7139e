"""What a sync's start has done so far, kept where a retry finds it.

A Lambda can die between any two lines, and the calls that start a sync are not idempotent in the
targets (a ChartHop `createProcess`, an `importDataCsv`, an Orgvue or ELMA365 import). So every step
is written down before and after it is taken, and a retry continues from the record instead of doing
the step again:

- `upload#<digest of bucket/key/version>`: the sync process opened for a staged object version, and
  whether an earlier attempt may already have opened one (then it is looked up, not created again);
- `start#<sync id>`: the sync is this app's to close (`owned`), an upload opened it (`uploadTrigger`: a
  `process.create` delivery for it is our own echo, not a "Sync Now"), an import was begun (`attempts`),
  and the import job once the target accepted it.

Items live in the sync table (key `id`, TTL attribute `expiration`) beside the loop memory and slots.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from people_sync.models import CamelModel, StagedFile
from people_sync.sync_table import SyncTableStore

if TYPE_CHECKING:
    pass

#: A staged object version is one sync for as long as S3 could deliver its event again (and a week more).
RECORD_TTL_SECONDS = 8 * 24 * 3600


class UploadRecord(CamelModel):
    sync_id: str | None = None
    #: An attempt was about to open a sync process (it may have, and then died before writing it here).
    opening: bool = False


class StartRecord(CamelModel):
    #: The sync is this app's: it opened it, or a "Sync Now" for it passed the checks.
    owned: bool = False
    #: Attempts that began the import (checks and upload); more than one means an attempt died.
    attempts: int = 0
    file: StagedFile | None = None
    import_id: str | None = None
    import_detail: dict[str, Any] | None = None
    #: The upload (its trigger digest) whose start opened this sync process: the app created it itself.
    upload_trigger: str | None = None


def upload_trigger(bucket: str, key: str, version_id: str | None) -> str:
    return hashlib.sha256(f"{bucket}/{key}#{version_id}".encode()).hexdigest()[:40]


class StartJournal(Protocol):
    def upload(self, trigger: str) -> UploadRecord: ...

    def opening(self, trigger: str) -> None:
        """About to open a sync process for this upload."""
        ...

    def opened(self, trigger: str, sync_id: str) -> str:
        """The sync process of this upload; returns the one recorded first if another attempt won. `sync_id`
        (a process this upload's start opened, won or not) is recorded as opened by the upload."""
        ...

    def start(self, sync_id: str) -> StartRecord: ...

    def own(self, sync_id: str, file: StagedFile | None) -> None:
        """The sync is the app's to close (and, when known, the file it imports)."""
        ...

    def begin_import(self, sync_id: str, file: StagedFile) -> StartRecord:
        """Counts an attempt at the import; returns the record as it was before this attempt."""
        ...

    def imported(self, sync_id: str, import_id: str, detail: dict[str, Any]) -> None:
        """The target accepted the import: this is its job."""
        ...

    def not_imported(self, sync_id: str) -> None:
        """The attempt failed before the target could have accepted anything (reading the staged file
        failed): it no longer counts as one that may have started an import."""
        ...


class InMemoryStartJournal:
    """For unit tests; the same rules as the DynamoDB journal."""

    def __init__(self) -> None:
        self.uploads: dict[str, UploadRecord] = {}
        self.starts: dict[str, StartRecord] = {}
        self._lock = threading.Lock()

    def upload(self, trigger: str) -> UploadRecord:
        with self._lock:
            return self.uploads.get(trigger, UploadRecord()).model_copy()

    def opening(self, trigger: str) -> None:
        with self._lock:
            self.uploads[trigger] = self.uploads.get(trigger, UploadRecord()).model_copy(update={"opening": True})

    def opened(self, trigger: str, sync_id: str) -> str:
        with self._lock:
            start = self.starts.get(sync_id, StartRecord())
            if start.upload_trigger is None:
                self.starts[sync_id] = start.model_copy(update={"upload_trigger": trigger})
            record = self.uploads.get(trigger, UploadRecord())
            if record.sync_id is None:
                self.uploads[trigger] = record.model_copy(update={"sync_id": sync_id})
                return sync_id
            return record.sync_id

    def start(self, sync_id: str) -> StartRecord:
        with self._lock:
            return self.starts.get(sync_id, StartRecord()).model_copy()

    def own(self, sync_id: str, file: StagedFile | None) -> None:
        with self._lock:
            record = self.starts.get(sync_id, StartRecord())
            self.starts[sync_id] = record.model_copy(update={"owned": True, "file": file or record.file})

    def begin_import(self, sync_id: str, file: StagedFile) -> StartRecord:
        with self._lock:
            before = self.starts.get(sync_id, StartRecord())
            self.starts[sync_id] = before.model_copy(update={"attempts": before.attempts + 1, "file": file})
            return before.model_copy()

    def imported(self, sync_id: str, import_id: str, detail: dict[str, Any]) -> None:
        with self._lock:
            record = self.starts.get(sync_id, StartRecord())
            self.starts[sync_id] = record.model_copy(update={"import_id": import_id, "import_detail": detail})

    def not_imported(self, sync_id: str) -> None:
        with self._lock:
            record = self.starts.get(sync_id, StartRecord())
            self.starts[sync_id] = record.model_copy(update={"attempts": max(0, record.attempts - 1)})


class DynamoDBStartJournal(SyncTableStore):
    def _update(self, key: str, expression: str, values: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        response = self.client.update_item(
            TableName=self.table_name,
            Key={"id": {"S": key}},
            UpdateExpression=f"{expression}, expiration = :expiration",
            ExpressionAttributeValues={**values, ":expiration": {"N": str(int(time.time()) + RECORD_TTL_SECONDS)}},
            **kwargs,
        )
        return dict(response.get("Attributes") or {})

    def upload(self, trigger: str) -> UploadRecord:
        item = self.get(f"upload#{trigger}")
        return UploadRecord(
            sync_id=item["syncId"]["S"] if "syncId" in item else None, opening=bool(item.get("opening", {}).get("BOOL"))
        )

    def opening(self, trigger: str) -> None:
        self._update(f"upload#{trigger}", "SET opening = :yes", {":yes": {"BOOL": True}})

    def opened(self, trigger: str, sync_id: str) -> str:
        self._update(
            f"start#{sync_id}",
            "SET uploadTrigger = if_not_exists(uploadTrigger, :trigger)",
            {":trigger": {"S": trigger}},
        )
        item = self._update(
            f"upload#{trigger}",
            "SET syncId = if_not_exists(syncId, :sync)",
            {":sync": {"S": sync_id}},
            ReturnValues="ALL_NEW",
        )
        return str(item["syncId"]["S"])

    def start(self, sync_id: str) -> StartRecord:
        return _start_record(self.get(f"start#{sync_id}"))

    def own(self, sync_id: str, file: StagedFile | None) -> None:
        expression = "SET owned = :yes"
        values: dict[str, Any] = {":yes": {"BOOL": True}}
        if file is not None:
            expression += ", #file = if_not_exists(#file, :file)"
            values[":file"] = {"S": json.dumps(file.to_json_dict())}
            self._update(f"start#{sync_id}", expression, values, ExpressionAttributeNames={"#file": "file"})
            return
        self._update(f"start#{sync_id}", expression, values)

    def begin_import(self, sync_id: str, file: StagedFile) -> StartRecord:
        old = self._update(
            f"start#{sync_id}",
            "SET attempts = if_not_exists(attempts, :zero) + :one, #file = :file",
            {":zero": {"N": "0"}, ":one": {"N": "1"}, ":file": {"S": json.dumps(file.to_json_dict())}},
            ExpressionAttributeNames={"#file": "file"},
            ReturnValues="ALL_OLD",
        )
        return _start_record(old)

    def imported(self, sync_id: str, import_id: str, detail: dict[str, Any]) -> None:
        self._update(
            f"start#{sync_id}",
            "SET importId = :import, importDetail = :detail",
            {":import": {"S": import_id}, ":detail": {"S": json.dumps(detail)}},
        )

    def not_imported(self, sync_id: str) -> None:
        self._update(f"start#{sync_id}", "SET attempts = attempts - :one", {":one": {"N": "1"}})


def _start_record(item: dict[str, Any]) -> StartRecord:
    return StartRecord(
        owned=bool(item.get("owned", {}).get("BOOL")),
        attempts=int(item["attempts"]["N"]) if "attempts" in item else 0,
        file=StagedFile.model_validate_json(item["file"]["S"]) if "file" in item else None,
        import_id=item["importId"]["S"] if "importId" in item else None,
        import_detail=json.loads(item["importDetail"]["S"]) if "importDetail" in item else None,
        upload_trigger=item["uploadTrigger"]["S"] if "uploadTrigger" in item else None,
    )
