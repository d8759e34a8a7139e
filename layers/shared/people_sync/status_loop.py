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
from typing import Any, Literal

from people_sync.models import SyncState
from people_sync.sync_service import SyncContext, check_import

logger = logging.getLogger(__name__)

TurnOutcome = Literal["waiting", "handed-over"]


def follow_import(ctx: SyncContext, state: SyncState, task_token: str) -> TurnOutcome:
    """One entry of the loop's task. Returns what became of the task token."""
    sync_id = state.sync_process_id
    memory = ctx.loop_memory.load(sync_id)
    if just_checked(state, ctx.clock(), ctx.target.min_check_interval_seconds) and memory.callback is None:
        # Entered again right after a hand-over (or the import's start): only wait. (A callback that
        # came before this wait began is acted on at once.)
        _wait(ctx, state, task_token, memory.reported_progress, memory.unavailable_checks)
        return "waiting"
    current = _with_memory(state, memory.reported_progress, memory.unavailable_checks, memory.callback)
    checked = check_import(ctx, current)
    if _must_hand_over(current, checked):
        ctx.loop_memory.save_turn(
            sync_id,
            reported_progress=checked.reported_progress,
            unavailable_checks=checked.poll.unavailable_checks,
            task_token=None,
            waiting_state=None,
        )
        ctx.stepfunctions.send_task_success(taskToken=task_token, output=json.dumps(checked.to_json_dict()))
        return "handed-over"
    _wait(ctx, state, task_token, checked.reported_progress, checked.poll.unavailable_checks)
    return "waiting"


def just_checked(state: SyncState, now: float, min_interval: float = 0.0) -> bool:
    """A wait runs out only `wait_seconds` after the task was entered; an entry much sooner than that
    after the last check is the re-entry that follows a hand-over. Never sooner than the target allows
    (ELMA365: once a second) either."""
    checked_at = state.poll.checked_at
    return checked_at is not None and now - checked_at < max(state.poll.wait_seconds / 2, min_interval)


def _with_memory(
    state: SyncState, reported_progress: float, unavailable_checks: int, callback: dict[str, str] | None
) -> SyncState:
    detail = {**state.import_detail, "callback": callback} if callback else state.import_detail
    return state.model_copy(
        update={
            "reported_progress": max(state.reported_progress, reported_progress),
            "import_detail": detail,
            "poll": state.poll.model_copy(update={"unavailable_checks": unavailable_checks}),
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


def _wait(ctx: SyncContext, state: SyncState, task_token: str, reported_progress: float, unavailable: int) -> None:
    """Leaves the token unanswered; a target that calls back can complete it through the loop memory
    (with a state that asks for a check at once)."""
    waiting_state = None
    if ctx.target.calls_back:
        waiting_state = state.model_copy(update={"poll": state.poll.model_copy(update={"checked_at": None})})
    ctx.loop_memory.save_turn(
        state.sync_process_id,
        reported_progress=reported_progress,
        unavailable_checks=unavailable,
        task_token=task_token if waiting_state is not None else None,
        waiting_state=waiting_state.to_json_dict() if waiting_state is not None else None,
    )
