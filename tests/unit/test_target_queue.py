"""One import at a time per target, in staging order (issue 11, item 10): the queue's rules, on both stores."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from people_sync import target_queue
from people_sync.target_queue import (
    ENTRY_BYTES,
    FORGOTTEN_AFTER_SECONDS,
    HEARTBEAT_SECONDS,
    MAX_WAITING,
    SETTLE_SECONDS,
    STALE_AFTER_SECONDS,
    DynamoDBTargetQueue,
    InMemoryTargetQueue,
    TargetQueue,
    entry_json,
)

KEY = "queue#charthop#org"
EXAMPLES = itertools.count()
HOLD = 600


@pytest.fixture(params=["memory", "dynamodb"])
def queue(request: pytest.FixtureRequest) -> Iterator[TargetQueue]:
    if request.param == "memory":
        yield InMemoryTargetQueue()
        return
    with dynamodb_queue() as queue:
        yield queue


@contextmanager
def dynamodb_queue() -> Iterator[DynamoDBTargetQueue]:
    """The DynamoDB queue on a fresh sync table (moto); its client is `queue.client`."""
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="sync",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoDBTargetQueue("sync", client)


def ask(queue: TargetQueue, sync_id: str, at: float, now: float) -> bool:
    return queue.take_turn(KEY, sync_id, at=at, name=f"{sync_id}.csv", now=now, hold_seconds=HOLD).granted


def test_a_file_waiting_for_a_holder_is_told_its_sync_id(queue: TargetQueue) -> None:
    """So that the next in line can see whether the holder's sync is closed (sync_start frees such a turn)."""
    assert ask(queue, "holder", at=1.0, now=11.0)
    turn = queue.take_turn(KEY, "next", at=2.0, name="next.csv", now=12.0, hold_seconds=HOLD)
    assert (turn.granted, turn.first, turn.ahead, turn.holder_id) == (False, True, "holder.csv", "holder")
    queue.leave(KEY, "holder")
    turn = queue.take_turn(KEY, "next", at=2.0, name="next.csv", now=13.0, hold_seconds=HOLD)
    assert (turn.granted, turn.holder_id) == (True, "")


def test_a_file_waiting_behind_waiting_files_is_told_the_first_ones_sync_id(queue: TargetQueue) -> None:
    """So that it can see whether that sync is closed (sync_start removes such an entry); the earliest-staged live
    one is named, with a holder or without, and not when it is first itself."""
    queue.join(KEY, "late", at=3.0, name="late.csv", now=10.0)
    queue.join(KEY, "early", at=1.0, name="early.csv", now=10.0)
    turn = queue.take_turn(KEY, "next", at=5.0, name="next.csv", now=12.0, hold_seconds=HOLD)
    assert (turn.granted, turn.ahead, turn.ahead_id, turn.holder_id) == (False, "early.csv", "early", "")
    assert ask(queue, "early", at=1.0, now=13.0)
    turn = queue.take_turn(KEY, "next", at=5.0, name="next.csv", now=14.0, hold_seconds=HOLD)
    assert (turn.ahead, turn.ahead_id, turn.holder_id, turn.ahead_count) == ("early.csv", "late", "early", 2)
    turn = queue.take_turn(KEY, "late", at=3.0, name="late.csv", now=14.0, hold_seconds=HOLD)
    assert (turn.first, turn.ahead_id, turn.holder_id) == (True, "", "early")


def test_a_file_refused_its_turn_still_names_the_holders_sync_id(queue: TargetQueue) -> None:
    """A refusal (deadline passed, queue full) says who holds the turn as an ordinary wait does: a "Sync Now" refused
    then says the file "is being imported", and a closed holder can still be seen as closed. (Review finding.)"""
    assert ask(queue, "holder", at=1.0, now=11.0)
    turn = queue.take_turn(KEY, "late", at=2.0, name="late.csv", now=20.0, hold_seconds=HOLD, deadline=15.0)
    assert (turn.granted, turn.expired, turn.ahead, turn.holder_id) == (False, True, "holder.csv", "holder")


