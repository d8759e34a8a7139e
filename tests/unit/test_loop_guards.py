"""The loop memory's guards and the status loop's use of them, where the offline stack cannot produce the
interleaving on demand (issue 11: 3, 4, 12).

- a check holds the sync's lease: the close waits (CheckInProgress) instead of racing the check's last write;
- after the close nothing is claimed and no check runs: nothing lands after the final status;
- progress claims only move forward, whatever the order of claims and closes (a model-based hypothesis test
  on both memories, DynamoDB on moto);
- a lost hand-back (the check outlasted its wait) is continued by the next check from the loop memory;
- one unexpected error in a check is waited out.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from typing import Any, cast

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from people_sync import status_loop
from people_sync.errors import TargetUnavailable
from people_sync.loop_memory import CLOSER, CheckInProgress, DynamoDBLoopMemory, InMemoryLoopMemory, LoopMemory
from people_sync.models import ImportJob, ImportStatus, StagedFile, SyncState
from people_sync.sync_service import SyncContext, close_sync, report_progress
from people_sync.targets.base import OpenBody
from tests.fakes import app_settings
from tests.unit.test_sync_service import Clock, RecordingReporter

TABLE = "people-sync-loop-guards"
SYNC = "sync-1"
LEASE = 90.0
FINAL = {"succeeded": True, "message": "Imported roster.csv", "results": {}, "summary": "Imported roster.csv"}


def _create_table(client: Any) -> None:
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture(params=["in-memory", "dynamodb"])
def memory(request: pytest.FixtureRequest) -> Iterator[LoopMemory]:
    if request.param == "in-memory":
        yield InMemoryLoopMemory()
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _create_table(client)
        yield DynamoDBLoopMemory(TABLE, client)


# --- the lease and the close -----------------------------------------------------------------------


def test_close_while_a_check_holds_the_lease_raises_check_in_progress(memory: LoopMemory) -> None:
    assert memory.acquire_check(SYNC, "check-a", 100.0, LEASE)
    with pytest.raises(CheckInProgress):
        memory.close(SYNC, 110.0, LEASE, FINAL)
    assert memory.load(SYNC).closed_at is None
    assert memory.claim_progress(SYNC, 0.4)  # the running check's last write still lands, before the close
    memory.release_check(SYNC, "check-a")
    before = memory.close(SYNC, 120.0, LEASE, FINAL)
    assert not before.final_written
    assert memory.load(SYNC).closed_at == 120.0


def test_after_the_close_no_progress_is_claimed_and_no_check_starts(memory: LoopMemory) -> None:
    assert memory.claim_progress(SYNC, 0.3)
    memory.close(SYNC, 100.0, LEASE, FINAL)
    assert not memory.claim_progress(SYNC, 0.9)
    assert not memory.acquire_check(SYNC, "late-check", 101.0, LEASE)
    assert not memory.acquire_check(SYNC, "late-check", 100.0 + LEASE + 1, LEASE)  # not even once the lease ran out
    assert memory.load(SYNC).reported_progress == 0.3


def test_a_dead_checks_lease_expires_and_its_late_claim_is_refused(memory: LoopMemory) -> None:
    assert memory.acquire_check(SYNC, "dead-check", 100.0, LEASE)
    memory.close(SYNC, 100.0 + LEASE + 1, LEASE, FINAL)  # the holder died: its lease ran out
    assert not memory.claim_progress(SYNC, 0.7)


def test_a_second_close_says_the_final_status_was_written(memory: LoopMemory) -> None:
    memory.close(SYNC, 100.0, LEASE, FINAL)
    memory.mark_final_written(SYNC)
    assert memory.close(SYNC, 200.0, LEASE, FINAL).final_written


@pytest.mark.parametrize("progress", [0.05, 0.5, 0.95])
def test_progress_claims_only_move_forward(memory: LoopMemory, progress: float) -> None:
    assert memory.claim_progress(SYNC, progress)
    assert not memory.claim_progress(SYNC, progress)
    assert not memory.claim_progress(SYNC, progress - 0.01)
    assert memory.claim_progress(SYNC, progress + 0.01)


# --- any interleaving of claims, closes and checks ---------------------------------------------------

_PROGRESS = st.sampled_from([round(0.05 * step, 2) for step in range(1, 21)])
_OPERATION = st.one_of(
    st.tuples(st.just("claim"), _PROGRESS),
    st.tuples(st.just("close"), st.just(0.0)),
    st.tuples(st.just("acquire"), st.sampled_from([1.0, 2.0])),  # two checkers
    st.tuples(st.just("release"), st.sampled_from([1.0, 2.0])),
)
_OPERATIONS = st.lists(_OPERATION, min_size=1, max_size=30)


def _play(memory: LoopMemory, sync_id: str, operations: list[tuple[str, float]]) -> None:
    """Plays the operations against `memory` and a model of the rules; the claims that succeeded must strictly
    increase and none may follow the close."""
    progress, closed, holder = 0.0, False, None
    claimed: list[float] = []
    closed_at_claim: int | None = None
    for kind, value in operations:
        if kind == "claim":
            expected = not closed and value > progress
            assert memory.claim_progress(sync_id, value) is expected, (kind, value)
            if expected:
                progress = value
                claimed.append(value)
        elif kind == "close":
            if holder not in (None, CLOSER):
                with pytest.raises(CheckInProgress):
                    memory.close(sync_id, 100.0, LEASE, FINAL)
                continue
            memory.close(sync_id, 100.0, LEASE, FINAL)
            if not closed:
                closed_at_claim = len(claimed)
            closed, holder = True, CLOSER
        elif kind == "acquire":
            owner = f"check-{int(value)}"
            expected = not closed and holder in (None, owner)
            assert memory.acquire_check(sync_id, owner, 100.0, LEASE) is expected, (kind, owner)
            if expected:
                holder = owner
        else:
            owner = f"check-{int(value)}"
            memory.release_check(sync_id, owner)
            if holder == owner:
                holder = None
    assert all(later > earlier for earlier, later in itertools.pairwise(claimed))
    if closed_at_claim is not None:
        assert len(claimed) == closed_at_claim  # nothing claimed after the close
    assert memory.load(sync_id).reported_progress == progress


@settings(max_examples=150, deadline=None)
@given(operations=_OPERATIONS)
def test_any_interleaving_of_claims_and_closes_in_memory(operations: list[tuple[str, float]]) -> None:
    _play(InMemoryLoopMemory(), SYNC, operations)


def test_any_interleaving_of_claims_and_closes_on_dynamodb() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _create_table(client)
        memory = DynamoDBLoopMemory(TABLE, client)

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(operations=_OPERATIONS)
        def run(operations: list[tuple[str, float]]) -> None:
            _play(memory, f"sync-{uuid.uuid4().hex}", operations)  # a fresh sync per example

        run()


# --- the status loop on these guards ---------------------------------------------------------------


class ScriptedTarget:
    """Answers each status request from a script of (status, new import id or None for the same job)."""

    name = "scripted"
    display_name = "Scripted"
    calls_back = False
    min_check_interval_seconds = 1

    def __init__(self, script: list[tuple[ImportStatus | Exception, str | None]]) -> None:
        self.script = script
        self.seen_jobs: list[ImportJob] = []

    def start_import(
        self, staged: StagedFile, open_body: OpenBody, *, sync_id: str, callback_url: str | None = None
    ) -> ImportJob:
        raise AssertionError("the loop never starts imports")

    def abandon(self, job: ImportJob) -> None:
        pass

    def import_status(self, job: ImportJob, open_body: OpenBody) -> tuple[ImportStatus, ImportJob]:
        self.seen_jobs.append(job)
        answer, next_id = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if next_id is None:
            return answer, job
        return answer, ImportJob(import_id=next_id, detail={"chunk": next_id})


class StepFunctions:
    """SendTaskSuccess, answering TaskTimedOut while `timed_out` (the wait ran out before the hand-back)."""

    def __init__(self) -> None:
        self.exceptions = boto3.client("stepfunctions", region_name="us-east-1").exceptions
        self.sent: list[dict[str, Any]] = []
        self.timed_out = False

    def send_task_success(self, *, taskToken: str, output: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        if self.timed_out:
            raise self.exceptions.TaskTimedOut({"Error": {"Code": "TaskTimedOut", "Message": "timed out"}}, "x")
        self.sent.append(json.loads(output))
        return {}


def running(progress: float = 0.5) -> ImportStatus:
    return ImportStatus(state="running", progress=progress)


def _context(target: ScriptedTarget) -> tuple[SyncContext, RecordingReporter, Clock, InMemoryLoopMemory, StepFunctions]:
    reporter, clock, memory, sfn = RecordingReporter(), Clock(), InMemoryLoopMemory(), StepFunctions()
    ctx = SyncContext(
        settings=app_settings(org_id="org"),
        charthop=cast(Any, None),
        target=target,
        reporter=reporter,
        s3=cast(Any, None),
        stepfunctions=cast(Any, sfn),
        loop_memory=memory,
        clock=clock,
    )
    return ctx, reporter, clock, memory, sfn


def _state(clock: Clock, import_id: str = "chunk-1") -> SyncState:
    """Execution data of a running import, last checked a whole (one-minute, the longest) wait ago."""
    return SyncState.model_validate(
        {
            "orgId": "org",
            "syncProcessId": SYNC,
            "importId": import_id,
            "importDetail": {"chunk": import_id},
            "file": {"bucket": "bucket", "key": "staging/org/roster.csv", "orgId": "org"},
            "poll": {
                "waitSeconds": 60,
                "initialSeconds": 5,
                "maxSeconds": 60,
                "timeoutSeconds": 3900,
                "startedAt": clock.now - 120,
                "checkedAt": clock.now - 60,
            },
            "reportedProgress": 0.05,
        }
    )


def test_a_lost_hand_back_is_continued_by_the_next_check_with_the_new_job() -> None:
    """Issue 11 (3): the check that started ELMA365's next chunk cannot hand it back (its wait ran out); the
    next entry gets the old execution data and must follow the new chunk, not start it again."""
    target = ScriptedTarget([(running(0.5), "chunk-2"), (running(0.6), None)])
    ctx, _, clock, memory, sfn = _context(target)
    stale = _state(clock)
    sfn.timed_out = True
    assert status_loop.follow_import(ctx, stale, "token-1") == "waiting"
    assert memory.load(SYNC).import_id == "chunk-2"
    sfn.timed_out = False
    clock.now += 60
    assert status_loop.follow_import(ctx, stale.model_copy(), "token-2") == "handed-over"
    assert [job.import_id for job in target.seen_jobs] == ["chunk-1", "chunk-2"]
    assert sfn.sent[-1]["importId"] == "chunk-2"


def test_a_check_entered_while_another_runs_only_waits() -> None:
    target = ScriptedTarget([])
    ctx, reporter, clock, memory, sfn = _context(target)
    assert memory.acquire_check(SYNC, "the-running-check", clock.now, LEASE)
    assert status_loop.follow_import(ctx, _state(clock), "token") == "busy"
    assert target.seen_jobs == []
    assert reporter.progress == []
    assert sfn.sent == []


def test_a_stale_check_after_the_close_reports_nothing() -> None:
    """Issue 11 (4): the sync was closed; a check entered late with old execution data neither reads the
    import nor writes progress after the final status."""
    target = ScriptedTarget([(running(0.9), None)])
    ctx, reporter, clock, _, sfn = _context(target)
    close_sync(ctx, SYNC, succeeded=True, message="Imported roster.csv", results={}, summary="done")
    assert status_loop.follow_import(ctx, _state(clock), "stale-token") == "busy"
    assert target.seen_jobs == []
    assert reporter.progress == []
    assert sfn.sent == []
    assert not report_progress(ctx, SYNC, 0.99, "late")
    assert reporter.progress == []
    assert len(reporter.finished) == 1


def test_the_close_waits_for_a_running_check_and_writes_nothing_meanwhile() -> None:
    target = ScriptedTarget([])
    ctx, reporter, clock, memory, _ = _context(target)
    assert memory.acquire_check(SYNC, "the-running-check", clock.now, LEASE)
    with pytest.raises(CheckInProgress):
        close_sync(ctx, SYNC, succeeded=True, message="Imported roster.csv", results={}, summary="done")
    assert reporter.finished == []
    assert report_progress(ctx, SYNC, 0.6, "the check's last word")  # lands before the final status
    memory.release_check(SYNC, "the-running-check")
    close_sync(ctx, SYNC, succeeded=True, message="Imported roster.csv", results={}, summary="done")
    assert len(reporter.finished) == 1
    assert not report_progress(ctx, SYNC, 0.7, "too late")
    assert [progress for _, progress, _ in reporter.progress] == [0.6]


def test_one_unexpected_error_in_a_check_is_waited_out() -> None:
    """Issue 11 (12): a bug or an AWS hiccup in one check does not end the sync; the next check goes on."""
    done = ImportStatus(state="done", progress=1.0, results={"rows": 3})
    target = ScriptedTarget([(RuntimeError("boom"), None), (done, None)])
    ctx, _, clock, memory, sfn = _context(target)
    assert status_loop.follow_import(ctx, _state(clock), "token-1") == "waiting"
    assert memory.load(SYNC).failed_checks == 1
    assert sfn.sent == []
    clock.now += 60
    assert status_loop.follow_import(ctx, _state(clock), "token-2") == "handed-over"
    assert memory.load(SYNC).failed_checks == 0
    assert sfn.sent[-1]["finished"] is True


def test_errors_in_every_check_end_the_loop_after_the_allowance() -> None:
    failures = status_loop.MAX_FAILED_CHECKS + 1
    target = ScriptedTarget([(RuntimeError(f"boom {i}"), None) for i in range(failures)])
    ctx, _, clock, _, _ = _context(target)
    for attempt in range(status_loop.MAX_FAILED_CHECKS):
        assert status_loop.follow_import(ctx, _state(clock), f"token-{attempt}") == "waiting"
        clock.now += 60
    with pytest.raises(RuntimeError):
        status_loop.follow_import(ctx, _state(clock), "token-last")


def test_a_close_whose_final_write_was_given_up_is_finished_by_the_next_check() -> None:
    """Campaign seed 902: the import starter closed the sync (loop memory: closed, final decided) but the final
    updateProcess kept failing and its retries ran out. Every later check found the sync closed and only
    waited, so it stayed RUNNING in ChartHop for good. The next check writes the decided final itself."""

    class FailingOnce(RecordingReporter):
        failed = False

        def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None:
            if not self.failed:
                self.failed = True
                raise TargetUnavailable("ChartHop did not answer when trying to update the sync process.")
            super().finish(sync_id, succeeded=succeeded, message=message, results=results, summary=summary)

    target = ScriptedTarget([])
    ctx, _, clock, memory, sfn = _context(target)
    reporter = FailingOnce()
    ctx.reporter = reporter
    with pytest.raises(TargetUnavailable):
        close_sync(ctx, SYNC, succeeded=False, message="roster.csv was refused", results={}, summary="refused")
    assert reporter.finished == []

    clock.now += 60
    assert status_loop.follow_import(ctx, _state(clock), "token") == "busy"
    assert [entry["message"] for entry in reporter.finished] == ["roster.csv was refused"]
    assert memory.load(SYNC).final_written
    assert status_loop.follow_import(ctx, _state(clock), "token-2") == "busy"
    assert len(reporter.finished) == 1  # written once
    assert target.seen_jobs == []
    assert sfn.sent == []
