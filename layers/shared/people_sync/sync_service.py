"""The sync use cases: start an import for a staged file, check it, and close the sync.

Handlers call these with a SyncContext; nothing here knows about Lambda events.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, cast

from people_sync import api_assumptions as assumed
from people_sync import progress as bar
from people_sync import row_errors as rows
from people_sync import sync_history
from people_sync.charthop_client import ChartHopClient, time_budget
from people_sync.config import AppSettings
from people_sync.csv_checks import CheckedUpload, CsvProblem, CsvRejected, CsvRules
from people_sync.errors import SyncError, TargetUnavailable
from people_sync.loop_memory import InMemoryLoopMemory, LoopMemory, LoopRecord
from people_sync.models import DRY_RUN_DETAIL, ImportJob, PollState, RowErrors, StagedFile, StartRequest, SyncState
from people_sync.slots import ImportSlots, InMemorySlots
from people_sync.staging import open_staged_file, quarantine
from people_sync.start_journal import InMemoryStartJournal, StartJournal, StartRecord
from people_sync.target_queue import InMemoryTargetQueue, TargetQueue, queue_key
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
    #: What each sync's start has done so far (see start_journal.py); DynamoDB in Lambda.
    journal: StartJournal = field(default_factory=InMemoryStartJournal)
    #: One import at a time per target, in staging order (see target_queue.py); DynamoDB in Lambda.
    queue: TargetQueue = field(default_factory=InMemoryTargetQueue)
    #: The ChartHop org this context syncs for (its token, its settings); contexts are built per org.
    org_id: str = ""
    #: The staging folder this context's target reads (ChartHop: the org id; see routing.py).
    folder: str = ""
    #: Gives a target that calls back (Orgvue) the signed URL to call for a sync (see callbacks.py).
    callback_url_for: Callable[[str], str] | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    #: Where each sync's record and timeline go (sync_history.py); best effort. DynamoDB in Lambda; None: nowhere.
    history: sync_history.HistoryStore | None = field(default_factory=sync_history.InMemoryHistoryStore)

    def __post_init__(self) -> None:
        self.org_id = self.org_id or self.settings.org_id
        self.folder = self.folder or self.org_id


#: A Sync Now slot outlives the longest import by this much, then expires even if nobody frees it.
SLOT_GRACE_SECONDS = 600
#: The state machine's overall limit on a status loop (`TimeoutSeconds` in statemachine/sync_status.asl.json):
#: the time a sync may wait for its target's turn, then import and close.
LOOP_TIME_LIMIT_SECONDS = 21600
#: What a loop needs after its turn comes, besides the import itself: the start task (the import starter's 15
#: minutes at most), the check that notices the import's timeout (10% of it at most) and the close's retries.
START_AND_CLOSE_SECONDS = 1800
#: The import starter's Lambda timeout: a turn is held this long beyond the import's own timeout, since the
#: import's time starts only once the file is uploaded.
START_TASK_SECONDS = 900
#: How long one check (or the closing step) may hold a sync's lease: the status checker's Lambda timeout
#: (60 s) with room to spare. A holder that dies loses it after this long.
CHECK_LEASE_SECONDS = 90


def sync_now_slot(org_id: str) -> str:
    return f"sync-now#{org_id}"


def execution_name(sync_id: str) -> str:
    """One state machine run per sync process: Step Functions refuses a second run with this name."""
    return f"sync-{sync_id}"[:80]


def report_progress(ctx: SyncContext, sync_id: str, progress: float, message: str) -> bool:
    """Shows `progress` if it moves the bar forward and the sync is not closed (a claim in the loop memory
    decides, whoever else writes); a failed update is logged, not raised: the next one carries on."""
    if not ctx.loop_memory.claim_progress(sync_id, progress):
        return False
    try:
        ctx.reporter.report_progress(sync_id, progress, message)
    except SyncError as error:
        logger.warning("progress update failed; the next one carries on", extra={"reason": error.user_message})
        return False
    sync_history.progress_shown(ctx, sync_id, progress, message)
    return True


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
        dry_run = bool(state.import_detail.get(DRY_RUN_DETAIL))
        message = bar.status_message(status, state.file.name, ctx.target.display_name, dry_run=dry_run)
        if report_progress(ctx, state.sync_process_id, progress, message):
            update["reported_progress"] = progress
    update["poll"] = bar.next_poll(state.poll, ctx.clock()).model_copy(update={"unavailable_checks": 0})
    return state.model_copy(update=update)


def finish_sync(ctx: SyncContext, state: SyncState) -> dict[str, Any]:
    """Marks the sync process DONE or ERROR with a message a person understands and a results summary.

    A finished import's skipped rows are reported first (a report beside the file, entries in the sync
    process's log, their count in the message); a dry run says "Validated", never "Imported"."""
    results = {**(state.results or {}), "file": state.file.name, "importProcessId": state.import_id}
    found = state.results or {}
    dry_run = bool(state.import_detail.get(DRY_RUN_DETAIL))
    skipped = _skipped_rows(ctx, state, dry_run) if state.outcome == "DONE" else None
    shown = [key for key in bar.RESULT_COUNTS if key in found and not (skipped and key == bar.SKIPPED_ROWS_KEY)]
    counts = ", ".join(bar.count_words(key, found[key], dry_run=dry_run) for key in shown)
    elapsed = int(ctx.clock() - state.poll.started_at)
    sync_history.import_finished(ctx, state, ctx.clock() - state.poll.started_at)
    if dry_run:
        results["dryRun"] = True
    if skipped:
        results["rowErrors"] = {key: value for key, value in skipped.items() if value not in (None, False)}
    if state.outcome == "DONE":
        done = f"Validated {state.file.name} (dry run)" if dry_run else f"Imported {state.file.name}"
        message = done + (f": {counts}" if counts else "")
        if skipped:
            message += f"; {rows.describe(skipped, dry_run=dry_run)}"
        if dry_run:
            message += f". Nothing was written to {ctx.target.display_name}"
        close_sync(
            ctx,
            state.sync_process_id,
            succeeded=True,
            message=message,
            results=results,
            summary=f"{message} in {elapsed}s",
        )
        return {"status": "DONE", "message": message}
    if state.outcome == "TIMED_OUT":
        _abandon(ctx, state.job)
        message = (
            f"{ctx.target.display_name}'s import of {state.file.name} did not finish within "
            f"{state.poll.timeout_seconds // 60} minutes (import {state.import_id}); "
            f"check it in {ctx.target.display_name}"
        )
    else:
        reason = state.import_message or "no reason given"
        message = (
            f"{ctx.target.display_name}'s dry run refused {state.file.name}: {reason}"
            if dry_run
            else f"{ctx.target.display_name} could not import {state.file.name}: {reason}"
        )
        if ctx.loop_memory.load(state.sync_process_id).final is None:  # a retried close moves nothing again
            problem = CsvProblem("import-failed", message)
            moved = _quarantine(
                ctx,
                state.file.bucket,
                state.file.key,
                state.file.version_id,
                state.file.org_id,  # the file's folder (failed/orgvue/, failed/<org>/orgvue/)
                problem,
                state.sync_process_id,
            )
            message = f"{message}. {moved[0].upper()}{moved[1:]}"
    fail_sync(ctx, state.sync_process_id, message, results=results)
    return {"status": "ERROR", "message": message}