def test_files_get_their_turn_in_staging_order_whatever_order_they_ask_in(queue: TargetQueue) -> None:
    assert ask(queue, "roster-2", at=2.0, now=11.0) is True  # alone: its turn
    assert ask(queue, "roster-1", at=1.0, now=11.0) is False  # the target is busy
    turn = queue.take_turn(KEY, "roster-5", at=5.0, name="roster-5.csv", now=11.0, hold_seconds=HOLD)
    assert (turn.granted, turn.ahead) == (False, "roster-2.csv")  # says what it waits for
    queue.leave(KEY, "roster-2")  # closed
    assert ask(queue, "roster-5", at=5.0, now=12.0) is False  # roster-1 was staged earlier
    assert ask(queue, "roster-1", at=1.0, now=12.0) is True
    assert ask(queue, "roster-1", at=1.0, now=13.0) is True  # asking again keeps the turn
    queue.leave(KEY, "roster-1")
    assert ask(queue, "roster-5", at=5.0, now=14.0) is True


def test_a_holder_that_died_loses_its_turn_when_it_expires(queue: TargetQueue) -> None:
    assert ask(queue, "dead", at=-10.0, now=0.0)
    assert not ask(queue, "next", at=-5.0, now=HOLD - 1)
    assert ask(queue, "next", at=-5.0, now=HOLD + 1)


def test_a_waiting_sync_that_stopped_asking_is_passed_over(queue: TargetQueue) -> None:
    assert ask(queue, "holder", at=-30.0, now=0.0)
    assert not ask(queue, "gone", at=-20.0, now=1.0)  # waits, then its execution dies without leaving
    queue.leave(KEY, "holder")
    assert not ask(queue, "later", at=-10.0, now=2.0)  # "gone" is still first in line
    assert ask(queue, "later", at=-10.0, now=2.0 + STALE_AFTER_SECONDS + 1)


def test_leaving_without_having_asked_is_harmless(queue: TargetQueue) -> None:
    queue.leave(KEY, "nobody")
    assert ask(queue, "first", at=-10.0, now=1.0)


def test_a_file_staged_a_moment_ago_lets_an_earlier_one_join_first(queue: TargetQueue) -> None:
    """The later file's loop asks before the earlier file's trigger ran: it waits out the settle time, and the
    earlier file, joining meanwhile, goes first."""
    turn = queue.take_turn(KEY, "later", at=10.0, name="later.csv", now=10.2, hold_seconds=HOLD)
    assert (turn.granted, turn.ahead) == (False, "")
    assert turn.settling == pytest.approx(SETTLE_SECONDS - 0.2)
    queue.join(KEY, "earlier", at=9.9, name="earlier.csv", now=10.5)
    assert queue.take_turn(KEY, "later", at=10.0, name="later.csv", now=12.0, hold_seconds=HOLD).ahead == "earlier.csv"
    assert ask(queue, "earlier", at=9.9, now=12.0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["ask", "ask", "ask", "leave"]), st.integers(min_value=0, max_value=4)),
        min_size=1,
        max_size=40,
    )
)
def test_one_holder_at_a_time_and_turns_go_in_staging_order(queue: TargetQueue, steps: list[tuple[str, int]]) -> None:
    """Whatever the syncs do, at most one holds the target, and each turn goes to the earliest-staged of those
    waiting (staged at = their number; they keep asking, so none is stale)."""
    key = f"queue#charthop#{next(EXAMPLES)}"  # a fresh queue per example (an id() is reused once freed)
    holder: str | None = None
    waiting: set[int] = set()
    done: set[int] = set()
    for now, (action, number) in enumerate(steps):
        sync_id = f"s{number}"
        if number in done:
            continue
        if action == "leave":
            queue.leave(key, sync_id)
            waiting.discard(number)
            done.add(number)
            holder = None if holder == sync_id else holder
            continue
        granted = queue.take_turn(
            key, sync_id, at=float(number) - 100, name=sync_id, now=float(now), hold_seconds=HOLD
        ).granted
        if holder == sync_id:
            assert granted
            continue
        waiting.add(number)
        if granted:
            assert holder is None, f"{sync_id} got the turn while {holder} held it"
            assert number == min(waiting), f"{sync_id} went before s{min(waiting)}"
            holder = sync_id
            waiting.discard(number)


