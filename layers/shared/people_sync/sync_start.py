"""Starting a sync: a staged file or a "Sync Now" becomes a status loop, and the loop's first task imports.

A trigger (S3 event, "Sync Now") does as little as it can, each step idempotent: it opens the sync
(uploads: a sync process in ChartHop, recorded in the start journal so a retry never opens a second)
and starts the sync's status loop under a deterministic execution name. Everything that can take long
or fail half-way (the "Sync Now" checks, the pre-flight checks while the file streams to the target,
the import call) runs in the loop's first task (`begin_sync`). So once a sync exists, its execution
answers for closing it: a task that dies is retried or caught by the state machine, and an execution
that ends abnormally is closed by the watchdog. The start journal lets a retried task continue where
the dead one stopped instead of importing the file again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from people_sync import api_assumptions as assumed
from people_sync import org_tokens, routing, sync_history, sync_metrics
from people_sync import progress as bar
from people_sync.charthop_client import created_at
from people_sync.csv_checks import CsvCheckFailed, CsvProblem, CsvRejected
from people_sync.errors import (
    ChartHopRejected,
    ChartHopTokenRefused,
    ChartHopUnavailable,
    ImportMayHaveStarted,
    InvalidStagedFile,
    OrgNotServed,
    SyncError,
    TargetRejected,
)
from people_sync.models import (
    DRY_RUN_DETAIL,
    ImportJob,
    Process,
    ProcessStatus,
    StagedFile,
    StartRequest,
    SyncState,
)
from people_sync.org_registry import ORG_ID_PATTERN
from people_sync.routing import TARGET_FOLDERS, folders_of_target, staging_folders
from people_sync.staging import latest_staged_file, quarantine, staged_file_from_s3_record
from people_sync.start_journal import upload_trigger
from people_sync.sync_service import (
    CLOSED_AHEAD_PASSED,
    SLOT_GRACE_SECONDS,
    SyncContext,
    _quarantine,
    checked_body,
    close_again,
    close_sync,
    execution_name,
    fail_sync,
    loop_state,
    max_queue_wait,
    report_progress,
    started_import,
    sync_now_slot,
    target_queue_key,
    turn_hold_seconds,
    wake,
    wake_next_in_line,
)
from people_sync.target_queue import MAX_WAITING, Turn

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

NOT_STARTED = "this one was not started. Press Sync Now again when it has finished."
ECHO_IGNORED = "echo of our own process; ignored"
#: The longest the next file in line waits before it asks for its target's turn again (it is woken sooner
#: when the turn is freed).
MAX_QUEUE_WAIT_SECONDS = 60
#: The longest a file with others ahead of it waits before it asks again (to show it is still waiting, and to
#: give up in time): it is woken when its turn comes, so asking more often would only cost.
MAX_PARK_SECONDS = 300
#: A start whose file settles for at most this long more waits it out in the Lambda: seconds of a Lambda cost
#: less than parking (two more invocations and three state transitions); a longer settle is waited out in
#: WaitForTurn (no Lambda runs meanwhile).
SETTLE_SLEEP_SECONDS = 30.0
#: An upload's trigger queues its file right after it opened the sync; if it dies in between, Lambda retries it
#: within about 3 minutes. An upload sync opened longer ago than this and never queued nor closed is stranded (its
#: trigger waits in the failed-events queue): a "Sync Now" of its file imports it rather than wait for it.
UPLOAD_QUEUED_WITHIN_SECONDS = 300.0


# --- triggers ------------------------------------------------------------------------------------


def object_staged(
    ctx: SyncContext,
    bucket: str,
    key: str,
    version_id: str | None,
    size: int | None,
    staged_at: float | None = None,
) -> str | None:
    """An object landed under the staging prefix: open its sync and start its loop (which imports it),
    or say why not and move it aside. Returns the sync id."""
    if key.endswith("/"):
        logger.info("a folder marker, not a file; nothing to import", extra={"key": key})
        return None
    try:
        staged = staged_file_from_s3_record(
            bucket, key, version_id, size, prefix=ctx.settings.staging_prefix, target_folders=TARGET_FOLDERS.values()
        )
        if staged.org_id not in {ctx.folder, *folders_of_target(ctx.target.name, ctx.settings, ctx.org_id)}:
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
    return file_dropped(ctx, staged, staged_at)


def file_dropped(ctx: SyncContext, staged: StagedFile, staged_at: float | None = None) -> str:
    """A file arrived without "Sync Now": open a sync for it (so it shows where syncs are shown) and
    start its loop. A retry finds the sync the first attempt opened."""
    sync_id = open_sync(ctx, staged)
    ctx.journal.own(sync_id, staged)
    at = staged_at if staged_at is not None else ctx.clock()
    begun = ctx.journal.start(sync_id).attempts > 0  # its loop got its turn: it waits in no queue any more
    if not begun:
        ctx.queue.join(target_queue_key(ctx), sync_id, at=at, name=staged.name, now=ctx.clock())
    if ctx.loop_memory.load(sync_id).closed_at is not None:
        # A retried trigger of a sync already closed (before or since the join): nothing may wait for it. Its
        # entry (this attempt's, or one an attempt killed here left) is removed; removing is owner-conditional
        # and safe to repeat, and a close that came after the join removed it already. A failed removal is
        # raised: the trigger is retried and removes it then.
        logger.info("trigger of a sync already closed; not queued", extra={"sync_process_id": sync_id})
        ctx.queue.leave(target_queue_key(ctx), sync_id)
        wake_next_in_line(ctx)
        return sync_id
    if begun:
        logger.info("trigger of a sync whose import began; its loop runs", extra={"sync_process_id": sync_id})
        return sync_id
    request = StartRequest(
        kind="upload",
        target=ctx.target.name,
        org_id=ctx.org_id,  # the org whose settings and tokens the sync runs with (the file's folder may differ)
        sync_process_id=sync_id,
        file=staged,
        staged_at=at,
    )
    start_status_loop(ctx, request)
    return sync_id


def open_sync(ctx: SyncContext, staged: StagedFile) -> str:
    """The sync of a staged object version, opened once. An attempt that died after opening one but
    before writing it down left `opening` behind: the process is then looked up instead of opened again."""
    trigger = upload_trigger(staged.bucket, staged.key, staged.version_id)
    record = ctx.journal.upload(trigger)
    if record.sync_id:
        return record.sync_id
    source = f"s3://{staged.bucket}/{staged.key}"
    find_sync = getattr(ctx.reporter, "find_sync", None)  # reporters whose ids are not deterministic
    sync_id = find_sync(source, staged.version_id) if record.opening and find_sync else None
    if sync_id is None:
        ctx.journal.opening(trigger)
        created = ctx.reporter.start_sync(staged.name, source, staged.version_id)
        sync_id = ctx.journal.opened(trigger, created)
        if sync_id != created:  # a duplicate delivery opened one at the same time: ours must not stay open
            close_sync(
                ctx,
                created,
                succeeded=True,
                message=f"{staged.name} is synced under another sync process ({sync_id}); nothing was imported here.",
                results={"file": staged.name, "duplicateOf": sync_id},
                summary=f"Duplicate delivery of {staged.name}",
            )
        return sync_id
    return ctx.journal.opened(trigger, sync_id)


def sync_now_requested(ctx: SyncContext, org_id: str, sync_id: str, *, app_id: str | None = None) -> str | None:
    """ "Sync Now" was pressed: start the loop of that sync process; its first task checks the process.

    A `process.create` for a process this app created itself (an upload's sync, an import under a sync) is an
    echo, not a press: nothing starts (the upload's own loop runs under the same execution name)."""
    if org_id != ctx.org_id:
        logger.warning("Sync Now for an org this deployment does not sync; ignored", extra={"org_id": org_id})
        return None
    echo = echo_of_own_process(ctx, org_id, sync_id)
    if echo is not None:
        logger.info(ECHO_IGNORED, extra={"sync_process_id": sync_id, "reason": echo})
        return None
    request = StartRequest(
        kind="sync-now", org_id=org_id, sync_process_id=sync_id, app_id=app_id, staged_at=ctx.clock()
    )
    start_status_loop(ctx, request)
    return sync_id


def start_status_loop(ctx: SyncContext, request: StartRequest) -> None:
    """Starts the one status loop of this sync; a repeated start is refused by the execution name. Any
    other failure is raised: the trigger is retried (and ends in the failed-events queue after that)."""
    request = request.model_copy(update={"loop_started_at": ctx.clock()})  # the loop's time limit counts from here
    sync_history.sync_opened(ctx, request)
    try:
        ctx.stepfunctions.start_execution(
            stateMachineArn=ctx.settings.state_machine_arn,
            name=execution_name(request.sync_process_id),
            input=json.dumps(request.to_json_dict()),
        )
    except ctx.stepfunctions.exceptions.ExecutionAlreadyExists:
        logger.info("status loop already started for this sync", extra={"sync_process_id": request.sync_process_id})


def object_of_unserved_org(
    s3: S3Client,
    refused: OrgNotServed,
    bucket: str,
    key: str,
    version_id: str | None,
    size: int | None = None,
) -> str | None:
    """An object staged in the folder of an org this deployment does not sync for now. Nothing starts, and
    nothing about it is sent to any org's ChartHop or written to another org's records: another customer must
    never see its file names. Returns where it was moved, None when it stays staged.

    A paused org's file stays staged (resumed, a Sync Now imports it), and so does an uninstalled org's (kept,
    as `orgs remove` promises). A folder of an org the registry does not know, or of a registered org that
    cannot be served (no token yet, refused settings), has it moved to failed/<that folder>/ with a report
    (failed/_rejected/ when the folder cannot be an org id). Either way an ERROR or WARNING line names the folder,
    the org state and the reason, and `UnservedOrgFiles` counts it (org dimension "other" for an unknown org)."""
    if key.endswith("/"):
        logger.info("a folder marker, not a file; nothing to import", extra={"key": key})
        return None
    folder = refused.org_id
    where = {
        "key": key,
        "folder": folder,
        "org_id": folder,
        "org_reason": refused.reason,
        "reason": refused.user_message,
    }
    sync_metrics.emit_for(routing.CHARTHOP, folder if refused.reason != "unknown" else "other", "UnservedOrgFiles", 1)
    if refused.reason in ("paused", "uninstalled"):
        logger.warning("file staged for an org that is not synced now; it stays staged", extra=where)
        return None
    report = {"code": "org-not-served", "message": refused.user_message, "orgReason": refused.reason, "lines": []}
    place = folder if ORG_ID_PATTERN.match(folder) else "_rejected"
    moved = quarantine(s3, bucket=bucket, key=key, version_id=version_id, folder=place, report=report)
    logger.error(
        "file staged for an org that is not synced; moved aside and shown in no org's ChartHop",
        extra={**where, "moved_to": moved},
    )
    return moved


def reject_object(
    ctx: SyncContext, bucket: str, key: str, version_id: str | None, reason: str, *, code: str = "wrong-place"
) -> None:
    """An object that cannot go anywhere (wrong place, unconfigured target): moved to failed/_rejected/
    and reported, never dropped."""
    moved = _quarantine(ctx, bucket, key, version_id, "_rejected", CsvProblem(code, reason), None)
    sync_id = ctx.reporter.start_sync(key.rsplit("/", 1)[-1], f"s3://{bucket}/{key}", version_id)
    fail_sync(ctx, sync_id, f"{reason} Nothing was imported; {moved}")


# --- the loop's first task -----------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    """The target is busy with an earlier-staged file (or the file was staged only just now): the start
    waits `wait_seconds` and asks again."""

    ahead: str
    wait_seconds: int
    #: Waiting out the settle time, not for a file ahead: its park does not wake it at once.
    settling: bool = False


def begin_sync(ctx: SyncContext, request: StartRequest) -> SyncState | Queued | None:
    """The status loop's first task: checks a "Sync Now", waits for the target's turn, then imports the
    file. None: nothing to follow (the sync was refused and closed, or it is not this app's)."""
    sync_id = request.sync_process_id
    if close_again_if_closed(ctx, sync_id):
        return None
    if request.kind == "sync-now":
        staged = sync_now_file(ctx, request.org_id, sync_id, app_id=request.app_id)
    else:
        staged = request.file
    if staged is None:
        return None
    deadline = turn_deadline(ctx, request)
    turn = _ask_for_turn(ctx, request, staged, deadline)
    if turn.settling:  # a file staged just before it may still be on its way: it goes first if it comes
        settled_at = ctx.clock() + turn.settling
        # shown RUNNING meanwhile, so a "Sync Now" pressed now is refused, not a second import of this file
        report_progress(ctx, sync_id, bar.SETTLING_PROGRESS, _settling_message(ctx, staged))
        left = settled_at - ctx.clock()  # a slow update above is part of the wait, not added to it
        if left > SETTLE_SLEEP_SECONDS:  # waited out parked (WaitForTurn does not wake it before)
            return Queued("", max(1, math.ceil(left)), settling=True)
        ctx.sleep(max(0.0, left))
        turn = _ask_for_turn(ctx, request, staged, deadline)
        if turn.settling:
            return Queued("", max(1, math.ceil(turn.settling)), settling=True)
    if request.kind == "sync-now" and not ctx.journal.start(sync_id).attempts:
        refusal = _press_refused(ctx, request, staged, turn)
        if refusal is not None:
            succeeded, message, results = refusal
            close_sync(ctx, sync_id, succeeded=succeeded, message=message, results=results, summary=message)
            return None
    if turn.full or turn.expired:
        fail_sync(ctx, sync_id, _not_queued(ctx, staged, turn, deadline), results={"file": staged.name})
        return None
    if not turn.granted:
        report_progress(ctx, sync_id, bar.QUEUED_PROGRESS, _queued_message(ctx, staged, turn, deadline))
        return Queued(turn.ahead, _queue_wait(ctx, request, turn, deadline))
    return start_import(ctx, staged, sync_id)


def _ask_for_turn(ctx: SyncContext, request: StartRequest, staged: StagedFile, deadline: float | None) -> Turn:
    """The target's turn, past syncs that are closed but still hold it or wait ahead (their close could not
    free what they held: every try failed, or it died first). Such a sync imports nothing more and never takes
    the turn, yet until its turn expires (ImportTimeoutSeconds and more) or its entry goes stale (15 min) the
    files behind it would wait and every "Sync Now" be refused: the file that meets one removes it, as its close
    would have (owner-conditional, safe to repeat), at most CLOSED_AHEAD_PASSED per ask. Only the files near the
    front look (a read of the loop memory each): further back, an ask stays one read of the queue."""
    turn = _take_turn(ctx, request, staged, deadline)
    for _ in range(CLOSED_AHEAD_PASSED):
        if turn.granted or turn.ahead_count > CLOSED_AHEAD_PASSED:
            break
        if turn.holder_id and turn.first:
            blocker = turn.holder_id  # nobody else waits ahead: the holder is all that keeps it from its turn
        elif turn.ahead_id and (not turn.holder_id or _is_closed(ctx, turn.holder_id)):
            blocker = turn.ahead_id
        else:
            break
        if not _remove_if_closed(ctx, blocker):
            break
        turn = _take_turn(ctx, request, staged, deadline)
    return turn


def _is_closed(ctx: SyncContext, sync_id: str) -> bool:
    """Best effort: a loop memory that cannot be read now counts as open (the next ask looks again)."""
    try:
        return ctx.loop_memory.load(sync_id).closed_at is not None
    except Exception:  # anything the store raises: the ask goes on with the queue as it is
        logger.warning("could not read whether a sync ahead is closed", exc_info=True, extra={"stale_entry": sync_id})
        return False


def _remove_if_closed(ctx: SyncContext, sync_id: str) -> bool:
    """True: the sync was closed, and its hold on the turn or its waiting entry is gone (the next in line is woken).
    Best effort: a read or write that fails leaves it to the next ask (the failing table is the queue's own)."""
    if not _is_closed(ctx, sync_id):
        return False
    logger.warning(
        "a closed sync still held the target's turn or waited for it (freeing it had failed); removed",
        extra={"stale_entry": sync_id},
    )
    try:
        ctx.queue.leave(target_queue_key(ctx), sync_id)
    except Exception:  # as above
        logger.warning("could not remove a closed sync from the target's queue", exc_info=True)
        return False
    wake_next_in_line(ctx)
    return True


def _press_refused(
    ctx: SyncContext, request: StartRequest, staged: StagedFile, turn: Turn
) -> tuple[bool, str, dict[str, Any]] | None:
    """Why a "Sync Now" imports nothing: (succeeded, message, results), or None when it goes on.

    A press imports the newest staged file, and an upload of that very file may be just ahead of it: its sync
    still PENDING in ChartHop (its start has shown nothing yet, or showing it failed), its trigger joined while
    the press settled, or it finished while a killed attempt of this start was retried. So a press never waits
    in the queue: behind another file it is refused, as when ChartHop shows a sync RUNNING. And given the turn,
    a press whose file version has an upload sync that was opened moments ago and is not closed (its trigger has
    not queued it yet), or that closed having imported it after the press, imports nothing (a press after that
    sync closed is a deliberate import of the file once more; one whose upload sync was opened long ago and never
    queued, its trigger failed for good so far, closes that sync and imports the file). When each was created is
    ChartHop's createAt.
    A press whose import began (an earlier attempt's) is never asked: it must not be closed while that runs."""
    name = staged.name
    if not turn.granted:
        ahead = turn.ahead or "an earlier file"
        doing = "is being imported" if turn.holder_id else "is queued to be imported"
        return False, f"Another sync is already running ({ahead} {doing}); {NOT_STARTED}", {"file": name}
    upload = ctx.journal.upload(upload_trigger(staged.bucket, staged.key, staged.version_id)).sync_id
    if upload is None or upload == request.sync_process_id:
        return None
    memory = ctx.loop_memory.load(upload)
    if memory.closed_at is None:
        opened = _created_at(ctx, upload)
        if opened is None:  # ChartHop does not show it (any more): nothing of it can run or be closed
            return None
        if ctx.clock() - opened < UPLOAD_QUEUED_WITHIN_SECONDS:
            message = f"Another sync is already running ({name} is being synced by its upload); {NOT_STARTED}"
            return False, message, {"file": name, "syncedBy": upload}
        # Stranded: the press imports the file. The upload's sync is closed first, so a redrive of its trigger that
        # comes later finds it closed and queues nothing (file_dropped), and ChartHop does not show it PENDING for ever.
        logger.warning(
            "the upload's sync of this file was opened long ago and never queued (its trigger failed); closed, and the "
            "press imports the file",
            extra={"sync_process_id": request.sync_process_id, "stranded_upload": upload},
        )
        minutes = int(UPLOAD_QUEUED_WITHIN_SECONDS // 60)
        stranded = (
            f"{name} was not imported by this sync: its upload's start failed and had not recovered after {minutes} "
            f"minutes. Sync Now ({request.sync_process_id}) imports it instead."
        )
        close_sync(
            ctx,
            upload,
            succeeded=False,
            message=stranded,
            results={"file": name, "syncedBy": request.sync_process_id},
            summary=stranded,
        )
        return None
    final = memory.final or {}
    results = dict(final.get("results") or {})
    if results.get("syncedBy") == request.sync_process_id:
        # This press closed it as stranded (an earlier attempt): nothing else will repeat that close, so a write to
        # ChartHop that attempt did not get to is made here (a repeat writes the same final again, at most).
        if not memory.final_written:
            close_again(ctx, upload, final)
        return None
    if not final.get("succeeded") or results.get(DRY_RUN_DETAIL):
        return None  # the upload did not import it (failed, or only validated it)
    pressed = _created_at(ctx, request.sync_process_id)
    if pressed is None or memory.closed_at <= pressed:
        return None  # over before the press: a deliberate import of the file once more
    message = (
        f"{name} was imported by its upload's sync ({upload}) after Sync Now was pressed; it was not imported "
        "again. Press Sync Now again to import it once more."
    )
    return True, message, {"file": name, "importedBy": upload}


def _created_at(ctx: SyncContext, sync_id: str) -> float | None:
    """When ChartHop created the sync process (None: ChartHop does not show it to us)."""
    try:
        return created_at(ctx.charthop.get_process(ctx.org_id, sync_id))
    except ChartHopRejected:
        return None


def close_again_if_closed(ctx: SyncContext, sync_id: str) -> bool:
    """A sync already closed imports nothing and holds nothing. An earlier attempt of its start (or its loop)
    closed it, and then writing the final status failed or the task died before freeing its Sync Now slot and
    its turn (the state machine retries the start; a "Sync Now" whose process shows the final is a replay): the
    close is repeated with the final it kept, which writes that final if it was not written and frees the slot
    and the turn (owner-conditional, safe to repeat). True: the sync was closed already."""
    memory = ctx.loop_memory.load(sync_id)
    if memory.closed_at is None:
        return False
    final = memory.final or {
        "succeeded": False,
        "message": "The sync was closed.",
        "results": {},
        "summary": "The sync was closed.",
    }
    logger.warning("start of a sync already closed; its close is repeated", extra={"sync_process_id": sync_id})
    close_again(ctx, sync_id, final)
    return True


def turn_deadline(ctx: SyncContext, request: StartRequest) -> float | None:
    """When a waiting sync stops waiting for its turn: late enough for hours of files ahead of it, early enough
    that its import, once started, still has its whole ImportTimeoutSeconds and its close before the state
    machine's time limit ends the loop (an import cut off there would be left running, unfollowed, while the
    next file's import starts). None: the loop's start is not known (a loop started before this was deployed)."""
    started = request.loop_started_at if request.loop_started_at is not None else request.staged_at
    return None if started is None else started + max_queue_wait(ctx.settings)


def _queue_wait(ctx: SyncContext, request: StartRequest, turn: Turn, deadline: float | None) -> int:
    """How long the parked start waits before it asks again, unless it is woken first (when the turn is freed).
    The next in line asks after QUEUE_WAIT_SECONDS, growing with the time already waited (up to a minute): it
    must notice a holder whose turn expired. The others ask every few minutes (spread by sync id, so files
    staged together do not ask together): only to stay in the queue and to give up in time."""
    now = ctx.clock()
    if turn.first:
        waited = now - (request.staged_at if request.staged_at is not None else now)
        wait = max(ctx.settings.queue_wait_seconds, min(MAX_QUEUE_WAIT_SECONDS, int(waited / 10)))
    else:
        longest = min(MAX_PARK_SECONDS, 60 * ctx.settings.queue_wait_seconds)
        spread = int(hashlib.sha256(request.sync_process_id.encode()).hexdigest()[:4], 16) / 0xFFFF
        wait = max(ctx.settings.queue_wait_seconds, int(longest * (0.6 + 0.4 * spread)))
    if deadline is not None:
        wait = min(wait, max(1, math.ceil(deadline - now)))
    return wait


def _settling_message(ctx: SyncContext, staged: StagedFile) -> str:
    return (
        f"{staged.name} starts in a few seconds: files staged just before it go first ({ctx.target.display_name} "
        "imports one file at a time, in the order they were staged)"
    )


def _queued_message(ctx: SyncContext, staged: StagedFile, turn: Turn, deadline: float | None) -> str:
    target = ctx.target.display_name
    more = turn.ahead_count - 1
    behind = turn.ahead or "an earlier file"
    if more > 0:
        behind += f" and {more:,} more file{'s' if more > 1 else ''}"
    message = (
        f"{staged.name} is queued behind {behind}: {target} imports one file at a time, in the order they were staged"
    )
    if deadline is not None:
        message += f". If its turn has not come by {_clock_time(deadline)}, it is not imported and stays staged"
    return message


def _not_queued(ctx: SyncContext, staged: StagedFile, turn: Turn, deadline: float | None) -> str:
    target = ctx.target.display_name
    if turn.full:
        why = (
            f"{MAX_WAITING:,} files are already waiting for {target} here ({target} imports one file at a time, "
            "in the order they were staged), so it was not queued"
        )
    else:
        waited = max_queue_wait(ctx.settings)
        ahead = f"; {turn.ahead} was still ahead of it" if turn.ahead else ""
        when = f" (by {_clock_time(deadline)})" if deadline is not None else ""
        why = (
            f"its turn did not come within {_duration(waited)}{when}: {target} imports one file at a time, in the "
            f"order they were staged{ahead}"
        )
    return (
        f"{staged.name} was not imported: {why}. Nothing was imported from it; the file stays staged. Files staged "
        "after it that get their turn are still imported: stage it again (it is then imported after them) only if "
        "it should still be applied."
    )


def _clock_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def _duration(seconds: float) -> str:
    hours, minutes = divmod(int(seconds) // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _take_turn(ctx: SyncContext, request: StartRequest, staged: StagedFile, deadline: float | None) -> Turn:
    now = ctx.clock()
    return ctx.queue.take_turn(
        target_queue_key(ctx),
        request.sync_process_id,
        at=request.staged_at if request.staged_at is not None else now,
        name=staged.name,
        now=now,
        hold_seconds=turn_hold_seconds(ctx.settings),
        deadline=deadline,
        settle_seconds=ctx.settings.queue_settle_seconds,
    )


def await_turn(ctx: SyncContext, request: StartRequest, task_token: str, *, settling: bool = False) -> None:
    """The loop's WaitForTurn task: parks its task token where whoever frees the turn finds it, then wakes
    itself at once if the turn is free for it already (freed before the token was parked; not when it parks to
    wait out the settle time, `settling`, or it would be back at once) or its deadline has passed; otherwise the
    token stays unanswered until it is woken or the wait (queueWaitSeconds) runs out.

    Parked first, looked second: a sync that frees the turn leaves the queue first and reads the token second,
    so either it finds this token or this look finds the turn free."""
    key = target_queue_key(ctx)
    ctx.queue.park(key, request.sync_process_id, task_token)
    now = ctx.clock()
    deadline = turn_deadline(ctx, request)
    overdue = deadline is not None and now >= deadline
    if overdue or (not settling and ctx.queue.next_in_line(key, now) == request.sync_process_id):
        wake(ctx, task_token)


def sync_now(ctx: SyncContext, org_id: str, sync_id: str, *, app_id: str | None = None) -> SyncState | None:
    """A "Sync Now" from its checks to the started import (the loop's first task, in one call)."""
    staged = sync_now_file(ctx, org_id, sync_id, app_id=app_id)
    return start_import(ctx, staged, sync_id) if staged is not None else None


def sync_now_file(ctx: SyncContext, org_id: str, sync_id: str, *, app_id: str | None = None) -> StagedFile | None:
    """The file a "Sync Now" imports: the org's most recently staged one.

    The process must exist in ChartHop, still be open and be this app's (a replayed or forged delivery
    starts nothing and touches nothing); while another sync of the app runs, this one is refused.
    """
    if org_id != ctx.org_id:
        logger.warning("Sync Now for an org this deployment does not sync; ignored", extra={"org_id": org_id})
        return None
    try:
        process = ctx.charthop.get_process(org_id, sync_id)
    except ChartHopTokenRefused as error:
        # Nothing can be written to this org's ChartHop (no fresh token could be had): the press stays PENDING
        # there, and the refusal is recorded where the operator looks (the org's entry, an ERROR, a metric).
        # No slot or queue turn was taken; other orgs are not touched.
        org_tokens.note_refusal(ctx.settings, org_id, error, sync_process_id=sync_id)
        return None
    except ChartHopRejected as error:
        logger.warning(
            "Sync Now for a process ChartHop does not show us; ignored",
            extra={"sync_process_id": sync_id, "reason": error.user_message},
        )
        return None
    echo = echo_of_own_process(ctx, org_id, sync_id, process)
    if echo is not None:  # slipped past the trigger: the sync it echoes is not touched here
        logger.info(ECHO_IGNORED, extra={"sync_process_id": sync_id, "reason": echo})
        return None
    if not _is_ours(ctx, process, app_id):
        logger.warning("Sync Now for a process that is not this app's; ignored", extra={"sync_process_id": sync_id})
        return None
    start = ctx.journal.start(sync_id)
    if process.status.upper() in assumed.CHARTHOP_TERMINAL_STATUSES:
        if close_again_if_closed(ctx, sync_id):  # ours, closed; it may still hold its slot and turn
            return None
        logger.warning("Sync Now for a finished process (a replay); ignored", extra={"sync_process_id": sync_id})
        return None
    if start.file is not None:  # an earlier attempt passed the checks: continue with its file
        return start.file
    ctx.journal.own(sync_id, None)
    # Two presses in the same instant both find nothing RUNNING in ChartHop: the org's Sync Now slot
    # (a conditional write) lets only one through; it is freed when that sync is closed.
    if not _take_sync_now_slot(ctx, org_id, sync_id):
        fail_sync(ctx, sync_id, f"Another sync is already running; {NOT_STARTED}")
        return None
    running = running_sync(ctx, org_id, exclude=sync_id, app_id=process.app_id)
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
    ctx.journal.own(sync_id, staged)
    return staged


def echo_of_own_process(ctx: SyncContext, org_id: str, sync_id: str, process: Process | None = None) -> str | None:
    """Why a `process.create` for this process is an echo of the app's own work (None: it may be a press).

    Either signal is enough: the start journal says an upload opened this sync (no call needed), or the process
    (given, or read here) is a child import or carries this app's creation mark in its options (an assumption,
    see api_assumptions.CHARTHOP_CREATED_BY_OPTION). A process that cannot be read is left to the loop's first
    task, which reads it again and refuses what it cannot see."""
    if ctx.journal.start(sync_id).upload_trigger:
        return "a sync process an upload opened (start journal)"
    if process is None:
        try:
            process = ctx.charthop.get_process(org_id, sync_id)
        except (ChartHopRejected, ChartHopUnavailable) as error:
            logger.info(
                "could not read the process to tell an echo; the loop's first task checks it",
                extra={"sync_process_id": sync_id, "reason": error.user_message},
            )
            return None
    return assumed.own_process_echo(process.to_json_dict(), ctx.settings.app_name)


def _take_sync_now_slot(ctx: SyncContext, org_id: str, sync_id: str) -> bool:
    """The org's Sync Now slot for this sync. A holder whose sync is already closed is done (a closing sync
    imports nothing more) but kept the slot because freeing it failed: the slot is taken over from it, so an
    earlier failure never refuses a later press (the release is not retried anywhere else)."""
    slot, ttl = sync_now_slot(org_id), ctx.settings.import_timeout_seconds + SLOT_GRACE_SECONDS
    if ctx.slots.acquire(slot, sync_id, ttl):
        return True
    holder = ctx.slots.holder(slot)
    if holder is None:  # freed or expired since
        return ctx.slots.acquire(slot, sync_id, ttl)
    if ctx.loop_memory.load(holder).closed_at is None:
        return False
    logger.warning(
        "the Sync Now slot was still held by a closed sync (freeing it had failed); taken over",
        extra={"sync_process_id": sync_id, "stale_holder": holder},
    )
    return ctx.slots.take_over(slot, holder, sync_id, ttl)


def _is_ours(ctx: SyncContext, process: Process, delivered_app_id: str | None) -> bool:
    """Only this app's processes are touched: the process must carry this app's id (the configured one,
    or else the one its delivery names), and an import (a child process) is never a press."""
    if process.parent_process_id:
        return False
    ours = ctx.settings.app_id or delivered_app_id
    return bool(ours) and process.app_id == ours


def running_sync(ctx: SyncContext, org_id: str, *, exclude: str, app_id: str | None) -> Process | None:
    """Another of this app's sync processes that ChartHop shows RUNNING and that is not stale."""
    horizon = ctx.clock() - ctx.settings.import_timeout_seconds
    for process in ctx.charthop.find_processes(org_id, statuses=[ProcessStatus.RUNNING.value], app_id=app_id):
        if process.id == exclude or process.parent_process_id:
            continue  # ourselves, or an import (a child process), not a sync
        if created_at(process) >= horizon:
            return process
    return None


def start_import(ctx: SyncContext, staged: StagedFile, sync_id: str) -> SyncState | None:
    """Streams the file to the target while checking it and starts the import, once per sync: the journal
    says whether an earlier attempt got as far, and a retry continues from there."""
    before = ctx.journal.begin_import(sync_id, staged)
    if before.import_id:
        logger.warning("continuing the import an earlier attempt started", extra={"import_id": before.import_id})
        return loop_state(
            ctx, staged, sync_id, ImportJob(import_id=before.import_id, detail=before.import_detail or {})
        )
    if before.attempts:
        interrupted = _interrupted_start(ctx, staged, sync_id)
        if interrupted is not None:
            return interrupted if isinstance(interrupted, SyncState) else None
    size = f" ({staged.size:,} bytes)" if staged.size is not None else ""
    report_progress(ctx, sync_id, bar.UPLOADING_PROGRESS, f"Checking and uploading {staged.name}{size}")
    try:
        callback_url = ctx.callback_url_for(sync_id) if ctx.target.calls_back and ctx.callback_url_for else None
        upload_began = ctx.clock()
        job = ctx.target.start_import(
            staged, lambda: checked_body(ctx, staged), sync_id=sync_id, callback_url=callback_url
        )
    except CsvRejected as rejected:
        refuse_file(ctx, staged, sync_id, rejected.problem)
        return None
    except ChartHopTokenRefused as error:  # not the file's fault: it stays staged
        ctx.journal.not_imported(sync_id)
        token_refused(ctx, sync_id, error, f"{staged.name} was not imported and stays staged.")
        return None
    except TargetRejected as error:
        problem = f"{ctx.target.display_name} refused {staged.name}: {error.user_message}"
        refuse_file(ctx, staged, sync_id, CsvProblem("rejected-by-target", problem))
        return None
    except (CsvCheckFailed, ClientError, BotoCoreError):
        # Reading the staged file failed (S3, or the checker itself): nothing reached the target whole.
        # Raised, so the state machine tries again; after that the sync is closed saying the file stays staged.
        ctx.journal.not_imported(sync_id)
        sync_history.fault(ctx, sync_id, "start", before.attempts, "Reading the staged file failed; retried")
        raise
    except ImportMayHaveStarted as error:
        # Not "try again": a second start could apply the file twice. The message says what to check first.
        fail_sync(
            ctx,
            sync_id,
            f"Cannot tell whether {ctx.target.display_name} started the import of {staged.name}: "
            f"{error.user_message} The file stays staged.",
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
    ctx.journal.imported(sync_id, job.import_id, job.detail)
    sync_history.import_started(ctx, sync_id, staged, job, ctx.clock() - upload_began)
    logger.info("import started", extra={"sync_process_id": sync_id, "import_id": job.import_id, "key": staged.key})
    report_progress(
        ctx,
        sync_id,
        bar.ACCEPTED_PROGRESS,
        f"{ctx.target.display_name} accepted {staged.name}; import {job.import_id} is queued",
    )
    return loop_state(ctx, staged, sync_id, job)


class _Closed:
    """The interrupted start was closed (the sync says why)."""


def _interrupted_start(ctx: SyncContext, staged: StagedFile, sync_id: str) -> SyncState | _Closed | None:
    """An earlier attempt began the import and died before it recorded an answer. Where the target can
    tell (ChartHop: an import under the sync process), continue with the import it started or start
    afresh; where it cannot, close the sync rather than risk importing the file twice."""
    unknown = ImportJob(import_id="")
    found = started_import(ctx, staged, sync_id, default=unknown)
    if found is None:
        return None
    if found.import_id:
        ctx.journal.imported(sync_id, found.import_id, found.detail)
        return loop_state(ctx, staged, sync_id, found)
    fail_sync(
        ctx,
        sync_id,
        f"The start of the import of {staged.name} was interrupted, and {ctx.target.display_name} cannot tell "
        f"whether the import began; check {ctx.target.display_name} before staging the file again. "
        "The file stays staged.",
    )
    return _Closed()


def token_refused(ctx: SyncContext, sync_id: str, error: ChartHopTokenRefused, outcome: str) -> None:
    """ChartHop refused the org's token mid-sync and no fresh one could be had: recorded (the org's entry, an
    ERROR, a metric), and the sync closed as far as it can be: its slot and queue turn are freed even though
    ChartHop, refusing the token, cannot be told (the close's write fails and is not retried)."""
    org_tokens.note_refusal(ctx.settings, ctx.org_id, error, sync_process_id=sync_id)
    try:
        fail_sync(ctx, sync_id, f"ChartHop refused the app's token ({error.operation}). {outcome}")
    except ChartHopTokenRefused:
        logger.warning(
            "the sync could not be closed in ChartHop (token refused); its slot and turn are freed",
            extra={"sync_process_id": sync_id},
        )


def refuse_file(ctx: SyncContext, staged: StagedFile, sync_id: str, problem: CsvProblem) -> None:
    """The file cannot be imported: move it to failed/ with a report and tell the user where it went."""
    moved = _quarantine(ctx, staged.bucket, staged.key, staged.version_id, staged.org_id, problem, sync_id)
    fail_sync(
        ctx,
        sync_id,
        f"{problem.message} Nothing was imported; {moved}",
        results={"file": staged.name, "problem": problem.code},
    )
