"""One import at a time per target, in staging order (issue 11, item 10): the queue's rules, on both stores."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from people_sync.target_queue import (
    SETTLE_SECONDS,
    STALE_AFTER_SECONDS,
    DynamoDBTargetQueue,
    InMemoryTargetQueue,
    TargetQueue,
)

KEY = "queue#charthop#org"
EXAMPLES = itertools.count()
HOLD = 600


@pytest.fixture(params=["memory", "dynamodb"])
def queue(request: pytest.FixtureRequest) -> Iterator[TargetQueue]:
    if request.param == "memory":
        yield InMemoryTargetQueue()
        return
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="sync",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoDBTargetQueue("sync", boto3.client("dynamodb"))


def ask(queue: TargetQueue, sync_id: str, at: float, now: float) -> bool:
    return queue.take_turn(KEY, sync_id, at=at, name=f"{sync_id}.csv", now=now, hold_seconds=HOLD).granted


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