#: Seconds the close may spend on skipped rows (events, report, log) before it writes the final status anyway
#: (the finalizer's Lambda has 60).
ROW_ERRORS_BUDGET_SECONDS = 25.0


def _skipped_rows(ctx: SyncContext, state: SyncState, dry_run: bool) -> dict[str, Any] | None:
    """Reports a finished import's skipped rows once: reads them (the target's own bound), writes the report
    beside the file (a fixed key: a retry overwrites it), appends them to the sync process's log (resuming
    after what a killed attempt appended) and returns the summary the message is made of. A failure to read
    them closes the sync with the count from `results` and says the details could not be read.

    None when the target cannot list skipped rows or its results say there were none."""
    read = getattr(ctx.target, "row_errors", None)
    counted = (state.results or {}).get(bar.SKIPPED_ROWS_KEY)
    if read is None or (isinstance(counted, int) and counted <= 0):
        return None
    sync_id = state.sync_process_id
    memory = ctx.loop_memory.load(sync_id)
    if memory.final is not None or memory.row_errors is not None:  # an earlier attempt did this already
        return memory.row_errors
    with time_budget(ROW_ERRORS_BUDGET_SECONDS):
        found: RowErrors = read(state.job)
        if isinstance(counted, int):
            count = counted
        elif found.unreadable:
            return None  # neither a count nor details: nothing to say
        else:  # no count in the results: the rows listed (distinct row numbers; unnumbered ones each count)
            count = len({error.row for error in found.errors if error.row is not None}) + sum(
                1 for error in found.errors if error.row is None
            )
        if count <= 0:
            return None
        unreadable = found.unreadable or (None if found.errors else f"{ctx.target.display_name} listed none of them")
        summary: dict[str, Any] = {
            "skipped": count,
            "atLeast": not isinstance(counted, int) and found.truncated,
            "listed": len(found.errors),
            "truncated": found.truncated,
            "unreadable": unreadable,
            "report": None,
        }
        if found.errors:
            summary["report"] = _write_row_error_report(ctx, state, found)
            summary["reportFailed"] = summary["report"] is None
        _append_row_errors_to_log(ctx, state, found, summary, dry_run, memory.log_entries_appended)
    ctx.loop_memory.save_row_errors(sync_id, summary)
    return summary


