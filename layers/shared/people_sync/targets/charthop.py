"""ChartHop as an import target (importDataCsv + getProcess) and as the progress reporter (updateProcess)."""

from __future__ import annotations

from typing import Any

from people_sync import api_assumptions as assumed
from people_sync.charthop_client import ChartHopClient, ProcessEventsTooLarge
from people_sync.errors import ChartHopRejected, ChartHopUnavailable
from people_sync.models import (
    DRY_RUN_DETAIL,
    ImportJob,
    ImportOptions,
    ImportState,
    ImportStatus,
    ProcessStatus,
    RowError,
    RowErrors,
    StagedFile,
)
from people_sync.targets.base import OpenBody


class ChartHopTarget:
    name = "charthop"
    display_name = "ChartHop"
    calls_back = False
    min_check_interval_seconds = 1

    def __init__(self, client: ChartHopClient, org_id: str, options: ImportOptions) -> None:
        self.client = client
        self.org_id = org_id
        self.options = options

    def start_import(
        self, staged: StagedFile, open_body: OpenBody, *, sync_id: str, callback_url: str | None = None
    ) -> ImportJob:
        process = self.client.import_csv(
            self.org_id, open_body, file_name=staged.name, options=self.options, parent_process_id=sync_id
        )
        return self._job(process.id)

    def _job(self, import_id: str) -> ImportJob:
        return ImportJob(import_id=import_id, detail={DRY_RUN_DETAIL: True} if self.options.validates_only else {})

    def abandon(self, job: ImportJob) -> None:
        """Nothing is held for an import here."""

    def find_started_import(self, staged: StagedFile, sync_id: str) -> ImportJob | None:
        """The import an interrupted start may have begun: ChartHop files it under the sync process."""
        for process in self.client.find_processes(self.org_id, parent_process_id=sync_id):
            return self._job(process.id)
        return None

    def import_status(self, job: ImportJob, open_body: OpenBody) -> tuple[ImportStatus, ImportJob]:
        process = self.client.get_process(self.org_id, job.import_id)
        results = _counts(process.results or {})
        status = process.status.upper()
        state: ImportState
        if status in assumed.CHARTHOP_FAILED_STATUSES:
            state = "failed"
        elif status in assumed.CHARTHOP_TERMINAL_STATUSES:
            state = "done"
        elif status == ProcessStatus.RUNNING:
            state = "running"
        else:
            state = "pending"
        percent = job.detail.get(assumed.CHARTHOP_PROGRESS_SCALE_DETAIL) == "percent"
        progress, percent_now = assumed.charthop_import_fraction(
            process.progress, percent=percent, finished=state in ("done", "failed")
        )
        if percent_now and not percent:  # remembered for this import: a later 1.0 is then 1 %
            job = job.model_copy(update={"detail": {**job.detail, assumed.CHARTHOP_PROGRESS_SCALE_DETAIL: "percent"}})
        return ImportStatus(state=state, progress=progress, message=process.message, results=results), job

    def row_errors(self, job: ImportJob, limit: int = assumed.CHARTHOP_MAX_ROW_ERRORS) -> RowErrors:
        """The rows a finished import skipped, from getProcessEvents: at most `limit` are listed (`truncated`
        says when there were more); an answer that cannot be read is described in `unreadable`, not raised."""
        try:
            events = self.client.get_process_events(
                self.org_id, job.import_id, max_bytes=assumed.CHARTHOP_EVENTS_MAX_BYTES
            )
        except ProcessEventsTooLarge as error:
            return RowErrors(unreadable=error.user_message)
        except (ChartHopUnavailable, ChartHopRejected) as error:
            return RowErrors(unreadable=error.user_message)
        found: list[RowError] = []
        truncated = False
        for event in events:
            for row, column, message in assumed.row_errors_of_event(event):
                if len(found) == limit:
                    truncated = True
                    break
                found.append(RowError(row=row, column=column, message=message))
            if truncated:
                break
        return RowErrors(errors=found, truncated=truncated)


class ChartHopProgressReporter:
    """Drives the sync process's progress bar in ChartHop's app UI."""

    def __init__(
        self, client: ChartHopClient, org_id: str, *, app_name: str, app_user_id: str, app_id: str | None = None
    ) -> None:
        self.client = client
        self.org_id = org_id
        self.app_name = app_name
        self.app_user_id = app_user_id
        self.app_id = app_id or None

    def start_sync(self, name: str, source: str, version_id: str | None) -> str:
        """A sync process in ChartHop, so a sync started by an upload shows there like a "Sync Now"."""
        process = self.client.create_process(
            self.org_id,
            label=f"{self.app_name}: {name}",
            process_type=assumed.CHARTHOP_SYNC_PROCESS_TYPE,
            run_user_id=self.app_user_id,
            app_id=self.app_id,
            # marked as ours: ChartHop's `process.create` delivery for it is an echo, not a "Sync Now" press
            options=assumed.own_process_options(self.app_name, "upload", source=source, versionId=version_id),
            message=f"Found {name} in the staging bucket",
        )
        return process.id

    def find_sync(self, source: str, version_id: str | None) -> str | None:
        """The sync process an interrupted attempt opened for this object version (it names it in its options)."""
        statuses = [ProcessStatus.PENDING.value, ProcessStatus.RUNNING.value]
        for process in self.client.find_processes(self.org_id, statuses=statuses):
            options = process.options or {}
            if not process.parent_process_id and (options.get("source"), options.get("versionId")) == (
                source,
                version_id,
            ):
                return process.id
        return None

    def is_closed(self, sync_id: str) -> bool:
        return self.client.get_process(self.org_id, sync_id).status.upper() in assumed.CHARTHOP_TERMINAL_STATUSES

    def report_progress(self, sync_id: str, progress: float, message: str) -> None:
        self.client.update_process(
            self.org_id, sync_id, status=ProcessStatus.RUNNING, progress=progress, message=message
        )

    def append_log(self, sync_id: str, entries: list[dict[str, Any]]) -> None:
        """Appends LogData entries to the sync process's log (one POST; the caller batches)."""
        self.client.append_process_log(self.org_id, sync_id, entries)

    def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None:
        self.client.update_process(
            self.org_id,
            sync_id,
            status=ProcessStatus.DONE if succeeded else ProcessStatus.ERROR,
            progress=1.0 if succeeded else None,
            message=message,
            results=results,
            summary=summary,
        )


def _counts(results: dict[str, Any]) -> dict[str, Any]:
    """The counters we report from an import's results (keys are an assumption, see api_assumptions)."""
    return {key: results[key] for key in assumed.CHARTHOP_RESULT_COUNT_KEYS if key in results}
