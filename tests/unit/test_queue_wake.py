"""A start queued behind another file parks its status loop (WaitForTurn) and is woken when the turn is freed;
it stops waiting in time for its import to fit in the loop's time limit (issue 13, "Fairness and limits")."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from offline.queue_sim import BUCKET, Simulation, StepFunctionsExceptions
from people_sync import sync_service, sync_start, target_queue
from people_sync.models import StagedFile, StartRequest
from people_sync.progress import QUEUED_PROGRESS
from people_sync.sync_service import SyncContext, max_queue_wait, target_queue_key

ORG = "org-a"
HOLD = 600.0


class RecordingStepFunctions:
    """send_task_success, recorded; a token in `over` is a wait that already ended."""

    exceptions = StepFunctionsExceptions

    def __init__(self) -> None:
        self.woken: list[str] = []
        self.over: set[str] = set()

    def send_task_success(self, *, taskToken: str, output: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        if taskToken in self.over:
            raise self.exceptions.TaskTimedOut(taskToken)
        self.woken.append(taskToken)
        return {}


@pytest.fixture
def sim() -> Simulation:
    return Simulation()


@pytest.fixture
def ctx(sim: Simulation) -> SyncContext:
    return dataclasses.replace(sim.context(ORG), stepfunctions=RecordingStepFunctions())  # type: ignore[arg-type]


def woken(ctx: SyncContext) -> list[str]:
    recorder: RecordingStepFunctions = ctx.stepfunctions  # type: ignore[assignment]
    return recorder.woken


def request(sync_id: str, at: float, *, loop_started_at: float | None = None) -> StartRequest:
    key = f"staging/{ORG}/{sync_id}.csv"
    return StartRequest(
        kind="upload",
        org_id=ORG,
        sync_process_id=sync_id,
        file=StagedFile(bucket=BUCKET, key=key, version_id="v1", org_id=ORG),
        staged_at=at,
        loop_started_at=at if loop_started_at is None else loop_started_at,
    )


def take(ctx: SyncContext, sync_id: str, at: float) -> bool:
    return ctx.queue.take_turn(
        target_queue_key(ctx), sync_id, at=at, name=f"{sync_id}.csv", now=ctx.clock(), hold_seconds=HOLD
    ).granted


def close(ctx: SyncContext, sync_id: str) -> None:
    sync_service.close_sync(ctx, sync_id, succeeded=True, message="Imported", results={}, summary="Imported")


def test_closing_the_holder_wakes_the_start_next_in_line_and_only_it(ctx: SyncContext) -> None:
    now = ctx.clock()
    assert take(ctx, "holder", now - 30)
    for sync_id, at in (("second", now - 10), ("first", now - 20)):
        ctx.queue.join(target_queue_key(ctx), sync_id, at=at, name=f"{sync_id}.csv", now=now)
        sync_start.await_turn(ctx, request(sync_id, at), f"token-of-{sync_id}")
    assert woken(ctx) == []  # the holder still has the turn: both wait
    close(ctx, "holder")
    assert woken(ctx) == ["token-of-first"]


def test_a_start_that_parks_after_the_turn_was_freed_wakes_itself(ctx: SyncContext) -> None:
    """The close looked for a parked token before this start parked it: the start's own look finds the turn free."""
    now = ctx.clock()
    assert take(ctx, "holder", now - 30)
    ctx.queue.join(target_queue_key(ctx), "next", at=now - 20, name="next.csv", now=now)
    close(ctx, "holder")
    assert woken(ctx) == []  # nothing parked yet
    sync_start.await_turn(ctx, request("next", now - 20), "token-of-next")
    assert woken(ctx) == ["token-of-next"]


