"""How import status becomes the sync's progress bar, and how long the status loop waits."""

from __future__ import annotations

from typing import Any

from people_sync.models import ImportStatus, PollState

#: Shown while a file waits the settle time (QueueSettleSeconds) for files staged just before it: below
#: QUEUED_PROGRESS, so a "queued behind" message after it still moves the bar (and is shown).
SETTLING_PROGRESS = 0.005
#: Shown while a file waits for its target's turn (one import at a time per target).
QUEUED_PROGRESS = 0.01
UPLOADING_PROGRESS = 0.02
#: Progress shown once ChartHop has accepted the file; the import itself fills the span after it.
ACCEPTED_PROGRESS = 0.05
IMPORT_SPAN = 0.9
#: Counters shown in the final message, in this order, when a target reports them.
RESULT_COUNTS = ("rows", "imported", "created", "updated", "deleted", "unchanged", "errors")
#: The counter of rows a target skipped (or, in a dry run, found in error).
SKIPPED_ROWS_KEY = "errors"
#: A dry run's counters say what the import would do.
_DRY_RUN_WORDS = {
    "imported": "valid",
    "created": "would be created",
    "updated": "would be updated",
    "deleted": "would be deleted",
    "unchanged": "would stay unchanged",
    "errors": "with errors",
}
#: Progress changes smaller than this are not worth a ChartHop call.
MIN_PROGRESS_STEP = 0.01
#: Past PollMaxSeconds, a wait may grow to this fraction of the time the import has taken so far:
#: completion is then noticed within max(PollMaxSeconds, 10% of the import's duration).
WAIT_FRACTION_OF_ELAPSED = 0.1
#: Below PollMaxSeconds a wait may be this many times the time the import has taken so far, so a
#: short import is noticed within seconds.
EARLY_WAIT_MULTIPLE = 3
#: Waits come from a ladder (initial x 3 up to PollMaxSeconds, then PollMaxSeconds x 2, x 4 ...):
#: the state machine's data changes only when a wait steps up, which keeps state transitions few.
EARLY_STEP = 3
LATE_STEP = 2


def sync_progress(status: ImportStatus) -> float:
    """The sync's progress for an import status; 1.0 is reserved for the final update."""
    fraction = min(1.0, max(0.0, status.progress))
    if status.finished:
        fraction = 1.0
    return round(ACCEPTED_PROGRESS + IMPORT_SPAN * fraction, 3)


def count_words(key: str, value: Any, *, dry_run: bool = False) -> str:
    """One counter of the final message: "25 created", or in a dry run "25 would be created"."""
    return f"{value} {_DRY_RUN_WORDS.get(key, key) if dry_run else key}"


def worth_reporting(new: float, reported: float) -> bool:
    """Only forward progress is reported, so the bar the user sees never goes back or stalls noisily."""
    return new - reported >= MIN_PROGRESS_STEP


def wait_ladder(initial: int, cap: int, limit: float) -> list[int]:
    """The waits the loop may use, up to `limit` seconds."""
    waits: list[int] = []
    wait = max(1, initial)
    while wait < cap:
        waits.append(wait)
        wait *= EARLY_STEP
    wait = max(1, cap)
    while wait <= max(limit, cap):
        waits.append(wait)
        wait *= LATE_STEP
    return waits


def wait_for(poll: PollState, now: float) -> int:
    """The wait before the next check, from the import's age alone: the longest ladder step within
    max(max_seconds, 10% of elapsed) and, early on, within 3x elapsed. Every completion is noticed within
    max(max_seconds, 10% of the import's duration), and the wait changes only a few times an hour."""
    elapsed = max(0.0, now - poll.started_at)
    allowed = max(
        poll.initial_seconds,
        min(max(poll.max_seconds, WAIT_FRACTION_OF_ELAPSED * elapsed), EARLY_WAIT_MULTIPLE * elapsed),
    )
    return max(wait for wait in wait_ladder(poll.initial_seconds, poll.max_seconds, allowed) if wait <= allowed)


def next_poll(poll: PollState, now: float) -> PollState:
    """The poll state after a check at `now`."""
    return poll.model_copy(update={"attempt": poll.attempt + 1, "wait_seconds": wait_for(poll, now), "checked_at": now})


def status_message(status: ImportStatus, file_name: str, target: str = "ChartHop", *, dry_run: bool = False) -> str:
    """The progress message for an import still under way; a target's own words are kept after ours (a dry
    run's are not: they may say "imported")."""
    percent = round(min(1.0, max(0.0, status.progress)) * 100)
    if dry_run:
        if status.state == "pending":
            return f"{file_name}: waiting for {target} to start the dry run"
        if status.state == "running":
            return f"{file_name}: {target} is validating (dry run, {percent}%)"
    if status.state == "pending":
        return f"{file_name}: {status.message or f'waiting for {target} to start the import'}"
    if status.state == "running":
        detail = f" - {status.message}" if status.message else ""
        return f"{file_name}: {target} is importing ({percent}%){detail}"
    return status.message or f"{file_name}: import {status.state}"
