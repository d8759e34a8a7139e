"""The sync use cases: start an import for a staged file, check it, and close the sync.

Handlers call these with a SyncContext; nothing here knows about Lambda events.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, cast

from people_sync import api_assumptions as assumed
from people_sync import progress as bar
from people_sync.charthop_client import ChartHopClient, created_at
from people_sync.config import AppSettings
from people_sync.csv_checks import CheckedUpload, CsvProblem, CsvRejected, CsvRules
from people_sync.errors import ChartHopRejected, InvalidStagedFile, SyncError, TargetRejected, TargetUnavailable
from people_sync.loop_memory import InMemoryLoopMemory, LoopMemory
from people_sync.models import PollState, Process, ProcessStatus, StagedFile, SyncState
from people_sync.routing import staging_folders
from people_sync.slots import ImportSlots, InMemorySlots
from people_sync.staging import latest_staged_file, open_staged_file, quarantine, staged_file_from_s3_record
from people_sync.targets.base import ImportTarget, ProgressReporter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

logger = logging.getLogger(__name__)


@dataclass
class SyncContext:
    """Everything a use case talks to; handlers build one per container."""

    settings: AppSettings
    charthop: ChartHopClient
    target: ImportTarget
    reporter: ProgressReporter
    s3: S3Client
    stepfunctions: SFNClient
    csv_rules: CsvRules = field(default_factory=CsvRules)
    loop_memory: LoopMemory = field(default_factory=InMemoryLoopMemory)
    #: Per-key locks with expiry (the org's Sync Now slot); DynamoDB in Lambda.
    slots: ImportSlots = field(default_factory=InMemorySlots)
    #: The staging folder this context's target reads (ChartHop: the org id; see routing.py).
    folder: str = ""
    #: Gives a target that calls back (Orgvue) the signed URL to call for a sync (see callbacks.py).
    callback_url_for: Callable[[str], str] | None = None
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.folder = self.folder or self.settings.org_id


#: A Sync Now slot outlives the longest import by this much, then expires even if nobody frees it.
SLOT_GRACE_SECONDS = 600
NOT_STARTED = "this one was not started. Press Sync Now again when it has finished."


def sync_now_slot(org_id: str) -> str:
    return f"sync-now#{org_id}"


def execution_name(sync_id: str) -> str:
    """One state machine run per sync process: Step Functions refuses a second run with this name."""
    return f"sync-{sync_id}"[:80]


def sync_now(ctx: SyncContext, org_id: str, sync_id: str, *, app_id: str | None = None) -> SyncState | None:
    """Imports the org's most recently staged file under the sync process ChartHop made for "Sync Now".

    The process must exist in ChartHop, still be open and belong to this app (a replayed or forged
    delivery starts nothing); while another sync of the app runs, this one is refused, not queued.
    """
    if org_id != ctx.settings.org_id:
        logger.warning("Sync Now for an org this deployment does not sync; ignored", extra={"org_id": org_id})
        return None
    try:
        process = ctx.charthop.get_process(org_id, sync_id)
    except ChartHopRejected as error:
        logger.warning(
            "Sync Now for a process ChartHop does not show us; ignored",
            extra={"sync_process_id": sync_id, "reason": error.user_message},
        )
        return None
    if process.status.upper() in assumed.CHARTHOP_TERMINAL_STATUSES:
        logger.warning("Sync Now for a finished process (a replay); ignored", extra={"sync_process_id": sync_id})
        return None
    if app_id and process.app_id and process.app_id != app_id:
        logger.warning("Sync Now for another app's process; ignored", extra={"sync_process_id": sync_id})
        return None
    # Two presses in the same instant both find nothing RUNNING in ChartHop: the org's Sync Now slot
    # (a conditional write) lets only one through; it is freed when that sync is closed.
    if not ctx.slots.acquire(sync_now_slot(org_id), sync_id, ctx.settings.import_timeout_seconds + SLOT_GRACE_SECONDS):
        fail_sync(ctx, sync_id, f"Another sync is already running; {NOT_STARTED}")
        return None
    running = running_sync(ctx, org_id, exclude=sync_id, app_id=process.app_id or app_id)
    if running is not None:
        fail_sync(
            ctx,
            sync_id,
            f"Another sync is already running ({running.label}, started {running.create_at}); {NOT_STARTED}",
        )
        return None
    try:
        staged = latest_staged_file(ctx.s3, ctx.settings.staging_bucket, ctx.settings.staging_prefix, org_id)
    except SyncError as error:
        fail_sync(ctx, sync_id, error.user_message)
        return None
    return start_import(ctx, staged, sync_id)


def running_sync(ctx: SyncContext, org_id: str, *, exclude: str, app_id: str | None) -> Process | None:
    """Another of this app's sync processes that ChartHop shows RUNNING and that is not stale."""
    horizon = ctx.clock() - ctx.settings.import_timeout_seconds
    for process in ctx.charthop.find_processes(org_id, statuses=[ProcessStatus.RUNNING.value], app_id=app_id):
        if process.id == exclude or process.parent_process_id:
            continue  # ourselves, or an import (a child process), not a sync
        if created_at(process) >= horizon:
            return process
    return None