def test_a_wake_that_finds_the_wait_already_over_changes_nothing(ctx: SyncContext) -> None:
    now = ctx.clock()
    assert take(ctx, "holder", now - 30)
    ctx.queue.join(target_queue_key(ctx), "next", at=now - 20, name="next.csv", now=now)
    sync_start.await_turn(ctx, request("next", now - 20), "token-of-next")
    recorder: RecordingStepFunctions = ctx.stepfunctions  # type: ignore[assignment]
    recorder.over.add("token-of-next")  # its wait ran out: it is asking again anyway
    close(ctx, "holder")
    assert ctx.loop_memory.load("holder").final_written
    assert ctx.queue.next_in_line(target_queue_key(ctx), ctx.clock()) == "next"


def test_a_queued_start_says_how_many_files_are_ahead_and_until_when_it_waits(
    sim: Simulation, ctx: SyncContext
) -> None:
    now = ctx.clock()
    assert take(ctx, "holder", now - 30)
    for number in range(1, 4):
        ctx.queue.join(target_queue_key(ctx), f"w{number}", at=now - 20 + number, name=f"w{number}.csv", now=now)
    queued = sync_start.begin_sync(ctx, request("w3", now - 17))
    assert isinstance(queued, sync_start.Queued)
    [(_at, _sync, _progress, message)] = [entry for entry in sim.progress if entry[1] == "w3"]
    deadline = sync_start._clock_time(now - 17 + max_queue_wait(ctx.settings))
    assert message == (
        "w3.csv is queued behind holder.csv and 2 more files: ChartHop imports one file at a time, in the order they "
        f"were staged. If its turn has not come by {deadline}, it is not imported and stays staged"
    )


def test_the_next_in_line_asks_again_within_a_minute_the_others_after_minutes(ctx: SyncContext) -> None:
    now = ctx.clock()
    assert take(ctx, "holder", now - 3600)
    ctx.queue.join(target_queue_key(ctx), "first", at=now - 3000, name="first.csv", now=now)
    first = sync_start.begin_sync(ctx, request("first", now - 3000))
    assert isinstance(first, sync_start.Queued)
    assert first.wait_seconds == sync_start.MAX_QUEUE_WAIT_SECONDS  # waited long: once a minute, unless woken
    behind = [sync_start.begin_sync(ctx, request(f"w{n}", now - 100 + n)) for n in range(20)]
    waits = [queued.wait_seconds for queued in behind if isinstance(queued, sync_start.Queued)]
    assert len(waits) == 20
    assert all(0.6 * sync_start.MAX_PARK_SECONDS <= wait <= sync_start.MAX_PARK_SECONDS for wait in waits), waits
    assert len(set(waits)) > 10  # spread, so that files staged together do not ask together
    # ... but never past the moment it must stop waiting
    late = sync_start.begin_sync(
        ctx, request("late", now - 50, loop_started_at=now + 100 - max_queue_wait(ctx.settings))
    )
    assert isinstance(late, sync_start.Queued)
    assert late.wait_seconds == 100


def test_a_start_whose_turn_does_not_come_in_time_is_closed_saying_so_and_its_file_stays_staged(
    sim: Simulation, ctx: SyncContext
) -> None:
    now = ctx.clock()
    assert take(ctx, "holder", now - 7 * 3600)
    started = now - max_queue_wait(ctx.settings)  # its loop started this long ago: its import would not fit any more
    ctx.queue.join(target_queue_key(ctx), "late", at=started, name="late.csv", now=now)
    sync_start.await_turn(ctx, request("late", started), "token-of-late")
    assert woken(ctx) == ["token-of-late"]  # parked past its deadline: asks again at once, to be closed
    assert sync_start.begin_sync(ctx, request("late", started)) is None
    _at, status, message = sim.finals["late"]
    assert status == "ERROR"
    assert message.startswith("late.csv was not imported: its turn did not come within 4 h 25 min (by ")
    assert "holder.csv was still ahead of it" in message
    assert "Nothing was imported from it; the file stays staged" in message
    assert sim.deleted_objects == []
    assert ctx.queue.next_in_line(target_queue_key(ctx), now + 7 * 3600) is None  # it left the queue


