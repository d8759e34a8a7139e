"""One entry of the status loop's task: check the import, then either hand the new state back to the
state machine or leave the task waiting (for a target's callback, or until the wait runs out).

The state machine's `FollowImport` task invokes the status checker with a task token and waits on it
for `poll.waitSeconds`. Most checks change nothing the state machine needs (the import is still
running, the wait stays the same), so the checker leaves the token unanswered: the wait runs out and
the task is entered again, one state transition per check. Only when the import finished, the wait
steps up, or the target's job changed (a next ELMA365 chunk) is the new state handed back. What
must still carry over between checks lives in the loop memory (see loop_memory.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Literal

from people_sync import sync_history
from people_sync.errors import SyncError
from people_sync.loop_memory import LoopRecord
from people_sync.models import SyncState
from people_sync.sync_service import CHECK_LEASE_SECONDS, SyncContext, check_import, close_again

logger = logging.getLogger(__name__)

TurnOutcome = Literal["waiting", "handed-over", "busy"]
#: Checks in a row that may fail with an error that is not the target's (an AWS throttle, a bug) before
#: the loop gives up; each is retried when the wait runs out.
MAX_FAILED_CHECKS = 5


def follow_import(
    ctx: SyncContext, state: SyncState, task_token: str, *, lease_seconds: float = CHECK_LEASE_SECONDS
) -> TurnOutcome:
    """One entry of the loop's task. Returns what became of the task token.

    Only one check of a sync runs at a time (the loop memory's check lease): an entry that finds another
    check still running, or the sync closed, only waits. A check continues the newest import job the
    memory knows (a hand-back may have been lost), and whatever it changed is saved before it is handed
    back. The lease lasts `lease_seconds`: the handler passes its invocation's remaining time, so a check
    that was killed holds it no longer than it could have run.
    """
    sync_id = state.sync_process_id
    owner = uuid.uuid4().hex
    if not ctx.loop_memory.acquire_check(sync_id, owner, ctx.clock(), lease_seconds):
        logger.warning("another check of this sync is running, or it is closed; only waiting")
        _finish_a_stranded_close(ctx, sync_id)
        return "busy"
    try:
        return _follow(ctx, state, task_token, owner)
    finally:
        ctx.loop_memory.release_check(sync_id, owner)


def _finish_a_stranded_close(ctx: SyncContext, sync_id: str) -> None:
    """A close decided the sync's final status but could not write it, and whoever closed it gave up (campaign
    seed 902: the import starter's close hit a run of 500s from updateProcess and its retries ran out). Every
    later check finds the sync closed and only waits, so nothing else would ever write it: the check writes
    the decided final status itself (the very one decided; close_sync keeps it). A failure is left to the next
    check."""
    memory = ctx.loop_memory.load(sync_id)
    if memory.closed_at is None or memory.final is None or memory.final_written:
        return
    final = memory.final
    logger.warning("the sync was closed but its final status never written; writing it")
    try:
        close_again(ctx, sync_id, final)
    except Exception:
        logger.warning("could not write the final status yet; the next check tries again", exc_info=True)


def _follow(ctx: SyncContext, state: SyncState, task_token: str, owner: str) -> TurnOutcome:
    sync_id = state.sync_process_id
    memory = ctx.loop_memory.load(sync_id)
    if just_checked(state, ctx.clock(), ctx.target.min_check_interval_seconds) and memory.callback is None:
        # Entered again right after a hand-over (or the import's start): only wait. (A callback that
        # came before this wait began is acted on at once.)
        _wait(ctx, state, task_token, memory.unavailable_checks)
        return "waiting"
    current = _with_memory(state, memory)
    try:
        checked = check_import(ctx, current)
    except SyncError:
        raise  # the target's own verdict (a long outage, a refusal): the state machine decides
    except Exception:
        failed = memory.failed_checks + 1
        if failed > MAX_FAILED_CHECKS:
            raise
        logger.warning("check failed; retried when the wait runs out", exc_info=True, extra={"failed_checks": failed})
        ctx.loop_memory.set_failed_checks(sync_id, failed)
        sync_history.fault(ctx, sync_id, "check", failed, "A check failed; retried when the wait runs out")
        return "waiting"
    sync_history.checked(ctx, checked)
    if memory.failed_checks:
        ctx.loop_memory.set_failed_checks(sync_id, 0)
    if checked.job != current.job:
        ctx.loop_memory.save_job(sync_id, checked.import_id, checked.import_detail)
    if checked.finished:
        outcome: dict[str, Any] = {"state": checked.import_state, "message": checked.import_message}
        ctx.loop_memory.save_outcome(sync_id, {**outcome, "results": checked.results})
    if _must_hand_over(state, checked):
        ctx.loop_memory.save_turn(
            sync_id,
            unavailable_checks=checked.poll.unavailable_checks,
            task_token=None,
            waiting_state=None,
        )
        # This check writes nothing more: free the lease before the hand-back, so the step that follows
        # (closing the sync) does not find it held.
        ctx.loop_memory.release_check(sync_id, owner)
        try:
            ctx.stepfunctions.send_task_success(taskToken=task_token, output=json.dumps(checked.to_json_dict()))
        except (ctx.stepfunctions.exceptions.TaskTimedOut, ctx.stepfunctions.exceptions.TaskDoesNotExist):
            # This check outlasted its wait; the loop memory holds what it found, so the next entry
            # carries on from there.
            logger.warning("the wait ran out before the hand-back; the next check continues")
            return "waiting"
        return "handed-over"
    _wait(ctx, state, task_token, checked.poll.unavailable_checks)
    return "waiting"


def just_checked(state: SyncState, now: float, min_interval: float = 0.0) -> bool:
    """A wait runs out only `wait_seconds` after the task was entered; an entry much sooner than that
    after the last check is the re-entry that follows a hand-over. Never sooner than the target allows
    (ELMA365: once a second) either."""
    checked_at = state.poll.checked_at
    return checked_at is not None and now - checked_at < max(state.poll.wait_seconds / 2, min_interval)


def _with_memory(state: SyncState, memory: LoopRecord) -> SyncState:
    """The execution data brought up to what the loop memory knows (it is never older)."""
    import_id = memory.import_id or state.import_id
    detail = memory.import_detail if memory.import_id and memory.import_detail is not None else state.import_detail
    if memory.callback:
        detail = {**detail, "callback": memory.callback}
    return state.model_copy(
        update={
            "import_id": import_id,
            "reported_progress": max(state.reported_progress, memory.reported_progress),
            "import_detail": detail,
            "poll": state.poll.model_copy(update={"unavailable_checks": memory.unavailable_checks}),
        }
    )


def _must_hand_over(before: SyncState, after: SyncState) -> bool:
    """Only what the state machine itself needs: the end, a longer wait, or a changed import job."""
    return (
        after.finished
        or after.poll.wait_seconds != before.poll.wait_seconds
        or after.import_id != before.import_id
        or _without_callback(after.import_detail) != _without_callback(before.import_detail)
    )


def _without_callback(detail: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in detail.items() if key != "callback"}


def _wait(ctx: SyncContext, state: SyncState, task_token: str, unavailable: int) -> None:
    """Leaves the token unanswered; a target that calls back can complete it through the loop memory
    (with a state that asks for a check at once)."""
    waiting_state = None
    if ctx.target.calls_back:
        waiting_state = state.model_copy(update={"poll": state.poll.model_copy(update={"checked_at": None})})
    ctx.loop_memory.save_turn(
        state.sync_process_id,
        unavailable_checks=unavailable,
        task_token=task_token if waiting_state is not None else None,
        waiting_state=waiting_state.to_json_dict() if waiting_state is not None else None,
    )
