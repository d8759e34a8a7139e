"""How import status becomes the sync's progress bar, and how long the status loop waits."""

from __future__ import annotations

from people_sync.models import ImportStatus, PollState

#: Progress shown once ChartHop has accepted the file; the import itself fills the span after it.
UPLOADING_PROGRESS = 0.02
ACCEPTED_PROGRESS = 0.05
IMPORT_SPAN = 0.9
#: Progress changes smaller than this are not worth a ChartHop call.
MIN_PROGRESS_STEP = 0.01
#: Past PollMaxSeconds, a wait may grow to this fraction of the time the import has taken so far:
#: completion is then noticed within max(PollMaxSeconds, 10% of the import's duration).
WAIT_FRACTION_OF_ELAPSED = 0.1


def sync_progress(status: ImportStatus) -> float:
    """The sync's progress for an import status; 1.0 is reserved for the final update."""
    fraction = min(1.0, max(0.0, status.progress))
    if status.finished:
        fraction = 1.0
    return round(ACCEPTED_PROGRESS + IMPORT_SPAN * fraction, 3)


def worth_reporting(new: float, reported: float) -> bool:
    """Only forward progress is reported, so the bar the user sees never goes back or stalls noisily."""
    return new - reported >= MIN_PROGRESS_STEP


def next_poll(poll: PollState, now: float) -> PollState:
    """Exponential backoff capped by max(max_seconds, 10% of elapsed): a short import is noticed within
    seconds, a long one costs few checks, and no completion waits longer than that cap to be seen."""
    attempt = poll.attempt + 1
    cap = max(poll.max_seconds, WAIT_FRACTION_OF_ELAPSED * max(0.0, now - poll.started_at))
    wait = min(cap, poll.initial_seconds * 2**attempt)
    return poll.model_copy(update={"attempt": attempt, "wait_seconds": int(wait)})


def status_message(status: ImportStatus, file_name: str) -> str:
    percent = round(min(1.0, max(0.0, status.progress)) * 100)
    if status.state == "pending":
        return f"{file_name}: waiting for ChartHop to start the import"
    if status.state == "running":
        return f"{file_name}: ChartHop is importing ({percent}%)"
    return status.message or f"{file_name}: import {status.state}"