def test_a_file_beyond_the_most_that_may_wait_is_closed_saying_so(
    sim: Simulation, ctx: SyncContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target_queue, "MAX_WAITING", 2)
    monkeypatch.setattr(sync_start, "MAX_WAITING", 2)
    now = ctx.clock()
    assert take(ctx, "holder", now - 30)
    for number in (1, 2, 3):  # the triggers join; the third finds the queue full
        ctx.queue.join(target_queue_key(ctx), f"w{number}", at=now - 20 + number, name=f"w{number}.csv", now=now)
    assert isinstance(sync_start.begin_sync(ctx, request("w2", now - 18)), sync_start.Queued)
    assert sync_start.begin_sync(ctx, request("w3", now - 17)) is None
    _at, status, message = sim.finals["w3"]
    assert status == "ERROR"
    assert message.startswith("w3.csv was not imported: 2 files are already waiting for ChartHop here")
    assert "the file stays staged" in message


def five_second_settle(ctx: SyncContext) -> SyncContext:
    """The context with QueueSettleSeconds of 5 s (2 s by default, the simulation's 1 s)."""
    return dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, queue_settle_seconds=5.0))


def slow_progress_updates(ctx: SyncContext, seconds: float) -> SyncContext:
    """The context whose progress updates each take `seconds` on its clock (ChartHop slow; a client retry)."""
    reporter = ctx.reporter

    class SlowReporter:
        def __getattr__(self, name: str) -> Any:
            return getattr(reporter, name)

        def report_progress(self, sync_id: str, progress: float, message: str) -> None:
            ctx.clock.now += seconds  # type: ignore[attr-defined]
            reporter.report_progress(sync_id, progress, message)

    return dataclasses.replace(ctx, reporter=SlowReporter())


def staged_in(sim: Simulation, sync_id: str) -> None:
    """The file of `request(sync_id, ...)`, staged in the simulation's S3."""
    sim._s3.objects[(f"staging/{ORG}/{sync_id}.csv", "v1")] = b"Employee ID\nE1\n"


def test_a_fresh_file_waits_out_the_settle_time_in_its_start_showing_why(sim: Simulation, ctx: SyncContext) -> None:
    """QueueSettleSeconds of 5 s: a file staged 0.5 s ago gets no turn for 4.5 s more, even with nobody
    ahead. Its start says so (the sync shows RUNNING) and waits it out in the Lambda (seconds of a Lambda cost
    less than a park: two invocations and three state transitions), then imports."""
    ctx = five_second_settle(ctx)
    assert ctx.settings.queue_settle_seconds == 5.0
    now = ctx.clock()
    staged_in(sim, "fresh")
    ctx.queue.join(target_queue_key(ctx), "fresh", at=now - 0.5, name="fresh.csv", now=now)
    started = sync_start.begin_sync(ctx, request("fresh", now - 0.5))
    assert not isinstance(started, sync_start.Queued), started
    assert ctx.clock() == pytest.approx(now + 4.5)
    assert [entry.name for entry in sim.imports] == ["fresh.csv"]
    [(_at, _sync, progress, message)] = [entry for entry in sim.progress if entry[1] == "fresh"][:1]
    assert progress < QUEUED_PROGRESS  # a "queued behind" message after it would still be shown
    assert message.startswith("fresh.csv starts in a few seconds: files staged just before it go first")


def test_a_slow_settle_message_is_part_of_the_settle_wait_not_added_to_it(sim: Simulation, ctx: SyncContext) -> None:
    """Showing "starts in a few seconds" takes 3 s (ChartHop is slow; a client retry): the start then sleeps only
    what is left of the settle time, so the file starts when it would have, not 3 s later."""
    ctx = five_second_settle(ctx)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        ctx.clock.now += seconds  # type: ignore[attr-defined]

    slow = dataclasses.replace(slow_progress_updates(ctx, 3.0), sleep=sleep)
    now = ctx.clock()
    staged_in(sim, "fresh")
    ctx.queue.join(target_queue_key(ctx), "fresh", at=now - 0.5, name="fresh.csv", now=now)
    started = sync_start.begin_sync(slow, request("fresh", now - 0.5))
    assert not isinstance(started, sync_start.Queued), started
    assert slept[0] == pytest.approx(1.5)  # 4.5 s of settle time left, 3 of them spent showing it
    assert [entry.name for entry in sim.imports] == ["fresh.csv"]