def _write_row_error_report(ctx: SyncContext, state: SyncState, found: RowErrors) -> str | None:
    """reports/<folder>/<file>.errors.csv in the staging bucket; a failed write is logged, not raised."""
    key = rows.report_key(ctx.folder, state.file.name)
    try:
        ctx.s3.put_object(
            Bucket=state.file.bucket,
            Key=key,
            Body=rows.report_csv(found.errors),
            ContentType="text/csv",
            Metadata={"sync-process-id": state.sync_process_id, "import-process-id": state.import_id},
        )
    except Exception:  # the sync closes anyway; its log still lists the rows
        logger.exception("could not write the row-error report", extra={"key": key})
        return None
    return key


def _append_row_errors_to_log(
    ctx: SyncContext, state: SyncState, found: RowErrors, summary: dict[str, Any], dry_run: bool, appended: int
) -> None:
    """Bounded batches, each counted in the loop memory once ChartHop took it: a retried close appends only
    the rest (a batch is repeated only when a close died between its POST and the count; ChartHop's log has
    no idempotency key, and a repeated batch only repeats the same lines). A failure is logged, not raised."""
    append = getattr(ctx.reporter, "append_log", None)
    if append is None:
        return
    entries = rows.log_entries(
        found.errors,
        summary,
        file_name=state.file.name,
        dry_run=dry_run,
        at=rows.timestamp(ctx.clock()),
        max_rows=assumed.CHARTHOP_MAX_LOG_ROW_ERRORS,
    )
    done = appended
    for batch in rows.batches(entries[appended:], assumed.CHARTHOP_LOG_BATCH):
        try:
            append(state.sync_process_id, batch)
        except SyncError as error:
            logger.warning("could not append the skipped rows to the sync's log", extra={"reason": error.user_message})
            return
        done += len(batch)
        ctx.loop_memory.set_log_entries_appended(state.sync_process_id, done)


def fail_sync(ctx: SyncContext, sync_id: str, message: str, *, results: dict[str, Any] | None = None) -> None:
    logger.error("sync failed", extra={"sync_process_id": sync_id, "reason": message})
    close_sync(ctx, sync_id, succeeded=False, message=message, results=results or {}, summary=message)


