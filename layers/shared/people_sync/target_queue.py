"""One import at a time per target, in staging order.

Five files staged for one org in the same second must not become five concurrent imports whose last one
to finish wins: files for one target (a ChartHop org, an Orgvue dataset, an ELMA365 app) are imported one
after another, in the order they were staged. Each sync's start takes its turn in the target's queue: the
earliest-staged waiting sync gets the turn when nobody holds it; the others wait ("queued behind
roster-1.csv"). The turn is held until the sync is closed, and expires on its own (a holder that died cannot
block the target for ever); a waiting entry that stops asking is passed over.

A waiting start does not poll: it parks its status loop on a task token (`park`) and is woken when the turn
may be its own (the sync that frees the turn wakes the one `next_in_line`); it asks again on its own only
after a wait that grows with its place in the queue, so a flood of hundreds of files costs a few reads and
writes a minute, not hundreds (see sync_start.begin_sync).

One DynamoDB item per target (`queue#<target key>`) in the sync table: `holder`, `holderName`,
`holderUntil`, and a map `waiting` of sync id -> {at, name, seen}, at most MAX_WAITING entries (an item is
at most 400 KB; an entry not renewed for FORGOTTEN_AFTER_SECONDS is removed by the next join or ask, so it does not
count); and one small item per parked start (`queue#<target key>#wake#<sync id>`: its task token).
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

#: A waiting sync that has not asked for this long is passed over (until it asks again: its place is its
#: staging time). A start asks at least every sync_start.MAX_PARK_SECONDS (5 minutes), and a throttled ask is
#: retried for up to about 6 minutes: its entry, renewed every HEARTBEAT_SECONDS, is at most ~14 minutes old.
STALE_AFTER_SECONDS = 900
#: A waiting entry's `seen` is rewritten only when it is this old: each write rewrites the whole queue item
#: (DynamoDB bills an update by the item's size), so a waiting start writes at most once in this long.
HEARTBEAT_SECONDS = 240
#: A file gets a free turn only `settle_seconds` after it was staged (the stack's QueueSettleSeconds,
#: AppSettings.queue_settle_seconds, 2 s by default; this when not given): a file staged just before it, whose
#: S3 event or trigger is slower (a trigger joins once it has opened the sync in ChartHop, before the loop
#: starts), joins the queue first. A file whose trigger joins later than that after staging may be imported
#: after a file staged after it (docs/reliability.md, Known gaps).
SETTLE_SECONDS = 1.0
#: Files that may wait for one target at once. One more is refused (its sync is closed saying so, the file
#: stays staged): the queue item stays below DynamoDB's 400 KB (an entry is at most ENTRY_BYTES plus its sync id).
MAX_WAITING = 1000
#: A waiting entry not renewed for this long belongs to a status loop that has ended (a live one asks at least every
#: few minutes, and no loop runs longer than the state machine's limit, sync_service.LOOP_TIME_LIMIT_SECONDS): the
#: next join or ask removes it, so entries nobody will renew never fill the queue. Were a live sync's entry removed
#: anyway, its next ask joins again in the same place (its place is its staging time).
FORGOTTEN_AFTER_SECONDS = 21600
#: Forgotten entries removed by one conditional write (DynamoDB limits an expression to 4 KB).
PRUNE_BATCH = 50
#: The most of a file name a waiting entry keeps (UTF-8 bytes; only shown, as "queued behind <name>").
NAME_BYTES = 100
#: The most a waiting entry's value takes (UTF-8 bytes of its JSON).
ENTRY_BYTES = 200
RECORD_TTL_SECONDS = 2 * 24 * 3600


@dataclass(frozen=True)
class Turn:
    granted: bool
    #: Who is ahead (the file being imported, or the earliest waiting), when not granted.
    ahead: str = ""
    #: When nobody is ahead but the file was staged only just now: ask again after this many seconds.
    settling: float = 0.0
    #: No other file waits ahead of this one (only the holder, if any): the turn is its next.
    first: bool = False
    #: How many files are ahead of this one (the holder and the earlier-staged waiting ones).
    ahead_count: int = 0
    #: MAX_WAITING files already wait and this one is not among them: it was not queued.
    full: bool = False
    #: Its deadline passed while it waited: it was not given the turn (see sync_start.turn_deadline).
    expired: bool = False
    #: The sync id of the live holder it waits for, if it waits for one.
    holder_id: str = ""
    #: The sync id of the earliest-staged live file waiting ahead of it, if any.
    ahead_id: str = ""


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


def short_name(name: str) -> str:
    """The file name as a waiting entry keeps it: at most NAME_BYTES of UTF-8, cut between characters."""
    return name.encode()[:NAME_BYTES].decode(errors="ignore")


def entry_json(at: float, name: str, now: float) -> str:
    """A waiting entry as stored: at most ENTRY_BYTES (a name that JSON escapes at length is cut further)."""
    kept = short_name(name)
    while True:
        text = json.dumps({"at": at, "name": kept, "seen": now}, ensure_ascii=False)
        if len(text.encode()) <= ENTRY_BYTES or not kept:
            return text
        kept = kept[: len(kept) // 2]


def _live(entry: dict[str, Any], now: float) -> bool:
    return float(entry["seen"]) >= now - STALE_AFTER_SECONDS


def _forgotten(entry: dict[str, Any], now: float) -> bool:
    return float(entry["seen"]) < now - FORGOTTEN_AFTER_SECONDS


def _prune(waiting: dict[str, dict[str, Any]], now: float) -> None:
    for sync_id in [other for other, entry in waiting.items() if _forgotten(entry, now)]:
        del waiting[sync_id]


def first_in_line(waiting: dict[str, dict[str, Any]], now: float) -> tuple[str, dict[str, Any]] | None:
    live = [(sync_id, entry) for sync_id, entry in waiting.items() if _live(entry, now)]
    if not live:
        return None
    return min(live, key=lambda item: (item[1]["at"], item[1]["name"], item[0]))


def decide(
    sync_id: str,
    at: float,
    waiting: dict[str, dict[str, Any]],
    holder: str | None,
    now: float,
    name: str = "",
    settle_seconds: float = SETTLE_SECONDS,
    holder_id: str = "",
) -> Turn:
    """Whether `sync_id` may take a free turn (holder None), or who it waits for and how many are ahead of it.
    One pass over the queue (no sorting)."""
    mine = (at, waiting[sync_id]["name"] if sync_id in waiting else name, sync_id)
    earlier, first, stale = 0, None, now - STALE_AFTER_SECONDS
    for other, entry in waiting.items():
        if entry["at"] > at or entry["seen"] < stale or other == sync_id:
            continue
        place = (entry["at"], entry["name"], other)
        if place < mine:
            earlier += 1
            first = place if first is None or place < first else first
    ahead_id = first[2] if first is not None else ""
    if holder is not None:
        return Turn(False, holder, first=earlier == 0, ahead_count=earlier + 1, holder_id=holder_id, ahead_id=ahead_id)
    if first is not None:
        return Turn(False, first[1], ahead_count=earlier, ahead_id=ahead_id)
    if now - at < settle_seconds:
        return Turn(False, settling=settle_seconds - (now - at), first=True)
    return Turn(True, first=True)


class TargetQueue(Protocol):
    def join(self, key: str, sync_id: str, *, at: float, name: str, now: float) -> bool:
        """Waits in the queue from the moment the file is known (the trigger), so that a file staged later
        cannot take the turn before it. False: MAX_WAITING files already wait (this one is not queued).
        Forgotten entries (not renewed for FORGOTTEN_AFTER_SECONDS) are removed first and never count."""
        ...

    def take_turn(
        self,
        key: str,
        sync_id: str,
        *,
        at: float,
        name: str,
        now: float,
        hold_seconds: float,
        deadline: float | None = None,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> Turn:
        """Joins (or stays in) the queue; granted when nobody holds the target and this sync is the
        earliest-staged one waiting, and it was staged at least `settle_seconds` ago. A holder asking again keeps
        its turn. Past `deadline` the turn is never given (expired), and a sync that cannot join is told the queue
        is full. Forgotten entries are removed as in `join`. Not granted behind a live holder: `holder_id` names
        the holder's sync."""
        ...

    def leave(self, key: str, sync_id: str) -> None:
        """The sync is closed: it leaves the queue and frees the turn if it held it."""
        ...

    def next_in_line(self, key: str, now: float) -> str | None:
        """The waiting sync whose turn it is now: None while a live holder has it (or nobody waits)."""
        ...

    def park(self, key: str, sync_id: str, task_token: str) -> None:
        """Keeps the task token the waiting sync's status loop waits on, for whoever frees the turn."""
        ...

    def parked_token(self, key: str, sync_id: str) -> str | None:
        """The task token `sync_id` last parked with (it may have run out since), if any."""
        ...