def test_a_long_settle_parks_only_what_is_left_after_a_slow_settle_message(sim: Simulation, ctx: SyncContext) -> None:
    """As in the Lambda's sleep, the park of a settle longer than SETTLE_SLEEP_SECONDS counts the update's time."""
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, queue_settle_seconds=60.0))
    now = ctx.clock()
    staged_in(sim, "fresh")
    ctx.queue.join(target_queue_key(ctx), "fresh", at=now - 0.5, name="fresh.csv", now=now)
    queued = sync_start.begin_sync(slow_progress_updates(ctx, 3.0), request("fresh", now - 0.5))
    assert queued == sync_start.Queued("", 57, settling=True)  # 59.5 s left, 3 of them spent showing it


def test_a_long_settle_time_is_waited_out_parked_and_the_park_does_not_wake_it_at_once(
    sim: Simulation, ctx: SyncContext
) -> None:
    """A settle time longer than SETTLE_SLEEP_SECONDS is waited out in WaitForTurn: no Lambda runs meanwhile, and
    the park does not wake it at once although it is first in line (it would only come back to be parked
    again, a Lambda round trip after another, until the settle time is over)."""
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, queue_settle_seconds=60.0))
    now = ctx.clock()
    staged_in(sim, "fresh")
    ctx.queue.join(target_queue_key(ctx), "fresh", at=now - 0.5, name="fresh.csv", now=now)
    queued = sync_start.begin_sync(ctx, request("fresh", now - 0.5))
    assert queued == sync_start.Queued("", 60, settling=True)
    assert ctx.clock() == now  # no sleep in the Lambda
    sync_start.await_turn(ctx, request("fresh", now - 0.5), "token-of-fresh", settling=True)
    assert woken(ctx) == []  # first in line, but settling: its wait's timeout brings it back
    ctx.clock.now = now + 59.5  # type: ignore[attr-defined]
    assert not isinstance(sync_start.begin_sync(ctx, request("fresh", now - 0.5)), sync_start.Queued)
    assert ctx.clock() == pytest.approx(now + 60)  # the half second left, in the Lambda
    assert [entry.name for entry in sim.imports] == ["fresh.csv"]


def test_a_file_queued_in_its_settle_time_whose_wake_came_before_it_parked_is_woken_by_its_park(
    ctx: SyncContext,
) -> None:
    """Parked first, looked second, also in the settle time: N (staged 0.5 s ago) is queued behind E (a wait of
    minutes); E is closed before N parks (E's wake finds no token). N's park must look and wake it, or the idle
    target waits minutes for N's wait to run out. (Review finding: the look was skipped while N settled.)"""
    ctx = five_second_settle(ctx)
    now = ctx.clock()
    key = target_queue_key(ctx)
    ctx.queue.join(key, "E", at=now - 10, name="E.csv", now=now - 9)
    queued = sync_start.begin_sync(ctx, request("N", now - 0.5))
    assert isinstance(queued, sync_start.Queued)
    assert (queued.ahead, queued.settling) == ("E.csv", False)
    assert queued.wait_seconds > 60
    close(ctx, "E")
    sync_start.await_turn(ctx, request("N", now - 0.5), "token-of-N", settling=queued.settling)
    assert woken(ctx) == ["token-of-N"]


