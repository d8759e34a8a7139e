"""Import slots: exclusive, expiring ownership; the same semantics in memory and in DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from people_sync.slots import DynamoDBSlots, ImportSlots, InMemorySlots
from tests.fakes import FakeClock

KEY = "slot#elma365#hr/employees"
TABLE = "people-sync-idempotency"


@pytest.fixture
def clock() -> FakeClock:
    """Epoch seconds, as slot expiry times are (the shared fixture starts at 1000.0)."""
    return FakeClock(1_700_000_000.0)


@pytest.fixture(params=["memory", "dynamodb"])
def slots(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[ImportSlots]:
    if request.param == "memory":
        yield InMemorySlots(clock)
        return
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoDBSlots(TABLE, client, clock=clock)


def test_free_slot_is_taken_and_then_refused_to_others(slots: ImportSlots) -> None:
    assert slots.acquire(KEY, "sync-a", 600)
    assert not slots.acquire(KEY, "sync-b", 600)
    assert slots.acquire("slot#elma365#hr/contracts", "sync-b", 600)  # another app is another slot


def test_owner_acquiring_again_refreshes_the_expiry(slots: ImportSlots, clock: FakeClock) -> None:
    assert slots.acquire(KEY, "sync-a", 600)
    clock.advance(500)
    assert slots.acquire(KEY, "sync-a", 600)  # now held until 1100 s after the start
    clock.advance(500)
    assert not slots.acquire(KEY, "sync-b", 600)
    clock.advance(101)
    assert slots.acquire(KEY, "sync-b", 600)


def test_expired_slot_goes_to_the_next_owner(slots: ImportSlots, clock: FakeClock) -> None:
    assert slots.acquire(KEY, "sync-a", 60)
    clock.advance(59)
    assert not slots.acquire(KEY, "sync-b", 60)
    clock.advance(1)
    assert slots.acquire(KEY, "sync-b", 60)
    assert not slots.acquire(KEY, "sync-a", 60)


def test_only_the_owner_releases(slots: ImportSlots) -> None:
    assert slots.acquire(KEY, "sync-a", 600)
    slots.release(KEY, "sync-b")
    assert not slots.acquire(KEY, "sync-b", 600)
    slots.release(KEY, "sync-a")
    assert slots.acquire(KEY, "sync-b", 600)
    slots.release("slot#never-taken", "sync-a")  # releasing a free slot is harmless


def test_dynamodb_item_has_the_idempotency_table_schema(clock: FakeClock) -> None:
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        slots = DynamoDBSlots(TABLE, client, clock=clock)
        assert slots.acquire(KEY, "sync-a", 600)
        item = client.get_item(TableName=TABLE, Key={"id": {"S": KEY}})["Item"]
        assert item["owner"] == {"S": "sync-a"}
        assert int(item["expiration"]["N"]) == int(clock.now) + 600
        slots.release(KEY, "sync-a")
        assert "Item" not in client.get_item(TableName=TABLE, Key={"id": {"S": KEY}})


def test_dynamodb_errors_other_than_a_failed_condition_are_raised(clock: FakeClock) -> None:
    with mock_aws():
        slots = DynamoDBSlots("no-such-table", boto3.client("dynamodb"), clock=clock)
        with pytest.raises(ClientError, match="ResourceNotFound"):
            slots.acquire(KEY, "sync-a", 600)


def test_take_over_only_from_the_stale_holder(slots: ImportSlots) -> None:
    assert slots.acquire("sync-now#org", "old", 3600)
    assert not slots.take_over("sync-now#org", "someone-else", "new", 60)
    assert slots.holder("sync-now#org") == "old"
    assert slots.take_over("sync-now#org", "old", "new", 60)
    assert slots.holder("sync-now#org") == "new"
    assert not slots.take_over("sync-now#org", "old", "third", 60)  # the stale holder is gone: too late
    assert slots.take_over("free#org", "old", "new", 60)  # a free slot may be taken