def close_sync(
    ctx: SyncContext, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str
) -> None:
    """Writes the sync's final status once. The close takes the sync's check lease and marks it closed
    first (CheckInProgress while a check holds the lease: the caller is retried), so no progress is
    written after the final status, however late a check is. The first close's final is kept: a retried
    close (the write failed, or a watchdog comes late) writes exactly that again, never a different one."""
    decided: dict[str, Any] = {"succeeded": succeeded, "message": message, "results": results, "summary": summary}
    before = ctx.loop_memory.close(sync_id, ctx.clock(), CHECK_LEASE_SECONDS, decided)
    final = before.final or decided
    try:
        if before.final_written:
            logger.info("sync already closed", extra={"sync_process_id": sync_id})
            sync_history.sync_closed(ctx, sync_id, final)  # a repeat changes nothing; a lost first write is made
            return
        ctx.reporter.finish(
            sync_id,
            succeeded=bool(final["succeeded"]),
            message=str(final["message"]),
            results=dict(final["results"]),
            summary=str(final["summary"]),
        )
        ctx.loop_memory.mark_final_written(sync_id)
        sync_history.sync_closed(ctx, sync_id, final)
    finally:
        # Freed even when the final status could not be written (the caller is retried for that): a sync that
        # is closing imports nothing more, so it must not keep later syncs out.
        _free_sync_now_slot(ctx, sync_id)
        _leave_queue(ctx, sync_id)


def close_again(ctx: SyncContext, sync_id: str, final: Mapping[str, Any]) -> None:
    """Repeats a close with the final status it kept (the loop memory's `final`): writes it if it was never
    written and frees the Sync Now slot and the turn the sync may still hold."""
    close_sync(
        ctx,
        sync_id,
        succeeded=bool(final["succeeded"]),
        message=str(final["message"]),
        results=dict(final["results"]),
        summary=str(final["summary"]),
    )


#: Tries at freeing a closing sync's slot and turn (each a conditional delete, safe to repeat), RELEASE_PAUSE
#: seconds apart: nothing else retries them. A slot left behind anyway is taken over by the next press
#: (sync_start._take_sync_now_slot) and a turn expires; the watchdog frees both too.
RELEASE_TRIES = 3
#: Closed syncs still in a target's queue (their close could not leave it) that one wake or ask removes at most
#: (each a read and a write); more are removed by the next.
CLOSED_AHEAD_PASSED = 3
RELEASE_PAUSE_SECONDS = 0.2


def _free_sync_now_slot(ctx: SyncContext, sync_id: str) -> None:
    """Only the sync that holds the org's Sync Now slot frees it (release is owner-conditional)."""
    _release(ctx, "could not free the Sync Now slot", lambda: ctx.slots.release(sync_now_slot(ctx.org_id), sync_id))


def _release(ctx: SyncContext, failure: str, release: Callable[[], None]) -> None:
    for attempt in range(RELEASE_TRIES):
        try:
            release()
            return
        except Exception:  # closing the sync mattered more; what is left behind is taken over or expires
            if attempt + 1 == RELEASE_TRIES:
                logger.warning(failure, exc_info=True)
                return
            ctx.sleep(RELEASE_PAUSE_SECONDS)


def target_queue_key(ctx: SyncContext) -> str:
    return queue_key(ctx.target.name, ctx.settings, ctx.folder)


def max_queue_wait(settings: AppSettings) -> float:
    """How long a sync may wait for its target's turn: whatever its status loop's time limit leaves once the
    import (up to ImportTimeoutSeconds), its start and its close are counted (4 h 25 min by default)."""
    return max(0.0, LOOP_TIME_LIMIT_SECONDS - settings.import_timeout_seconds - START_AND_CLOSE_SECONDS)


def turn_hold_seconds(settings: AppSettings) -> float:
    """How long a turn is held at most (a holder that died loses it then): its start, its import, a grace."""
    return START_TASK_SECONDS + settings.import_timeout_seconds + SLOT_GRACE_SECONDS


def _leave_queue(ctx: SyncContext, sync_id: str) -> None:
    _release(ctx, "could not leave the target's queue", lambda: ctx.queue.leave(target_queue_key(ctx), sync_id))
    wake_next_in_line(ctx)


def wake_next_in_line(ctx: SyncContext) -> None:
    """Wakes the parked start of the sync whose turn it now is (if any), so the target is not left idle until
    that start's own wait runs out. Best effort: a wake that fails or finds the wait already over changes
    nothing, since the start asks again when its wait runs out."""
    key = target_queue_key(ctx)
    try:
        for _ in range(CLOSED_AHEAD_PASSED):
            sync_id = ctx.queue.next_in_line(key, ctx.clock())
            if sync_id is None or ctx.loop_memory.load(sync_id).closed_at is None:
                break
            # closed, but every try of its close to leave failed: it would be woken in vain, and the file behind
            # it not at all (it would ask again only when its own wait runs out, minutes later)
            logger.warning(
                "a closed sync was still next in the target's queue; removed", extra={"stale_entry": sync_id}
            )
            ctx.queue.leave(key, sync_id)
        else:
            return  # more closed syncs than one wake removes: the next ask removes the rest
        token = ctx.queue.parked_token(key, sync_id) if sync_id is not None else None
        if token is None:
            return
        wake(ctx, token)
    except Exception:  # the next start's own wait covers it
        logger.warning("could not wake the next file in the target's queue", exc_info=True)