def object_staged(
    ctx: SyncContext, bucket: str, key: str, version_id: str | None, size: int | None
) -> SyncState | None:
    """An object landed under the staging prefix: import it, or say why not and move it aside."""
    try:
        staged = staged_file_from_s3_record(bucket, key, version_id, size, prefix=ctx.settings.staging_prefix)
        if staged.org_id != ctx.folder:
            places = " or ".join(staging_folders(ctx.settings))
            raise InvalidStagedFile(
                f"{staged.key} is staged in a folder no target of this deployment reads ({staged.org_id}/); "
                f"stage it under {places}."
            )
    except InvalidStagedFile as error:
        reject_object(ctx, bucket, key, version_id, error.user_message)
        return None
    if not ctx.settings.import_on_upload:
        logger.info("file staged; waiting for Sync Now", extra={"key": staged.key})
        return None
    return file_dropped(ctx, staged)


def file_dropped(ctx: SyncContext, staged: StagedFile) -> SyncState | None:
    """A file arrived without "Sync Now": open a sync for it, so it shows where syncs are shown."""
    sync_id = ctx.reporter.start_sync(staged.name, f"s3://{staged.bucket}/{staged.key}", staged.version_id)
    return start_import(ctx, staged, sync_id)


def reject_object(
    ctx: SyncContext, bucket: str, key: str, version_id: str | None, reason: str, *, code: str = "wrong-place"
) -> None:
    """An object that cannot go anywhere (wrong place, unconfigured target): moved to failed/_rejected/
    and reported, never dropped."""
    moved = _quarantine(ctx, bucket, key, version_id, "_rejected", CsvProblem(code, reason), None)
    sync_id = ctx.reporter.start_sync(key.rsplit("/", 1)[-1], f"s3://{bucket}/{key}", version_id)
    fail_sync(ctx, sync_id, f"{reason} Nothing was imported; {moved}")


def start_import(ctx: SyncContext, staged: StagedFile, sync_id: str) -> SyncState | None:
    """Streams the file to the target while checking it, then hands the wait to the state machine."""
    size = f" ({staged.size:,} bytes)" if staged.size is not None else ""
    ctx.reporter.report_progress(sync_id, bar.UPLOADING_PROGRESS, f"Checking and uploading {staged.name}{size}")
    try:
        callback_url = ctx.callback_url_for(sync_id) if ctx.target.calls_back and ctx.callback_url_for else None
        job = ctx.target.start_import(
            staged, lambda: checked_body(ctx, staged), sync_id=sync_id, callback_url=callback_url
        )
    except CsvRejected as rejected:
        refuse_file(ctx, staged, sync_id, rejected.problem)
        return None
    except TargetRejected as error:
        refuse_file(
            ctx,
            staged,
            sync_id,
            CsvProblem("rejected-by-target", f"{ctx.target.display_name} refused {staged.name}: {error.user_message}"),
        )
        return None
    except SyncError as error:
        fail_sync(
            ctx,
            sync_id,
            f"Could not start the import of {staged.name}: {error.user_message} "
            "The file stays staged; press Sync Now (ChartHop) or stage it again to try again.",
        )
        return None
    import_id = job.import_id
    logger.info("import started", extra={"sync_process_id": sync_id, "import_id": import_id, "key": staged.key})
    ctx.reporter.report_progress(
        sync_id,
        bar.ACCEPTED_PROGRESS,
        f"{ctx.target.display_name} accepted {staged.name}; import {import_id} is queued",
    )
    settings = ctx.settings
    state = SyncState(
        target=ctx.target.name,
        org_id=staged.org_id,
        sync_process_id=sync_id,
        import_id=import_id,
        import_detail=job.detail,
        file=staged,
        poll=PollState(
            wait_seconds=max(settings.poll_initial_seconds, ctx.target.min_check_interval_seconds),
            initial_seconds=max(settings.poll_initial_seconds, ctx.target.min_check_interval_seconds),
            max_seconds=settings.poll_max_seconds,
            timeout_seconds=settings.import_timeout_seconds,
            started_at=ctx.clock(),
            checked_at=ctx.clock(),
        ),
        reported_progress=bar.ACCEPTED_PROGRESS,
    )
    start_status_loop(ctx, state)
    return state