def test_an_earlier_staged_file_whose_trigger_is_seconds_late_still_goes_first(
    sim: Simulation, ctx: SyncContext
) -> None:
    """Two files staged half a second apart; the earlier one's trigger joins the queue 3 s after staging (its S3
    event came late, or opening its sync in ChartHop was slow), while the later file's start waits out its
    settle time. With a settle time of 1 s the later file took the free turn before the earlier one had joined;
    within QueueSettleSeconds (5 s here) it waits for it."""
    ctx = five_second_settle(ctx)
    t0 = ctx.clock()
    key = target_queue_key(ctx)
    staged_in(sim, "later")
    ctx.queue.join(key, "later", at=t0 + 0.5, name="later.csv", now=t0 + 0.6)

    def settle(seconds: float) -> None:  # the earlier file's late trigger comes in meanwhile
        ctx.clock.now = t0 + 3.0  # type: ignore[attr-defined]
        ctx.queue.join(key, "earlier", at=t0, name="earlier.csv", now=t0 + 3.0)
        ctx.clock.now = t0 + 1.6 + seconds  # type: ignore[attr-defined]

    ctx.clock.now = t0 + 1.6  # type: ignore[attr-defined]
    asked = sync_start.begin_sync(dataclasses.replace(ctx, sleep=settle), request("later", t0 + 0.5))
    assert isinstance(asked, sync_start.Queued), "the later file took the turn before the earlier one could join"
    assert asked.ahead == "earlier.csv"
    assert sim.imports == []
    assert take(ctx, "earlier", t0)


