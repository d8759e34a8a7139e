"""Typed shapes shared by handlers, the state machine and the emulator."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """Serialises with camelCase keys, as ChartHop and the state machine data do."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


class ProcessStatus(StrEnum):
    """`status` enum of ChartHop's Process and UpdateProcess (found)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"


class Process(CamelModel):
    """The fields of a ChartHop Process this app reads (found: required id, orgId, label, type, status)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    id: str
    org_id: str
    label: str = ""
    type: str = ""
    status: str
    parent_process_id: str | None = None
    app_id: str | None = None
    message: str | None = None
    progress: float | None = None
    results: dict[str, Any] | None = None
    summary: str | None = None
    options: dict[str, Any] | None = None
    create_at: str | None = None


class ImportOptions(CamelModel):
    """Query options of importDataCsv (found); the six booleans are required by the spec."""

    skip_errors: bool = True
    upsert: bool = True
    create_groups: bool = False
    disable_sync_hire_date: bool = False
    disable_overwrite_person: bool = False
    import_dry_run: bool = False
    #: Optional in the spec: with importDryRun, import automatically when the dry run succeeds.
    import_after_dry_run: bool = False
    notify_user_ids: list[str] = Field(default_factory=list)
    notify_app_name: str | None = None
    import_source: str | None = None

    @field_validator("notify_user_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def to_query(self, parent_process_id: str | None) -> dict[str, str]:
        """Query string for importDataCsv: booleans as lowercase words, lists comma-joined."""
        query = {
            "skipErrors": _word(self.skip_errors),
            "upsert": _word(self.upsert),
            "createGroups": _word(self.create_groups),
            "disableSyncHireDate": _word(self.disable_sync_hire_date),
            "disableOverwritePerson": _word(self.disable_overwrite_person),
            "importDryRun": _word(self.import_dry_run),
        }
        if self.import_after_dry_run:
            query["importAfterDryRun"] = _word(self.import_after_dry_run)
        if self.notify_user_ids:
            query["notifyUserIds"] = ",".join(self.notify_user_ids)
        if self.notify_app_name:
            query["notifyAppName"] = self.notify_app_name
        if self.import_source:
            query["importSource"] = self.import_source
        if parent_process_id:
            query["parentProcessId"] = parent_process_id
        return query

    @property
    def validates_only(self) -> bool:
        """A dry run that writes nothing (importDryRun without importAfterDryRun)."""
        return self.import_dry_run and not self.import_after_dry_run


def _word(flag: bool) -> str:
    return "true" if flag else "false"


class ChartHopEvent(CamelModel):
    """A webhook delivery (Event schema, found); unknown fields are kept for logging."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    id: str | None = None
    org_id: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    app_name: str | None = None
    type: str
    subtype: str | None = None
    code: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    at: str | None = None


class StagedFile(CamelModel):
    """A CSV in the staging bucket; the S3 version pins exactly which bytes get imported."""

    bucket: str
    key: str
    version_id: str | None = None
    org_id: str
    size: int | None = None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class SyncNowRequest(CamelModel):
    """What the webhook hands to the import starter when a user presses "Sync Now"."""

    kind: Literal["sync-now"] = "sync-now"
    org_id: str
    sync_process_id: str
    app_id: str | None = None
    requested_by: str | None = None


class StartRequest(CamelModel):
    """The status loop's input: a sync to start. Its first task (the import starter) checks and uploads the
    file and starts the import, so from the moment a sync exists, its execution answers for closing it."""

    kind: Literal["upload", "sync-now"]
    target: str = "charthop"
    org_id: str
    sync_process_id: str
    #: The staged object version (uploads); "Sync Now" picks the newest staged file when it starts.
    file: StagedFile | None = None
    app_id: str | None = None
    #: When the file was staged (or "Sync Now" pressed), epoch seconds: the target's queue goes in this order.
    staged_at: float | None = None
    #: When its status loop was started, epoch seconds: the state machine's time limit counts from here, so the
    #: start stops waiting for its target's turn in time (sync_start.turn_deadline).
    loop_started_at: float | None = None


class PollState(CamelModel):
    """Where the status loop is: waits grow from `initial_seconds` past `max_seconds` (see progress.wait_for)."""

    attempt: int = 0
    #: How long the loop waits (for a callback, or until the next check) before it checks again.
    wait_seconds: int
    initial_seconds: int
    max_seconds: int
    timeout_seconds: int
    started_at: float
    #: Checks in a row that could not reach the target; the loop rides out short outages itself.
    unavailable_checks: int = 0
    #: When the check that produced this state ran (or the import started). The loop's task is entered
    #: again at once after a hand-over; an entry within half a wait of this time only waits.
    checked_at: float | None = None


class ImportJob(CamelModel):
    """A target's import as the status loop carries it from one check to the next."""

    #: The target's id of the import (ChartHop process id, Orgvue job ticket, ELMA365 import id).
    import_id: str
    #: Target-specific bookkeeping that must survive between checks; JSON-serialisable values only.
    #: The status loop adds `callback` (the query parameters of the target's completion callback) when
    #: a target that calls back (Orgvue) has called.
    detail: dict[str, Any] = Field(default_factory=dict)


#: An ImportJob.detail key: True when the import only validates (a dry run that writes nothing), so the loop
#: and the final message say "validated", never "imported".
DRY_RUN_DETAIL = "dryRun"


class SyncState(CamelModel):
    """The state machine's data, passed through every state of the status loop."""

    target: str = "charthop"
    org_id: str
    sync_process_id: str
    import_id: str
    #: The target's bookkeeping for this import (see ImportJob.detail).
    import_detail: dict[str, Any] = Field(default_factory=dict)
    file: StagedFile
    poll: PollState
    reported_progress: float = 0.0
    import_state: str = "pending"
    import_message: str | None = None
    results: dict[str, Any] | None = None
    finished: bool = False
    outcome: Literal["DONE", "ERROR", "TIMED_OUT"] | None = None

    @property
    def job(self) -> ImportJob:
        return ImportJob(import_id=self.import_id, detail=self.import_detail)


class LoopTaskEvent(CamelModel):
    """What the state machine's FollowImport task sends the status checker."""

    state: SyncState
    task_token: str


ImportState = Literal["pending", "running", "done", "failed"]


class ImportStatus(CamelModel):
    """A target's import status, normalised so the status loop is target-agnostic."""

    state: ImportState
    progress: float = 0.0
    message: str | None = None
    results: dict[str, Any] = Field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")


class RowError(CamelModel):
    """A row the target skipped, as the target described it (no cell values of ours are added)."""

    row: int | None = None
    column: str | None = None
    message: str


class RowErrors(CamelModel):
    """What could be read of a finished import's skipped rows."""

    #: The rows listed (at most the cap), in the target's order.
    errors: list[RowError] = Field(default_factory=list)
    #: More error rows existed than were listed.
    truncated: bool = False
    #: Why the details could not be read (None: they were).
    unreadable: str | None = None