def checked_body(ctx: SyncContext, staged: StagedFile) -> tuple[IO[bytes], int]:
    """The exact staged version, streamed once: the pre-flight checks read the bytes the upload sends,
    and a file that fails them is cut off before its end reaches the target."""
    body, size = open_staged_file(ctx.s3, staged)
    try:
        checked = CheckedUpload(body, size, staged.name, ctx.csv_rules)
    except CsvRejected:
        body.close()
        raise
    return cast("IO[bytes]", checked), size


def refuse_file(ctx: SyncContext, staged: StagedFile, sync_id: str, problem: CsvProblem) -> None:
    """The file cannot be imported: move it to failed/ with a report and tell the user where it went."""
    moved = _quarantine(ctx, staged.bucket, staged.key, staged.version_id, staged.org_id, problem, sync_id)
    fail_sync(
        ctx,
        sync_id,
        f"{problem.message} Nothing was imported; {moved}",
        results={"file": staged.name, "problem": problem.code},
    )


def _quarantine(
    ctx: SyncContext,
    bucket: str,
    key: str,
    version_id: str | None,
    folder: str,
    problem: CsvProblem,
    sync_id: str | None,
) -> str:
    """Where the file went, in words for the user; a failed move is reported, not raised."""
    report = {"code": problem.code, "message": problem.message, "lines": problem.lines, "syncProcessId": sync_id}
    try:
        target = quarantine(ctx.s3, bucket=bucket, key=key, version_id=version_id, folder=folder, report=report)
    except Exception as error:
        logger.exception("could not move the file to failed/", extra={"key": key})
        return f"the file could not be moved to failed/ ({type(error).__name__}) and is still staged."
    return f"the file was moved to s3://{bucket}/{target} with a report beside it."


def start_status_loop(ctx: SyncContext, state: SyncState) -> None:
    """Starts the one status loop of this sync; a duplicate start is refused by the execution name."""
    try:
        ctx.stepfunctions.start_execution(
            stateMachineArn=ctx.settings.state_machine_arn,
            name=execution_name(state.sync_process_id),
            input=json.dumps(state.to_json_dict()),
        )
    except ctx.stepfunctions.exceptions.ExecutionAlreadyExists:
        logger.warning("status loop already running for this sync", extra={"sync_process_id": state.sync_process_id})
    except Exception as error:  # noqa: BLE001 - the import runs on in ChartHop: say so instead of going quiet
        fail_sync(
            ctx,
            state.sync_process_id,
            f"{state.file.name} was handed to ChartHop (import {state.import_id}), but its progress cannot be "
            f"followed here ({type(error).__name__}); check the import in ChartHop.",
        )


def check_import(ctx: SyncContext, state: SyncState) -> SyncState:
    """One turn of the status loop: read the import, move the progress bar, decide whether to wait again.

    A target that cannot be reached is waited out for `max_unavailable_checks` turns in a row (the
    loop's growing waits are the backoff); only a longer outage fails the turn.
    """
    try:
        status, job = ctx.target.import_status(state.job, lambda: checked_body(ctx, state.file))
    except TargetUnavailable as error:
        unavailable = state.poll.unavailable_checks + 1
        if unavailable > ctx.settings.max_unavailable_checks:
            raise
        logger.warning(
            "import status unavailable; waiting it out",
            extra={"unavailable_checks": unavailable, "reason": error.user_message},
        )
        poll = bar.next_poll(state.poll, ctx.clock()).model_copy(update={"unavailable_checks": unavailable})
        return state.model_copy(update={"poll": poll})
    progress = bar.sync_progress(status)
    update: dict[str, Any] = {
        "import_id": job.import_id,
        "import_detail": job.detail,
        "import_state": status.state,
        "import_message": status.message,
        "results": status.results or state.results,
    }
    if status.finished:
        update.update(finished=True, outcome="DONE" if status.state == "done" else "ERROR")
        return state.model_copy(update=update)
    if ctx.clock() - state.poll.started_at >= state.poll.timeout_seconds:
        update.update(finished=True, outcome="TIMED_OUT")
        return state.model_copy(update=update)
    if bar.worth_reporting(progress, state.reported_progress):
        try:
            ctx.reporter.report_progress(
                state.sync_process_id, progress, bar.status_message(status, state.file.name, ctx.target.display_name)
            )
            update["reported_progress"] = progress
        except TargetUnavailable:
            logger.warning("progress update failed; will report it on the next turn")
    update["poll"] = bar.next_poll(state.poll, ctx.clock()).model_copy(update={"unavailable_checks": 0})
    return state.model_copy(update=update)