def wake(ctx: SyncContext, task_token: str) -> None:
    """Ends a parked start's wait (WaitForTurn), so its loop asks for the turn at once."""
    errors = ctx.stepfunctions.exceptions
    try:
        ctx.stepfunctions.send_task_success(taskToken=task_token, output="{}")
    except (errors.TaskTimedOut, errors.TaskDoesNotExist, errors.InvalidToken):
        logger.info("the parked start was no longer waiting (woken already, or its wait ran out)")


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


def workflow_failed(ctx: SyncContext, state: SyncState, error: dict[str, Any]) -> dict[str, Any]:
    """Following the import broke (after Step Functions' retries): close the sync with what is known."""
    return loop_broke(ctx, state.sync_process_id, _error_cause(error), state=state) or {
        "status": "ALREADY_CLOSED",
        "message": "",
    }


def start_failed(ctx: SyncContext, request: StartRequest, error: dict[str, Any]) -> dict[str, Any]:
    """Starting the import broke (after Step Functions' retries, e.g. the import starter was killed)."""
    _own_if_claimed(ctx, request)
    return loop_broke(ctx, request.sync_process_id, _error_cause(error), file=request.file) or {
        "status": "ALREADY_CLOSED",
        "message": "",
    }


def _own_if_claimed(ctx: SyncContext, request: StartRequest | None) -> None:
    """A "Sync Now" whose checks never ran (ChartHop could not be read) is still closed when its delivery
    named this app's configured id: a process handed to the app must not stay open for ever."""
    if (
        request is not None
        and request.kind == "sync-now"
        and ctx.settings.app_id
        and request.app_id == ctx.settings.app_id
        and not ctx.journal.start(request.sync_process_id).owned
    ):
        ctx.journal.own(request.sync_process_id, None)


EXECUTION_END_REASONS = {
    "TIMED_OUT": "its status loop reached the state machine's time limit",
    "ABORTED": "its status loop was stopped by an operator",
    "FAILED": "its status loop failed",
}


def execution_ended(
    ctx: SyncContext, sync_id: str, status: str, file: StagedFile | None, request: StartRequest | None = None
) -> dict[str, Any] | None:
    """A status loop ended abnormally (EventBridge): close the sync unless the loop already did. Either way
    its slot and its target's turn are freed: a close killed after its final write never got to that."""
    if ctx.loop_memory.load(sync_id).final_written:
        _free_sync_now_slot(ctx, sync_id)
        _leave_queue(ctx, sync_id)
        return None
    _own_if_claimed(ctx, request)
    reason = EXECUTION_END_REASONS.get(status, f"its status loop ended as {status}")
    return loop_broke(ctx, sync_id, reason, file=file)