# --- hundreds of files for one target (issue 13) -----------------------------------------------------------------


def test_past_its_deadline_a_waiting_file_is_not_given_the_turn_but_a_holder_keeps_it(queue: TargetQueue) -> None:
    assert ask(queue, "holder", at=0.0, now=10.0)
    assert not ask(queue, "waiting", at=1.0, now=10.0)
    queue.leave(KEY, "holder")
    late = queue.take_turn(KEY, "waiting", at=1.0, name="waiting.csv", now=20.0, hold_seconds=HOLD, deadline=20.0)
    assert (late.granted, late.expired) == (False, True)
    queue.leave(KEY, "waiting")  # its sync is closed, saying why
    # a holder asking again past its deadline (its start task retried) keeps the turn it has
    assert queue.take_turn(KEY, "next", at=2.0, name="next.csv", now=21.0, hold_seconds=HOLD).granted
    assert queue.take_turn(KEY, "next", at=2.0, name="next.csv", now=30.0, hold_seconds=HOLD, deadline=25.0).granted


def test_a_full_queue_refuses_one_more_file_until_one_leaves(
    queue: TargetQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target_queue, "MAX_WAITING", 3)
    assert ask(queue, "holder", at=0.0, now=10.0)
    assert all(queue.join(KEY, f"w{n}", at=float(n), name=f"w{n}.csv", now=10.0) for n in (1, 2, 3))
    assert not queue.join(KEY, "w4", at=4.0, name="w4.csv", now=10.0)
    refused = queue.take_turn(KEY, "w4", at=4.0, name="w4.csv", now=11.0, hold_seconds=HOLD)
    assert (refused.granted, refused.full, refused.ahead, refused.ahead_count) == (False, True, "holder.csv", 4)
    # those already waiting stay (renewing their entry is not joining anew)
    renewed = queue.take_turn(KEY, "w3", at=3.0, name="w3.csv", now=11.0 + HEARTBEAT_SECONDS, hold_seconds=HOLD)
    assert (renewed.granted, renewed.full) == (False, False)
    queue.leave(KEY, "w1")
    assert queue.join(KEY, "w4", at=4.0, name="w4.csv", now=12.0)