class InMemoryTargetQueue:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.tokens: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def join(self, key: str, sync_id: str, *, at: float, name: str, now: float) -> bool:
        with self._lock:
            return self._join(key, sync_id, at=at, name=name, now=now)

    def _join(self, key: str, sync_id: str, *, at: float, name: str, now: float) -> bool:
        item = self.items.setdefault(key, {"waiting": {}})
        if item.get("holder") == sync_id:
            return True
        _prune(item["waiting"], now)
        if sync_id not in item["waiting"] and len(item["waiting"]) >= MAX_WAITING:
            return False
        item["waiting"][sync_id] = json.loads(entry_json(at, name, now))
        return True

    def take_turn(
        self,
        key: str,
        sync_id: str,
        *,
        at: float,
        name: str,
        now: float,
        hold_seconds: float,
        deadline: float | None = None,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> Turn:
        with self._lock:
            item = self.items.setdefault(key, {"waiting": {}})
            if item.get("holder") == sync_id:
                return Turn(True)
            _prune(item["waiting"], now)
            held = item.get("holder") is not None and item.get("holderUntil", 0) >= now
            holder = item["holderName"] if held else None
            holder_id = str(item["holder"]) if held else ""
            if deadline is not None and now >= deadline:
                return _refused(
                    decide(sync_id, at, item["waiting"], holder, now, short_name(name), holder_id=holder_id),
                    expired=True,
                )
            mine = item["waiting"].get(sync_id)
            if (mine is None or now - mine["seen"] >= HEARTBEAT_SECONDS) and not self._join(
                key, sync_id, at=at, name=name, now=now
            ):
                return _refused(
                    decide(sync_id, at, item["waiting"], holder, now, short_name(name), holder_id=holder_id), full=True
                )
            turn = decide(sync_id, at, item["waiting"], holder, now, settle_seconds=settle_seconds, holder_id=holder_id)
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

    def next_in_line(self, key: str, now: float) -> str | None:
        with self._lock:
            item = self.items.get(key, {"waiting": {}})
            if item.get("holder") is not None and item.get("holderUntil", 0) >= now:
                return None
            first = first_in_line(item["waiting"], now)
            return first[0] if first is not None else None

    def park(self, key: str, sync_id: str, task_token: str) -> None:
        with self._lock:
            self.tokens[(key, sync_id)] = task_token

    def parked_token(self, key: str, sync_id: str) -> str | None:
        with self._lock:
            return self.tokens.get((key, sync_id))


def _refused(turn: Turn, *, full: bool = False, expired: bool = False) -> Turn:
    """Not granted, whatever the queue would have said: who is ahead, and why."""
    return Turn(
        False,
        turn.ahead,
        first=turn.first,
        ahead_count=turn.ahead_count,
        full=full,
        expired=expired,
        holder_id=turn.holder_id,
        ahead_id=turn.ahead_id,
    )


class DynamoDBTargetQueue(SyncTableStore):
    """An ask is one strongly consistent read of the queue item; it writes only to join, to renew its entry
    (every HEARTBEAT_SECONDS) and to take the turn."""

    def join(self, key: str, sync_id: str, *, at: float, name: str, now: float) -> bool:
        entry = entry_json(at, name, now)
        for _ in range(3):
            try:
                self._update(
                    key,
                    "SET waiting.#me = :entry",
                    {":entry": {"S": entry}, ":max": {"N": str(MAX_WAITING)}},
                    names={"#me": sync_id},
                    condition="attribute_exists(waiting) AND (attribute_exists(waiting.#me) OR size(waiting) < :max)",
                )
                return True
            except ClientError as error:
                if not condition_failed(error):
                    raise
            item = self.get(key)
            if "waiting" not in item:
                self._update(key, "SET waiting = if_not_exists(waiting, :empty)", {":empty": {"M": {}}})
            elif not self._prune(key, item, now):
                return False  # MAX_WAITING others wait already, none of them forgotten
        return False

    def _prune(self, key: str, item: dict[str, Any], now: float) -> bool:
        """Removes the forgotten entries of `item` (as read), each only if it is still exactly as read: an
        entry renewed since stays, and a write that finds one renewed or removed since leaves its batch to the
        next join or ask. False: none was forgotten."""
        raw = item.get("waiting", {}).get("M", {})
        old = [(other, value) for other, value in raw.items() if _forgotten(json.loads(value["S"]), now)]
        for start in range(0, len(old), PRUNE_BATCH):
            batch = old[start : start + PRUNE_BATCH]
            names = {f"#w{n}": other for n, (other, _) in enumerate(batch)}
            values = {f":w{n}": value for n, (_, value) in enumerate(batch)}
            try:
                self._update(
                    key,
                    "REMOVE " + ", ".join(f"waiting.#w{n}" for n in range(len(batch))),
                    values,
                    names=names,
                    condition=" AND ".join(f"waiting.#w{n} = :w{n}" for n in range(len(batch))),
                    expiration=False,
                )
            except ClientError as error:
                if not condition_failed(error):
                    raise
        return bool(old)

    def take_turn(
        self,
        key: str,
        sync_id: str,
        *,
        at: float,
        name: str,
        now: float,
        hold_seconds: float,
        deadline: float | None = None,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> Turn:
        item = self.get(key)
        if item.get("holder", {}).get("S") == sync_id:
            return Turn(True)
        self._prune(key, item, now)
        waiting = {other: entry for other, entry in _waiting(item).items() if not _forgotten(entry, now)}
        held = "holder" in item and float(item.get("holderUntil", {}).get("N", "0")) >= now
        holder = item.get("holderName", {}).get("S", "") if held else None
        holder_id = item.get("holder", {}).get("S", "") if held else ""
        if deadline is not None and now >= deadline:
            return _refused(
                decide(sync_id, at, waiting, holder, now, short_name(name), holder_id=holder_id), expired=True
            )
        mine = waiting.get(sync_id)
        if mine is None or now - float(mine["seen"]) >= HEARTBEAT_SECONDS:
            if not self.join(key, sync_id, at=at, name=name, now=now):
                return _refused(
                    decide(sync_id, at, waiting, holder, now, short_name(name), holder_id=holder_id), full=True
                )
            waiting[sync_id] = json.loads(entry_json(at, name, now))
        turn = decide(sync_id, at, waiting, holder, now, settle_seconds=settle_seconds, holder_id=holder_id)
        if turn.granted and mine is None:
            # It joined just now: a file staged before it may have joined since the read. Look once more.
            item = self.get(key)
            waiting = _waiting(item)
            held = "holder" in item and float(item.get("holderUntil", {}).get("N", "0")) >= now
            holder = item.get("holderName", {}).get("S", "") if held else None
            holder_id = item.get("holder", {}).get("S", "") if held else ""
            turn = decide(sync_id, at, waiting, holder, now, settle_seconds=settle_seconds, holder_id=holder_id)
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
                item = self.get(key)
                return Turn(
                    False,
                    item.get("holderName", {}).get("S", ""),
                    first=True,
                    ahead_count=1,
                    holder_id=item.get("holder", {}).get("S", ""),
                )
            raise
        return Turn(True, first=True)

    def next_in_line(self, key: str, now: float) -> str | None:
        item = self.get(key)
        if "holder" in item and float(item.get("holderUntil", {}).get("N", "0")) >= now:
            return None
        first = first_in_line(_waiting(item), now)
        return first[0] if first is not None else None

    def park(self, key: str, sync_id: str, task_token: str) -> None:
        self._update(_wake_key(key, sync_id), "SET taskToken = :token", {":token": {"S": task_token}})

    def parked_token(self, key: str, sync_id: str) -> str | None:
        token = self.get(_wake_key(key, sync_id)).get("taskToken", {}).get("S")
        return str(token) if token else None

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


def _waiting(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {other: json.loads(value["S"]) for other, value in item.get("waiting", {}).get("M", {}).items()}


def _wake_key(key: str, sync_id: str) -> str:
    return f"{key}#wake#{sync_id}"
