"""The invariants I1-I5 of issue 11, checked on a snapshot of what a schedule left behind.

The checkers read only records the app cannot tamper with: the emulators' processes, update history and
imports, the further targets' progress log lines, the bucket and the sync table. Each staged file carries a
unique marker and a unique row count, so an import is traced to the object version it came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("DONE", "ERROR")


@dataclass
class StagedVersion:
    target: str
    key: str
    version_id: str
    marker: str
    rows: int
    bad: bool
    #: The sync id of a further target's sync (deterministic, see further_sync_id).
    sync_id: str | None = None


@dataclass
class PressRecord:
    """A "Sync Now" press: its process, the event ChartHop delivered, and whether the webhook took it (2xx)."""

    process_id: str
    event: dict[str, Any]
    handed: bool


@dataclass(frozen=True)
class Violation:
    invariant: str  # "I1" .. "I5"
    message: str

    @property
    def kind(self) -> str:
        """The violation's class, for the campaign's statistics (the message without its ids)."""
        return f"{self.invariant} {self.message.split(':', 1)[0]}"


@dataclass
class Observed:
    versions: list[StagedVersion]
    presses: list[PressRecord]
    processes: dict[str, dict[str, Any]]
    #: (process id, body) of every updateProcess ChartHop applied, in order.
    updates: list[tuple[str, dict[str, Any]]]
    #: (rows, parent sync process id) of every import ChartHop started.
    charthop_imports: list[tuple[int, str | None]]
    #: The content each Orgvue import read.
    orgvue_imports: list[str]
    #: Rows of the file each ELMA365 import started with.
    elma_imports: list[int | None]
    #: The further targets' progress log lines: message, sync_id, progress, status, text.
    log_events: list[dict[str, Any]]
    failed_objects: dict[str, bytes]
    #: Current version id of each staged key still there.
    staged_current: dict[str, str]
    #: Slot and Sync Now lock items still held (owner set, not expired).
    locks: list[dict[str, Any]]
    app_user_id: str
    #: False when the stack still ran at the deadline (import timeout + grace).
    settled: bool
    faulty: bool = True
    notes: list[str] = field(default_factory=list)


def further_sync_id(target: str, name: str, source: str, version_id: str | None) -> str:
    """The id LogProgressReporter.start_sync gives a further target's sync (sha256 of source#version)."""
    digest = hashlib.sha256(f"{source}#{version_id}".encode()).hexdigest()[:24]
    return f"{target}-{digest}"


def check_all(seen: Observed) -> list[Violation]:
    return [*check_i1(seen), *check_i2(seen), *check_i3(seen), *check_i4(seen), *check_i5(seen)]


def _imports_of(seen: Observed, version: StagedVersion) -> list[str | None]:
    """The imports of a version: for ChartHop the sync each ran under, elsewhere None per import."""
    if version.target == "charthop":
        return [parent for rows, parent in seen.charthop_imports if rows == version.rows]
    if version.target == "orgvue":
        return [None for content in seen.orgvue_imports if f"{version.marker}-" in content]
    return [None for rows in seen.elma_imports if rows == version.rows]


def check_i1(seen: Observed) -> list[Violation]:
    """Each staged version reaches its target at most once (a "Sync Now" re-import is its own sync); with
    no fault at all, exactly once."""
    found: list[Violation] = []
    pressed = {press.process_id for press in seen.presses}
    for version in seen.versions:
        imports = _imports_of(seen, version)
        by_upload = [parent for parent in imports if parent not in pressed]
        if len(by_upload) > 1:
            found.append(Violation("I1", f"version imported more than once: {version.key} {len(by_upload)} times"))
        if not seen.faulty and not version.bad and seen.settled and len(by_upload) != 1:
            found.append(Violation("I1", f"no fault, yet not imported exactly once: {version.key} {len(by_upload)}"))
    per_sync: dict[str, int] = {}
    for _rows, parent in seen.charthop_imports:
        if parent is not None:
            per_sync[parent] = per_sync.get(parent, 0) + 1
    for sync_id, count in per_sync.items():
        if count > 1:
            found.append(Violation("I1", f"one sync started several imports: {sync_id} {count}"))
    return found


def _app_syncs(seen: Observed) -> list[dict[str, Any]]:
    """ChartHop sync processes the app created (uploads) or was handed (a 2xx to the webhook)."""
    handed = {press.process_id for press in seen.presses if press.handed}
    return [
        process
        for process in seen.processes.values()
        if not process.get("parentProcessId") and (process["id"] in handed or process["runUserId"] == seen.app_user_id)
    ]