def finish_sync(ctx: SyncContext, state: SyncState) -> dict[str, Any]:
    """Marks the sync process DONE or ERROR with a message a person understands and a results summary."""
    results = {**(state.results or {}), "file": state.file.name, "importProcessId": state.import_id}
    found = state.results or {}
    counts = ", ".join(f"{found[key]} {key}" for key in bar.RESULT_COUNTS if key in found)
    elapsed = int(ctx.clock() - state.poll.started_at)
    if state.outcome == "DONE":
        message = f"Imported {state.file.name}" + (f": {counts}" if counts else "")
        ctx.reporter.finish(
            state.sync_process_id, succeeded=True, message=message, results=results, summary=f"{message} in {elapsed}s"
        )
        _free_sync_now_slot(ctx, state.sync_process_id)
        return {"status": "DONE", "message": message}
    if state.outcome == "TIMED_OUT":
        _abandon(ctx, state)
        message = (
            f"{ctx.target.display_name}'s import of {state.file.name} did not finish within "
            f"{state.poll.timeout_seconds // 60} minutes (import {state.import_id}); "
            f"check it in {ctx.target.display_name}"
        )
    else:
        reason = state.import_message or "no reason given"
        message = f"{ctx.target.display_name} could not import {state.file.name}: {reason}"
        problem = CsvProblem("import-failed", message)
        moved = _quarantine(
            ctx, state.file.bucket, state.file.key, state.file.version_id, state.org_id, problem, state.sync_process_id
        )
        message = f"{message}. {moved[0].upper()}{moved[1:]}"
    fail_sync(ctx, state.sync_process_id, message, results=results)
    return {"status": "ERROR", "message": message}


def fail_sync(ctx: SyncContext, sync_id: str, message: str, *, results: dict[str, Any] | None = None) -> None:
    logger.error("sync failed", extra={"sync_process_id": sync_id, "reason": message})
    ctx.reporter.finish(sync_id, succeeded=False, message=message, results=results or {}, summary=message)
    _free_sync_now_slot(ctx, sync_id)


def _free_sync_now_slot(ctx: SyncContext, sync_id: str) -> None:
    """Only the sync that holds the org's Sync Now slot frees it (release is owner-conditional)."""
    try:
        ctx.slots.release(sync_now_slot(ctx.settings.org_id), sync_id)
    except Exception:  # the slot expires on its own; closing the sync mattered more
        logger.warning("could not free the Sync Now slot", exc_info=True)


def workflow_failed(ctx: SyncContext, state: SyncState, error: dict[str, Any]) -> dict[str, Any]:
    """The status loop itself broke (after Step Functions' retries): tell the user instead of going quiet."""
    _abandon(ctx, state)
    cause = _error_cause(error)
    message = f"The sync of {state.file.name} stopped: {cause}"
    fail_sync(
        ctx, state.sync_process_id, message, results={"file": state.file.name, "importProcessId": state.import_id}
    )
    return {"status": "ERROR", "message": message}


EXECUTION_END_REASONS = {
    "TIMED_OUT": "its status loop reached the state machine's time limit",
    "ABORTED": "its status loop was stopped by an operator",
    "FAILED": "its status loop failed",
}


def execution_ended(ctx: SyncContext, state: SyncState, status: str) -> dict[str, Any] | None:
    """A status loop ended abnormally (EventBridge): close the sync unless the loop already did."""
    if ctx.reporter.is_closed(state.sync_process_id):
        return None
    reason = EXECUTION_END_REASONS.get(status, f"its status loop ended as {status}")
    return workflow_failed(ctx, state, {"Error": status, "Cause": f"{reason}; check the import in ChartHop"})


def _abandon(ctx: SyncContext, state: SyncState) -> None:
    try:
        ctx.target.abandon(state.job)
    except Exception:  # closing the sync matters more; the slot expires on its own
        logger.warning("could not free the target's hold on the import", exc_info=True)


def _error_cause(error: dict[str, Any]) -> str:
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
        text = parsed.get("errorMessage") or cause
    except (ValueError, AttributeError):
        text = cause
    return str(text or error.get("Error") or "unknown error")[:500]