def test_entries_no_loop_can_renew_are_removed_and_do_not_count_against_the_most_that_may_wait(
    queue: TargetQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries left behind (a leave that failed 3 times, a trigger whose loop never started, a retried trigger's
    re-join) used to be passed over but never removed, and `size(waiting) < :max` counted them: once MAX_WAITING
    piled up (every write renews the item's TTL), every new file was refused. Older than any loop can run, they
    are removed by the next join or ask (more than one conditional batch of them here)."""
    from people_sync.sync_service import LOOP_TIME_LIMIT_SECONDS

    assert FORGOTTEN_AFTER_SECONDS >= LOOP_TIME_LIMIT_SECONDS  # no loop still runs that could renew one
    monkeypatch.setattr(target_queue, "MAX_WAITING", 60)  # more than one PRUNE_BATCH
    t0 = 1_000_000.0
    for n in range(target_queue.MAX_WAITING):
        assert queue.join(KEY, f"dead-{n}", at=t0 + n / 1000, name=f"f{n}.csv", now=t0)
    assert not queue.join(KEY, "one-more", at=t0 + 1, name="one-more.csv", now=t0 + 60)  # full while they may live
    later = t0 + FORGOTTEN_AFTER_SECONDS + 3600  # every one of those loops ended long ago
    assert queue.next_in_line(KEY, later) is None  # all passed over ...
    turn = queue.take_turn(KEY, "new", at=later - 5, name="new.csv", now=later, hold_seconds=HOLD, deadline=later + 60)
    assert not turn.full, "a new file was refused: the queue was 'full' of entries nobody will ever renew"
    assert turn.granted
    # ... and they are gone: the queue holds the new file's turn and room for MAX_WAITING more
    assert all(
        queue.join(KEY, f"w{n}", at=later + n, name=f"w{n}.csv", now=later + 1) for n in range(target_queue.MAX_WAITING)
    )


def test_a_forgotten_entry_renewed_meanwhile_is_not_removed() -> None:
    """Two writers prune at once, or one renews what another is about to prune: each removal is conditional on
    the entry as read, so a renewed entry stays and the rest converge."""
    with dynamodb_queue() as queue:
        queue.join(KEY, "old", at=1.0, name="old.csv", now=1.0)
        later = 1.0 + FORGOTTEN_AFTER_SECONDS + 1
        as_read = queue.get(KEY)
        queue.join(KEY, "old", at=1.0, name="old.csv", now=later)  # renewed after the pruner's read
        assert queue._prune(KEY, as_read, later)  # its conditional write finds it changed: nothing removed
        assert "old" in queue.get(KEY)["waiting"]["M"]
        assert queue.next_in_line(KEY, later) == "old"


def test_the_queue_item_stays_under_dynamodbs_item_limit_at_the_most_files_that_may_wait() -> None:
    """A full queue: MAX_WAITING entries, each under the longest sync id (ELMA365's, 32 characters; 40 here)
    and a file name that JSON escapes at length (S3 keys may hold up to 1,024 bytes)."""
    nasty = '"\\' * 400 + "é" * 300 + "\x01" * 100
    entry = entry_json(1_700_000_000.123456, nasty, 1_700_000_000.654321)
    assert len(entry.encode()) <= ENTRY_BYTES
    item_bytes = MAX_WAITING * (40 + ENTRY_BYTES + 3) + 4 * 1024  # + the holder's name, keys and the rest
    assert item_bytes < 400 * 1024


def test_the_next_in_line_is_the_earliest_waiting_file_once_the_turn_is_free(queue: TargetQueue) -> None:
    assert queue.next_in_line(KEY, 10.0) is None  # nobody waits
    assert ask(queue, "holder", at=0.0, now=10.0)
    queue.join(KEY, "second", at=2.0, name="second.csv", now=10.0)
    queue.join(KEY, "first", at=1.0, name="first.csv", now=10.0)
    assert queue.next_in_line(KEY, 11.0) is None  # the holder has it
    queue.leave(KEY, "holder")
    assert queue.next_in_line(KEY, 12.0) == "first"
    queue.park(KEY, "first", "token-1")
    queue.park(KEY, "first", "token-2")  # parked again: the newest token
    assert queue.parked_token(KEY, "first") == "token-2"
    assert queue.parked_token(KEY, "second") is None


def test_an_ask_while_waiting_is_one_read_and_writes_only_to_stay_in_the_queue() -> None:
    """Every ask used to read the queue item twice and rewrite it twice (DynamoDB bills a write by the item's
    size): with hundreds of files waiting, hundreds of rewrites of a large item a minute, on one partition."""
    with dynamodb_queue() as queue:
        client = queue.client
        calls: list[str] = []
        client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
        assert queue.take_turn(KEY, "holder", at=0.0, name="holder.csv", now=10.0, hold_seconds=HOLD).granted
        assert queue.join(KEY, "waiting", at=1.0, name="waiting.csv", now=10.0)  # the trigger joins
        calls.clear()
        assert not queue.take_turn(KEY, "waiting", at=1.0, name="waiting.csv", now=20.0, hold_seconds=HOLD).granted
        assert calls == ["GetItem"]
        calls.clear()
        renewed = queue.take_turn(
            KEY, "waiting", at=1.0, name="waiting.csv", now=10.0 + HEARTBEAT_SECONDS, hold_seconds=HOLD
        )
        assert not renewed.granted
        assert calls == ["GetItem", "UpdateItem"]  # its entry renewed, so it is not passed over as stale
