"""The status loop's task entry: when a check hands a state back, when it only waits, and callbacks."""

from __future__ import annotations

import json
from typing import Any, cast

import boto3
import pytest

from people_sync import status_loop
from people_sync.loop_memory import InMemoryLoopMemory, callback_received
from people_sync.models import ImportJob, ImportStatus, StagedFile, SyncState
from people_sync.sync_service import SyncContext
from people_sync.targets.base import OpenBody
from tests.fakes import app_settings
from tests.unit.test_sync_service import Clock, RecordingReporter

TOKEN = "task-token-1"


class Target:
    name = "scripted"
    display_name = "Scripted"
    min_check_interval_seconds = 1

    def __init__(self, statuses: list[ImportStatus], *, calls_back: bool = False) -> None:
        self.statuses = statuses
        self.calls_back = calls_back
        self.seen_jobs: list[ImportJob] = []
        self.abandoned: list[ImportJob] = []

    def start_import(
        self, staged: StagedFile, open_body: OpenBody, *, sync_id: str, callback_url: str | None = None
    ) -> ImportJob:
        raise AssertionError("the loop never starts imports")

    def abandon(self, job: ImportJob) -> None:
        self.abandoned.append(job)

    def import_status(self, job: ImportJob, open_body: OpenBody) -> tuple[ImportStatus, ImportJob]:
        self.seen_jobs.append(job)
        return self.statuses.pop(0), job