def test_a_turn_kept_by_a_closed_sync_is_freed_by_the_next_in_line(
    sim: Simulation, ctx: SyncContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder's sync was closed but freeing its turn failed (each try of the owner-conditional delete threw):
    the next file used to wait until the turn expired (ImportTimeoutSeconds + 25 min). Its start sees that the
    holder is closed and frees the turn, as the close would have, and takes it."""
    now = ctx.clock()
    assert take(ctx, "holder", now - 30)
    ctx.queue.join(target_queue_key(ctx), "next", at=now - 10, name="next.csv", now=now)

    def unavailable(key: str, sync_id: str) -> None:
        raise RuntimeError("DynamoDB unavailable")

    with monkeypatch.context() as failing:
        failing.setattr(ctx.queue, "leave", unavailable)
        close(ctx, "holder")
    assert ctx.loop_memory.load("holder").closed_at is not None
    assert ctx.queue.next_in_line(target_queue_key(ctx), ctx.clock()) is None  # the closed sync still holds it
    turn = ctx.queue.take_turn(
        target_queue_key(ctx), "next", at=now - 10, name="next.csv", now=ctx.clock(), hold_seconds=HOLD
    )
    assert (turn.granted, turn.holder_id) == (False, "holder")
    staged_in(sim, "next")
    asked = sync_start.begin_sync(ctx, request("next", now - 10))
    assert not isinstance(asked, sync_start.Queued), f"the next file still waits behind a closed sync: {asked}"
    assert [entry.name for entry in sim.imports] == ["next.csv"]
    assert ctx.queue.take_turn(
        target_queue_key(ctx), "next", at=now - 10, name="next.csv", now=ctx.clock(), hold_seconds=HOLD
    ).granted  # it holds the turn


def test_a_closed_sync_still_waiting_ahead_is_removed_by_the_file_behind_it(
    sim: Simulation, ctx: SyncContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiting file's sync was closed (refused, given up) but every try to leave the queue failed: it stays first
    in line with the turn free, never takes it, and is woken in vain when a turn is freed. The files behind it used
    to wait until its entry went stale (15 min), and every "Sync Now" meanwhile was refused. The next file's ask
    sees it closed, removes it and takes the turn."""
    now = ctx.clock()
    key = target_queue_key(ctx)
    for sync_id, at in (("gone", now - 30), ("next", now - 10), ("last", now - 5)):
        ctx.queue.join(key, sync_id, at=at, name=f"{sync_id}.csv", now=now)
    _close_failing_to_leave(ctx, monkeypatch, "gone")
    assert ctx.queue.next_in_line(key, ctx.clock()) == "gone"  # closed, yet first in line
    staged_in(sim, "next")
    asked = sync_start.begin_sync(ctx, request("next", now - 10))
    assert not isinstance(asked, sync_start.Queued), f"the next file still waits behind a closed sync: {asked}"
    assert [entry.name for entry in sim.imports] == ["next.csv"]
    assert ctx.queue.next_in_line(key, ctx.clock()) is None  # "next" holds the turn; "gone" is no longer queued
    turn = ctx.queue.take_turn(key, "last", at=now - 5, name="last.csv", now=ctx.clock(), hold_seconds=HOLD)
    assert (turn.granted, turn.ahead, turn.ahead_count) == (False, "next.csv", 1)


def _close_failing_to_leave(ctx: SyncContext, monkeypatch: pytest.MonkeyPatch, sync_id: str) -> None:
    """Closes the sync while every try to leave the queue fails (DynamoDB unavailable): it stays queued, closed."""

    def unavailable(key: str, sync_id: str) -> None:
        raise RuntimeError("DynamoDB unavailable")

    with monkeypatch.context() as failing:
        failing.setattr(ctx.queue, "leave", unavailable)
        close(ctx, sync_id)
    assert ctx.loop_memory.load(sync_id).closed_at is not None


def test_closing_the_holder_wakes_the_file_behind_a_closed_sync_still_first_in_line(
    ctx: SyncContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wake used to go to the closed sync first in line (its loop is over: woken in vain), and the file behind
    it asked again only when its own wait ran out, minutes later, with the target idle. (Review finding.)"""
    now = ctx.clock()
    key = target_queue_key(ctx)
    assert take(ctx, "holder", now - 30)
    ctx.queue.join(key, "gone", at=now - 20, name="gone.csv", now=now)
    sync_start.await_turn(ctx, request("gone", now - 20), "token-of-gone")
    ctx.queue.join(key, "next", at=now - 10, name="next.csv", now=now)
    sync_start.await_turn(ctx, request("next", now - 10), "token-of-next")
    _close_failing_to_leave(ctx, monkeypatch, "gone")
    close(ctx, "holder")
    assert woken(ctx) == ["token-of-next"]
    assert ctx.queue.next_in_line(key, ctx.clock()) == "next"


def _holder_gone_and_next(ctx: SyncContext) -> float:
    """holder.csv holds the turn; gone.csv, then next.csv, wait. Returns the time they were queued at."""
    now = ctx.clock()
    key = target_queue_key(ctx)
    assert take(ctx, "holder", now - 30)
    ctx.queue.join(key, "gone", at=now - 20, name="gone.csv", now=now)
    ctx.queue.join(key, "next", at=now - 10, name="next.csv", now=now)
    return now


def test_a_closed_holder_and_a_closed_sync_waiting_ahead_are_both_passed(
    sim: Simulation, ctx: SyncContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One outage, two closes that could not free what they held: the holder's turn and a waiting entry ahead. The
    file behind them used to wait behind the holder until the waiting entry went stale (15 min; the closed holder
    is only freed for the file first in line). (Review finding.)"""
    now = _holder_gone_and_next(ctx)
    _close_failing_to_leave(ctx, monkeypatch, "gone")
    _close_failing_to_leave(ctx, monkeypatch, "holder")
    staged_in(sim, "next")
    asked = sync_start.begin_sync(ctx, request("next", now - 10))
    assert not isinstance(asked, sync_start.Queued), f"the next file still waits behind closed syncs: {asked}"
    assert [entry.name for entry in sim.imports] == ["next.csv"]


def test_a_closed_sync_ahead_that_cannot_be_removed_now_leaves_the_ask_queued_not_failed(
    sim: Simulation, ctx: SyncContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing someone else's entry is best effort: when the table fails (the very outage that left it there) the
    ask goes on and the file waits, asking again later; its start does not fail (it would be closed ERROR)."""
    now = ctx.clock()
    key = target_queue_key(ctx)
    ctx.queue.join(key, "gone", at=now - 20, name="gone.csv", now=now)
    ctx.queue.join(key, "next", at=now - 10, name="next.csv", now=now)
    _close_failing_to_leave(ctx, monkeypatch, "gone")

    def unavailable(key: str, sync_id: str) -> None:
        raise RuntimeError("DynamoDB unavailable")

    monkeypatch.setattr(ctx.queue, "leave", unavailable)
    asked = sync_start.begin_sync(ctx, request("next", now - 10))
    assert asked == sync_start.Queued("gone.csv", asked.wait_seconds)  # type: ignore[union-attr]
    monkeypatch.undo()
    staged_in(sim, "next")
    assert not isinstance(sync_start.begin_sync(ctx, request("next", now - 10)), sync_start.Queued)
    assert [entry.name for entry in sim.imports] == ["next.csv"]


def test_a_file_far_back_in_the_queue_asks_without_looking_at_the_syncs_ahead(
    sim: Simulation, ctx: SyncContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a flood most files wait far back: their ask stays one read of the queue (those near the front see to a
    closed sync ahead), while a file near the front looks whether the holder is closed."""
    now = ctx.clock()
    key = target_queue_key(ctx)
    assert take(ctx, "holder", now - 60)
    for number in range(1, 7):
        ctx.queue.join(key, f"file-{number}", at=now - 50 + number, name=f"file-{number}.csv", now=now)
    looked: list[str] = []
    load = ctx.loop_memory.load

    def counted(sync_id: str) -> Any:
        looked.append(sync_id)
        return load(sync_id)

    monkeypatch.setattr(ctx.loop_memory, "load", counted)
    assert isinstance(sync_start.begin_sync(ctx, request("file-6", now - 44)), sync_start.Queued)
    assert [sync for sync in looked if sync != "file-6"] == []
    assert isinstance(sync_start.begin_sync(ctx, request("file-2", now - 48)), sync_start.Queued)
    assert [sync for sync in looked if sync not in ("file-2", "file-6")] == ["holder"]


def test_a_sync_ahead_whose_loop_memory_cannot_be_read_counts_as_open_and_the_ask_goes_on(
    sim: Simulation, ctx: SyncContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking whether the holder or the file ahead is closed is best effort too: a throttled read leaves the file
    queued (it asks again), it does not fail its start. (Review finding.)"""
    now = _holder_gone_and_next(ctx)
    _close_failing_to_leave(ctx, monkeypatch, "holder")
    load = ctx.loop_memory.load

    def throttled(sync_id: str) -> Any:
        if sync_id != "next":
            raise RuntimeError("ProvisionedThroughputExceededException")
        return load(sync_id)

    monkeypatch.setattr(ctx.loop_memory, "load", throttled)
    asked = sync_start.begin_sync(ctx, request("next", now - 10))
    assert asked == sync_start.Queued("holder.csv", asked.wait_seconds)  # type: ignore[union-attr]


def test_a_live_file_waiting_ahead_is_not_removed(sim: Simulation, ctx: SyncContext) -> None:
    """The one ahead is only slow to take the free turn (its start was woken and is on its way): it keeps its place."""
    now = ctx.clock()
    key = target_queue_key(ctx)
    ctx.queue.join(key, "first", at=now - 30, name="first.csv", now=now)
    ctx.queue.join(key, "next", at=now - 10, name="next.csv", now=now)
    asked = sync_start.begin_sync(ctx, request("next", now - 10))
    assert asked == sync_start.Queued("first.csv", asked.wait_seconds)  # type: ignore[union-attr]
    assert ctx.queue.next_in_line(key, ctx.clock()) == "first"
    assert sim.imports == []


def test_a_turn_held_by_a_live_sync_is_not_taken_over(sim: Simulation, ctx: SyncContext) -> None:
    now = ctx.clock()
    assert take(ctx, "holder", now - 30)
    ctx.queue.join(target_queue_key(ctx), "next", at=now - 10, name="next.csv", now=now)
    asked = sync_start.begin_sync(ctx, request("next", now - 10))
    assert asked == sync_start.Queued("holder.csv", asked.wait_seconds)  # type: ignore[union-attr]
