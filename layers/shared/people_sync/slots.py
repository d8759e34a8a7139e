"""Named slots with an owner and an expiry: this app's own "one import at a time" per target app.

ELMA365 runs one import per app and answers `blocked` to a second start, but a sync that imports a file
in chunks must not let another sync slip an import in between its chunks. So a sync holds a slot for
the app (keyed e.g. `slot#elma365#<namespace>/<code>`) from its first chunk to its last. A slot expires
on its own, so a sync that dies cannot block the app for ever; the owner refreshes it while it works.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import boto3
from botocore.exceptions import ClientError

from people_sync.sync_table import condition_failed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Clock = Callable[[], float]


class ImportSlots(Protocol):
    """Exclusive, expiring ownership of a key."""

    def acquire(self, key: str, owner: str, ttl_seconds: int) -> bool:
        """True when the slot was free, expired, or already `owner`'s; it then belongs to `owner` until
        now + `ttl_seconds` (an owner calling again refreshes the expiry)."""
        ...

    def release(self, key: str, owner: str) -> None:
        """Frees the slot if `owner` holds it; a slot held by someone else is left alone."""
        ...

    def holder(self, key: str) -> str | None:
        """Who holds the slot now (None when free or expired)."""
        ...

    def take_over(self, key: str, stale_owner: str, owner: str, ttl_seconds: int) -> bool:
        """Gives the slot to `owner` if `stale_owner` still holds it (a holder known to be done, whose
        release failed); False when someone else got it meanwhile."""
        ...


class InMemorySlots:
    """Slots in a dict, for tests and single-process runs."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._slots: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, owner: str, ttl_seconds: int) -> bool:
        now = self.clock()
        with self._lock:
            held = self._slots.get(key)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self._slots[key] = (owner, now + ttl_seconds)
            return True

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            held = self._slots.get(key)
            if held is not None and held[0] == owner:
                del self._slots[key]

    def holder(self, key: str) -> str | None:
        """Who holds the slot now (None when free or expired)."""
        with self._lock:
            held = self._slots.get(key)
        return held[0] if held is not None and held[1] > self.clock() else None

    def take_over(self, key: str, stale_owner: str, owner: str, ttl_seconds: int) -> bool:
        with self._lock:
            held = self._slots.get(key)
            if held is not None and held[0] != stale_owner and held[1] > self.clock():
                return False
            self._slots[key] = (owner, self.clock() + ttl_seconds)
            return True


class DynamoDBSlots:
    """Slots as items of a table keyed by `id` (S) with a TTL attribute `expiration` (epoch seconds).

    The schema is the IdempotencyTable's, so the slots can share it. DynamoDB deletes expired items
    only eventually, so the conditions compare `expiration` with the time themselves.
    """

    def __init__(self, table_name: str, client: DynamoDBClient | None = None, *, clock: Clock = time.time) -> None:
        self.table_name = table_name
        self.client: DynamoDBClient = client or boto3.client("dynamodb")
        self.clock = clock

    def acquire(self, key: str, owner: str, ttl_seconds: int) -> bool:
        now = self.clock()
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    "id": {"S": key},
                    "owner": {"S": owner},
                    "expiration": {"N": str(int(now + ttl_seconds))},
                    "acquiredAt": {"N": str(int(now))},
                },
                ConditionExpression="attribute_not_exists(#id) OR #expiration <= :now OR #owner = :owner",
                ExpressionAttributeNames={"#id": "id", "#expiration": "expiration", "#owner": "owner"},
                ExpressionAttributeValues={":now": {"N": str(int(now))}, ":owner": {"S": owner}},
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def release(self, key: str, owner: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key={"id": {"S": key}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except ClientError as error:
            if not condition_failed(error):
                raise

    def holder(self, key: str) -> str | None:
        item = self.client.get_item(TableName=self.table_name, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")
        if item is None or float(item["expiration"]["N"]) <= self.clock():
            return None
        return str(item["owner"]["S"])

    def take_over(self, key: str, stale_owner: str, owner: str, ttl_seconds: int) -> bool:
        now = self.clock()
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    "id": {"S": key},
                    "owner": {"S": owner},
                    "expiration": {"N": str(int(now + ttl_seconds))},
                    "acquiredAt": {"N": str(int(now))},
                },
                ConditionExpression="attribute_not_exists(#id) OR #expiration <= :now OR #owner IN (:stale, :owner)",
                ExpressionAttributeNames={"#id": "id", "#expiration": "expiration", "#owner": "owner"},
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now))},
                    ":stale": {"S": stale_owner},
                    ":owner": {"S": owner},
                },
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True


__all__ = ["DynamoDBSlots", "ImportSlots", "InMemorySlots"]