class RecordingStepFunctions:
    """Records SendTaskSuccess calls; can answer like Step Functions does for a wait that ran out."""

    def __init__(self) -> None:
        self.exceptions = boto3.client("stepfunctions", region_name="us-east-1").exceptions
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.timed_out = False

    def send_task_success(self, *, taskToken: str, output: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        if self.timed_out:
            raise self.exceptions.TaskTimedOut({"Error": {"Code": "TaskTimedOut", "Message": "gone"}}, "x")
        self.sent.append((taskToken, json.loads(output)))
        return {}


@pytest.fixture
def sfn() -> RecordingStepFunctions:
    return RecordingStepFunctions()


def make(
    sfn: RecordingStepFunctions, target: Target
) -> tuple[SyncContext, RecordingReporter, Clock, InMemoryLoopMemory]:
    settings = app_settings(org_id="org")
    reporter, clock, memory = RecordingReporter(), Clock(), InMemoryLoopMemory()
    ctx = SyncContext(
        settings=settings,
        charthop=cast(Any, None),
        target=target,
        reporter=reporter,
        s3=cast(Any, None),
        stepfunctions=cast(Any, sfn),
        loop_memory=memory,
        clock=clock,
    )
    return ctx, reporter, clock, memory


def started(clock: Clock) -> SyncState:
    """The state the import starter hands the state machine: checked (started) just now."""
    return SyncState.model_validate(
        {
            "orgId": "org",
            "syncProcessId": "sync-1",
            "importId": "import-1",
            "file": {"bucket": "bucket", "key": "staging/org/roster.csv", "orgId": "org"},
            "poll": {
                "waitSeconds": 5,
                "initialSeconds": 5,
                "maxSeconds": 60,
                "timeoutSeconds": 3900,
                "startedAt": clock.now,
                "checkedAt": clock.now,
            },
            "reportedProgress": 0.05,
        }
    )


def running_for(clock: Clock, seconds: float) -> SyncState:
    """A state whose import has run `seconds` and whose last hand-over set the one-minute wait."""
    state = started(clock)
    poll = state.poll.model_copy(
        update={"started_at": clock.now - seconds, "checked_at": clock.now - 60, "wait_seconds": 60}
    )
    return state.model_copy(update={"poll": poll})


def test_the_entry_right_after_the_start_only_waits(sfn) -> None:
    target = Target([])
    ctx, reporter, clock, _ = make(sfn, target)
    assert status_loop.follow_import(ctx, started(clock), TOKEN) == "waiting"
    assert target.seen_jobs == []  # no check yet: the import was just started
    assert reporter.progress == []


def test_a_running_import_with_the_same_wait_leaves_the_token_unanswered(sfn) -> None:
    target = Target([ImportStatus(state="running", progress=0.5), ImportStatus(state="running", progress=0.5)])
    ctx, reporter, clock, memory = make(sfn, target)
    state = running_for(clock, 100)  # the wait ran out: the task is entered again with the same data
    assert status_loop.follow_import(ctx, state, TOKEN) == "waiting"
    assert [round(p, 2) for _, p, _ in reporter.progress] == [0.5]
    assert memory.load("sync-1").reported_progress == pytest.approx(0.5)
    clock.now += 60  # and again, with the same data: the memory keeps the bar from repeating itself
    assert status_loop.follow_import(ctx, state, TOKEN) == "waiting"
    assert len(reporter.progress) == 1
    assert memory.load("sync-1").task_token is None  # nobody calls back: nothing to keep


def test_a_finished_import_is_handed_back(sfn) -> None:
    target = Target([ImportStatus(state="done", progress=1, results={"rows": 3})])
    ctx, _, clock, _ = make(sfn, target)
    state = started(clock)
    clock.now += 5
    assert status_loop.follow_import(ctx, state, TOKEN) == "handed-over"
    [(token, carried)] = sfn.sent
    assert token == TOKEN
    assert carried["finished"] is True
    assert carried["outcome"] == "DONE"
    assert carried["results"] == {"rows": 3}


def test_a_longer_wait_is_handed_back_and_the_reentry_only_waits(sfn) -> None:
    target = Target([ImportStatus(state="running", progress=0.1)] * 2)
    ctx, _, clock, _ = make(sfn, target)
    state = started(clock)
    clock.now += 20  # old enough for the next ladder step
    assert status_loop.follow_import(ctx, state, TOKEN) == "handed-over"
    handed = SyncState.model_validate(sfn.sent[0][1])
    assert handed.poll.wait_seconds == 60
    assert not handed.finished
    clock.now += 0.2  # the Choice state sends it straight back into the task
    assert status_loop.follow_import(ctx, handed, "task-token-2") == "waiting"
    assert len(target.seen_jobs) == 1


def test_a_callback_ends_the_wait_with_a_state_that_asks_for_a_check(sfn) -> None:
    target = Target([ImportStatus(state="running"), ImportStatus(state="done", progress=1)], calls_back=True)
    ctx, _, clock, memory = make(sfn, target)
    state = running_for(clock, 100)
    assert status_loop.follow_import(ctx, state, TOKEN) == "waiting"
    assert memory.load("sync-1").task_token == TOKEN
    assert callback_received(ctx.loop_memory, ctx.stepfunctions, "sync-1", {"status": "Completed"}) is True
    [(token, carried)] = sfn.sent
    assert token == TOKEN
    handed = SyncState.model_validate(carried)
    assert handed.poll.checked_at is None  # checked at once on re-entry, not after another wait
    clock.now += 0.1
    assert status_loop.follow_import(ctx, handed, "task-token-2") == "handed-over"
    assert target.seen_jobs[-1].detail["callback"] == {"status": "Completed"}
    assert sfn.sent[-1][1]["finished"] is True


def test_a_callback_between_two_waits_is_kept_for_the_next_check(sfn) -> None:
    target = Target([ImportStatus(state="running")], calls_back=True)
    ctx, _, clock, _ = make(sfn, target)
    assert callback_received(ctx.loop_memory, ctx.stepfunctions, "sync-1", {"status": "Failed"}) is False
    state = started(clock)
    clock.now += 5
    status_loop.follow_import(ctx, state, TOKEN)
    assert target.seen_jobs[0].detail["callback"] == {"status": "Failed"}


def test_a_callback_for_a_wait_that_already_ran_out_is_not_an_error(sfn) -> None:
    target = Target([ImportStatus(state="running")], calls_back=True)
    ctx, _, clock, memory = make(sfn, target)
    state = started(clock)
    clock.now += 5
    status_loop.follow_import(ctx, state, TOKEN)
    sfn.timed_out = True
    assert callback_received(ctx.loop_memory, ctx.stepfunctions, "sync-1", {"status": "Completed"}) is False
    assert memory.load("sync-1").callback == {"status": "Completed"}  # the next check still sees it
