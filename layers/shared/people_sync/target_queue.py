"""One import at a time per target, in staging order.

Five files staged for one org in the same second must not become five concurrent imports whose last one
to finish wins: files for one target (a ChartHop org, an Orgvue dataset, an ELMA365 app) are imported one
after another, in the order they were staged. Each sync's start takes its turn in the target's queue: the
earliest-staged waiting sync gets the turn when nobody holds it; the others wait ("queued behind
roster-1.csv") and ask again. The turn is held until the sync is closed, and expires on its own (a holder
that died cannot block the target for ever); a waiting entry that stops asking is passed over.

One DynamoDB item per target (`queue#<target key>`) in the sync table: `holder`, `holderName`,
`holderUntil`, and a map `waiting` of sync id -> {at, name, seen}.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from people_sync.sync_table import SyncTableStore, condition_failed
from people_sync.targets.base import instance_key

if TYPE_CHECKING:
    from people_sync.config import AppSettings

#: A waiting sync that has not asked for this long is passed over (it asks every few seconds:
#: AppSettings.queue_wait_seconds).
STALE_AFTER_SECONDS = 120
#: A file gets a free turn only this long after it was staged: a file staged just before it, whose event is
#: still on its way, joins the queue first (the triggers join at once, before the loop starts).
SETTLE_SECONDS = 1.0
RECORD_TTL_SECONDS = 2 * 24 * 3600


@dataclass(frozen=True)
class Turn:
    granted: bool
    #: Who is ahead (the file being imported, or the earliest waiting), when not granted.
    ahead: str = ""
    #: When nobody is ahead but the file was staged only just now: ask again after this many seconds.
    settling: float = 0.0


def queue_key(target: str, settings: AppSettings, folder: str) -> str:
    """What one import at a time is counted per: the ChartHop org, the Orgvue dataset, the ELMA365 app.

    A further target's key names the dataset or app itself (instance, then tenant/dataset or namespace/code,
    from the sync context's settings, which carry the org's own Orgvue and ELMA365 settings), never the org:
    two orgs that point at one dataset or app share its queue, since the one-at-a-time rule is the dataset's
    (two imports into one Orgvue dataset race; an ELMA365 app runs one import at a time, and a chunked import
    must not have another's chunks slip in between), while two orgs' look-alike apps on different instances
    (both `hr/employees`) never share one by accident."""
    if target == "orgvue":
        where = instance_key(settings.orgvue_base_url)
        return f"queue#orgvue#{where}/{settings.orgvue_tenant_id}/{settings.orgvue_dataset_id}"
    if target == "elma365":
        where = instance_key(settings.elma365_base_url)
        return f"queue#elma365#{where}/{settings.elma365_namespace}/{settings.elma365_code}"
    return f"queue#{target}#{folder}"


def first_in_line(waiting: dict[str, dict[str, Any]], now: float) -> tuple[str, dict[str, Any]] | None:
    live = [(sync_id, entry) for sync_id, entry in waiting.items() if entry["seen"] >= now - STALE_AFTER_SECONDS]
    if not live:
        return None
    return min(live, key=lambda item: (item[1]["at"], item[1]["name"], item[0]))


def decide(sync_id: str, at: float, waiting: dict[str, dict[str, Any]], holder: str | None, now: float) -> Turn:
    """Whether `sync_id` may take a free turn (holder None), or who it waits for."""
    if holder is not None:
        return Turn(False, holder)
    first = first_in_line(waiting, now)
    if first is not None and first[0] != sync_id:
        return Turn(False, first[1]["name"])
    if now - at < SETTLE_SECONDS:
        return Turn(False, settling=SETTLE_SECONDS - (now - at))
    return Turn(True)


class TargetQueue(Protocol):
    def join(self, key: str, sync_id: str, *, at: float, name: str, now: float) -> None:
        """Waits in the queue from the moment the file is known (the trigger), so that a file staged later
        cannot take the turn before it."""
        ...

    def take_turn(self, key: str, sync_id: str, *, at: float, name: str, now: float, hold_seconds: float) -> Turn:
        """Joins (or stays in) the queue; granted when nobody holds the target and this sync is the
        earliest-staged one waiting. A holder asking again keeps its turn."""
        ...

    def leave(self, key: str, sync_id: str) -> None:
        """The sync is closed: it leaves the queue and frees the turn if it held it."""
        ...


class InMemoryTargetQueue:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def join(self, key: str, sync_id: str, *, at: float, name: str, now: float) -> None:
        with self._lock:
            item = self.items.setdefault(key, {"waiting": {}})
            if item.get("holder") != sync_id:
                item["waiting"][sync_id] = {"at": at, "name": name, "seen": now}

    def take_turn(self, key: str, sync_id: str, *, at: float, name: str, now: float, hold_seconds: float) -> Turn:
        with self._lock:
            item = self.items.setdefault(key, {"waiting": {}})
            if item.get("holder") == sync_id:
                return Turn(True)
            item["waiting"][sync_id] = {"at": at, "name": name, "seen": now}
            held = item.get("holder") is not None and item.get("holderUntil", 0) >= now
            turn = decide(sync_id, at, item["waiting"], item["holderName"] if held else None, now)
            if turn.granted:
                del item["waiting"][sync_id]
                item.update(holder=sync_id, holderName=name, holderUntil=now + hold_seconds)
            return turn

    def leave(self, key: str, sync_id: str) -> None:
        with self._lock:
            item = self.items.get(key)
            if item is None:
                return
            item["waiting"].pop(sync_id, None)
            if item.get("holder") == sync_id:
                for field in ("holder", "holderName", "holderUntil"):
                    item.pop(field, None)


class DynamoDBTargetQueue(SyncTableStore):
    def join(self, key: str, sync_id: str, *, at: float, name: str, now: float) -> None:
        entry = {"at": at, "name": name, "seen": now}
        self._update(key, "SET waiting = if_not_exists(waiting, :empty)", {":empty": {"M": {}}})
        self._update(key, "SET waiting.#me = :entry", {":entry": {"S": json.dumps(entry)}}, names={"#me": sync_id})

    def take_turn(self, key: str, sync_id: str, *, at: float, name: str, now: float, hold_seconds: float) -> Turn:
        item = self.get(key)
        if item.get("holder", {}).get("S") == sync_id:
            return Turn(True)
        self.join(key, sync_id, at=at, name=name, now=now)
        waiting = {
            other: json.loads(value["S"]) for other, value in self.get(key).get("waiting", {}).get("M", {}).items()
        }
        held = "holder" in item and float(item.get("holderUntil", {}).get("N", "0")) >= now
        turn = decide(sync_id, at, waiting, item.get("holderName", {}).get("S", "") if held else None, now)
        if not turn.granted:
            return turn
        try:
            self._update(
                key,
                "SET holder = :me, holderName = :name, holderUntil = :until REMOVE waiting.#me",
                {
                    ":me": {"S": sync_id},
                    ":name": {"S": name},
                    ":until": {"N": repr(now + hold_seconds)},
                    ":now": {"N": repr(now)},
                },
                names={"#me": sync_id},
                condition="attribute_not_exists(holder) OR holderUntil < :now OR holder = :me",
            )
        except ClientError as error:
            if condition_failed(error):
                return Turn(False, self.get(key).get("holderName", {}).get("S", ""))
            raise
        return Turn(True)

    def leave(self, key: str, sync_id: str) -> None:
        item = self.get(key)
        if sync_id in item.get("waiting", {}).get("M", {}):
            self._update(key, "REMOVE waiting.#me", {}, names={"#me": sync_id}, expiration=False)
        if item.get("holder", {}).get("S") != sync_id:
            return
        try:
            self._update(
                key,
                "REMOVE holder, holderName, holderUntil",
                {":me": {"S": sync_id}},
                condition="holder = :me",
                expiration=False,
            )
        except ClientError as error:
            if not condition_failed(error):
                raise

    def _update(
        self,
        key: str,
        expression: str,
        values: dict[str, Any],
        *,
        names: dict[str, str] | None = None,
        condition: str | None = None,
        expiration: bool = True,
    ) -> None:
        if expiration:
            verb, _, rest = expression.partition(" ")
            expression = f"{verb} expiration = :expiration, {rest}" if verb == "SET" else expression
            values = {**values, ":expiration": {"N": str(int(time.time()) + RECORD_TTL_SECONDS)}}
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"id": {"S": key}},
            "UpdateExpression": expression,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if condition:
            kwargs["ConditionExpression"] = condition
        self.client.update_item(**kwargs)