def _further_events(seen: Observed) -> dict[str, list[dict[str, Any]]]:
    events: dict[str, list[dict[str, Any]]] = {}
    for event in seen.log_events:
        if event["sync_id"]:
            events.setdefault(str(event["sync_id"]), []).append(event)
    return events


def check_i2(seen: Observed) -> list[Violation]:
    """Every sync ends DONE or ERROR within the import timeout plus the grace."""
    found: list[Violation] = []
    why = "nothing left running to close it" if seen.settled else "still open at import timeout + grace"
    for process in _app_syncs(seen):
        if process["status"] not in TERMINAL:
            found.append(
                Violation(
                    "I2", f"sync never closed ({why}): {process['id']} {process['status']} {process.get('message')!r}"
                )
            )
    for sync_id, events in _further_events(seen).items():
        if not any(event["message"] == "sync finished" for event in events):
            last = events[-1]
            found.append(Violation("I2", f"sync never closed ({why}): {sync_id} last {last['message']!r}"))
    return found


def check_i3(seen: Observed) -> list[Violation]:
    """The bar never moves backwards; nothing is written to a sync after its final status."""
    found: list[Violation] = []
    history: dict[str, list[dict[str, Any]]] = {}
    for process_id, body in seen.updates:
        history.setdefault(process_id, []).append(body)
    for process_id, bodies in history.items():
        shown = 0.0
        final: dict[str, Any] | None = None
        for body in bodies:
            if final is not None:
                if body != final:  # the same final PATCH again (a retried answer) changes nothing
                    found.append(
                        Violation(
                            "I3",
                            f"write after the final status: {process_id} {final.get('status')} then {_brief(body)}",
                        )
                    )
                continue
            progress = body.get("progress")
            if isinstance(progress, int | float):
                if progress < shown - 1e-9:
                    found.append(Violation("I3", f"bar moved backwards: {process_id} {shown} -> {progress}"))
                shown = max(shown, float(progress))
            if body.get("status") in TERMINAL:
                final = body
    for sync_id, events in _further_events(seen).items():
        shown, closed = 0.0, False
        for event in events:
            if event["message"] not in ("sync progress", "sync finished"):
                continue
            if closed:
                found.append(Violation("I3", f"write after the final status: {sync_id} {event['message']}"))
                continue
            if event["message"] == "sync finished":
                closed = True
            elif isinstance(event["progress"], int | float):
                if event["progress"] < shown - 1e-9:
                    found.append(Violation("I3", f"bar moved backwards: {sync_id} {shown} -> {event['progress']}"))
                shown = max(shown, float(event["progress"]))
    return found


def _brief(body: dict[str, Any]) -> str:
    return str({key: body[key] for key in ("status", "progress") if key in body})


def _explaining_sync(seen: Observed, version: StagedVersion) -> str | None:
    """The closed ERROR sync that tells the user why this version is still staged, if any."""
    if version.target == "charthop":
        for process in seen.processes.values():
            if (process.get("options") or {}).get("versionId") == version.version_id and process["status"] == "ERROR":
                return str(process["id"])
        return None
    finals = [
        event
        for event in _further_events(seen).get(version.sync_id or "", [])
        if event["message"] == "sync finished" and event["status"] == "ERROR"
    ]
    return version.sync_id if finals else None


def check_i4(seen: Observed) -> list[Violation]:
    """No staged file is lost: imported, or in failed/ with its report, or still staged with a sync that
    says why."""
    found: list[Violation] = []
    for version in seen.versions:
        if _imports_of(seen, version):
            continue
        name = version.key.rsplit("/", 1)[-1]  # unique per schedule; failed/ keeps it after a time prefix
        copies = [key for key in seen.failed_objects if not key.endswith(".report.json") and key.endswith(name)]
        if copies:
            if not any(f"{key}.report.json" in seen.failed_objects for key in copies):
                found.append(Violation("I4", f"in failed/ without a report: {version.key} {copies}"))
            continue
        if seen.staged_current.get(version.key) == version.version_id:
            if _explaining_sync(seen, version) is None:
                found.append(Violation("I4", f"still staged, no closed sync says why: {version.key}"))
            continue
        found.append(Violation("I4", f"file lost (not imported, not in failed/, not staged): {version.key}"))
    return found


def check_i5(seen: Observed) -> list[Violation]:
    """Every slot and lock is freed once everything is closed."""
    if not seen.settled:
        return []  # something still runs and may hold a slot legitimately; I2 reports it
    return [Violation("I5", f"lock still held: {lock.get('id')} owner {lock.get('owner')}") for lock in seen.locks]