def loop_broke(
    ctx: SyncContext,
    sync_id: str,
    cause: str,
    *,
    state: SyncState | None = None,
    file: StagedFile | None = None,
) -> dict[str, Any] | None:
    """Closes a sync whose loop cannot go on, saying what is known: an import that finished is shown as
    finished (only showing it failed), one that was started may still run, one never started left the
    file staged. Only this app's syncs are touched (a "Sync Now" that did not pass the checks is not)."""
    start = ctx.journal.start(sync_id)
    if state is None and not start.owned:
        logger.warning(
            "the loop of a sync that is not this app's ended; left alone", extra={"sync_process_id": sync_id}
        )
        return None
    memory = ctx.loop_memory.load(sync_id)
    if memory.final_written:
        return None
    file = (state.file if state else None) or start.file or file
    name = file.name if file else "the staged file"
    sync_history.fault(ctx, sync_id, "loop", 0, f"The status loop cannot go on: {cause}")
    target = ctx.target.display_name
    job = _known_job(ctx, sync_id, state, start, memory, file)
    results: dict[str, Any] = {"file": name, "importProcessId": job.import_id if job else None}
    if job is not None and memory.outcome is not None and file is not None:
        finished = _finished_state(ctx, sync_id, file, job, memory.outcome, state)
        return finish_sync(ctx, finished)
    if job is not None:
        _abandon(ctx, job)
        message = (
            f"Could not follow {target}'s import of {name} (import {job.import_id}): {cause}. "
            f"The import may still be running or have finished in {target}; check it there."
        )
    elif start.attempts and file is not None:
        message = (
            f"The start of the import of {name} was interrupted ({cause}), and {target} cannot tell whether the "
            f"import began; check {target} before staging the file again. The file stays staged."
        )
    else:
        message = (
            f"Could not start the import of {name}: {cause}. Nothing was imported; the file stays staged: "
            "stage it again or press Sync Now to try again."
        )
    fail_sync(ctx, sync_id, message, results=results)
    return {"status": "ERROR", "message": message}


def _known_job(
    ctx: SyncContext,
    sync_id: str,
    state: SyncState | None,
    start: StartRecord,
    memory: LoopRecord,
    file: StagedFile | None,
) -> ImportJob | None:
    if memory.import_id:
        return ImportJob(import_id=memory.import_id, detail=memory.import_detail or {})
    if state is not None and state.import_id:
        return state.job
    if start.import_id:
        return ImportJob(import_id=start.import_id, detail=start.import_detail or {})
    if start.attempts and file is not None:
        return started_import(ctx, file, sync_id, default=None)
    return None


def started_import(
    ctx: SyncContext, staged: StagedFile, sync_id: str, *, default: ImportJob | None
) -> ImportJob | None:
    """The import an earlier, interrupted attempt may have started: the target's answer where it can look
    (ChartHop: by parent process), `default` where it cannot or the look-up fails."""
    find = getattr(ctx.target, "find_started_import", None)
    if find is None:
        return default
    try:
        found: ImportJob | None = find(staged, sync_id)
    except SyncError as error:
        logger.warning("could not look for an import already started", extra={"reason": error.user_message})
        return default
    return found


def loop_state(ctx: SyncContext, staged: StagedFile, sync_id: str, job: ImportJob) -> SyncState:
    """The status loop's state for an import just started (or found started) for `staged`."""
    settings = ctx.settings
    first_wait = max(settings.poll_initial_seconds, ctx.target.min_check_interval_seconds)
    return SyncState(
        target=ctx.target.name,
        org_id=ctx.org_id,
        sync_process_id=sync_id,
        import_id=job.import_id,
        import_detail=job.detail,
        file=staged,
        poll=PollState(
            wait_seconds=first_wait,
            initial_seconds=first_wait,
            max_seconds=settings.poll_max_seconds,
            timeout_seconds=settings.import_timeout_seconds,
            started_at=ctx.clock(),
            checked_at=ctx.clock(),
        ),
        reported_progress=bar.ACCEPTED_PROGRESS,
    )


def _finished_state(
    ctx: SyncContext,
    sync_id: str,
    file: StagedFile,
    job: ImportJob,
    outcome: dict[str, Any],
    state: SyncState | None,
) -> SyncState:
    return (state or loop_state(ctx, file, sync_id, job)).model_copy(
        update={
            "import_id": job.import_id,
            "import_detail": job.detail,
            "import_state": outcome.get("state", "done"),
            "import_message": outcome.get("message"),
            "results": outcome.get("results"),
            "finished": True,
            "outcome": "DONE" if outcome.get("state") == "done" else "ERROR",
        }
    )


def _abandon(ctx: SyncContext, job: ImportJob) -> None:
    try:
        ctx.target.abandon(job)
    except Exception:  # closing the sync matters more; the slot expires on its own
        logger.warning("could not free the target's hold on the import", exc_info=True)


def _error_cause(error: dict[str, Any]) -> str:
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
        text = parsed.get("errorMessage") or cause
    except (ValueError, AttributeError):
        text = cause
    return str(text or error.get("Error") or "unknown error")[:500].rstrip(". ")
