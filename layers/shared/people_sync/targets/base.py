"""The small interface every import target implements (ChartHop, Orgvue, ELMA365).

A target takes a staged file through an asynchronous bulk import: `start_import` uploads it and starts
the import, `import_status` says where the import is. Whatever a target must remember between two
checks (an ELMA365 chunk number, an Orgvue result location, a callback that arrived) lives in the
`ImportJob` it returns: the status loop carries that object in the state machine's data, so targets
stay stateless and every Lambda container can continue any sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from people_sync.models import ImportJob, ImportStatus, StagedFile

#: Opens the staged file for reading: (stream, size in bytes). Each call opens it afresh (a target that
#: imports in chunks reads it again for each chunk); the stream runs the pre-flight CSV checks as it is read.
OpenBody = Callable[[], tuple[IO[bytes], int]]


class ImportTarget(Protocol):
    """Starts an asynchronous import of a staged file and reports where it is."""

    #: Short name used in routing, logs, metrics and messages ("charthop", "orgvue", "elma365").
    name: str
    #: Name shown to people in progress messages ("ChartHop", "Orgvue", "ELMA365").
    display_name: str
    #: True when the target calls a URL of ours when its import finishes (Orgvue); the status loop
    #: then waits for that call between checks instead of relying on polling alone.
    calls_back: bool
    #: The fewest seconds the target wants between two status checks (ELMA365: once a second).
    min_check_interval_seconds: int

    def start_import(
        self, staged: StagedFile, open_body: OpenBody, *, sync_id: str, callback_url: str | None = None
    ) -> ImportJob:
        """Uploads the file, starts the import and returns what the loop needs to follow it.

        `callback_url` is set only for targets that call back: a URL template whose query the target
        completes (Orgvue's `{{jobStatus}}` placeholders are appended by the target itself).
        Raises CsvRejected (pre-flight checks, from the stream), TargetRejected (4xx: the file or the
        request is wrong, retrying will not help) or TargetUnavailable (transient, after retries).
        """
        ...

    def import_status(self, job: ImportJob, open_body: OpenBody) -> tuple[ImportStatus, ImportJob]:
        """The import's state, normalised (pending/running/done/failed, progress 0..1), and the job to
        carry to the next check (the same one, or an updated one: a next chunk started, a retry of a
        start the target refused as busy). Raises TargetUnavailable when the target cannot be reached."""
        ...

    def abandon(self, job: ImportJob) -> None:
        """The loop gives up on this import (it timed out, or the loop failed): free what the target
        holds for it (ELMA365's per-app import slot), so the next sync is not kept waiting."""
        ...


class ProgressReporter(Protocol):
    """Where a sync's progress is shown to people (ChartHop's "Sync Now" progress bar, or the logs)."""

    def start_sync(self, name: str, source: str, version_id: str | None) -> str:
        """Opens a sync for a file that arrived without "Sync Now"; returns its id."""
        ...

    def is_closed(self, sync_id: str) -> bool:
        """Whether the sync already shows DONE or ERROR (the watchdog closes only open ones)."""
        ...

    def report_progress(self, sync_id: str, progress: float, message: str) -> None: ...

    def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None: ...


def instance_key(base_url: str) -> str:
    """A target instance as part of a key (a queue's, a slot's): its base URL's host (lower case, with its port)
    and path, so two companies' ELMA365 apps both called hr/employees, or datasets of two Orgvue hosts, never
    share one by accident, while two orgs that really point at one dataset or app do."""
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return f"{host}{parts.path.rstrip('/')}" if host else base_url.strip().rstrip("/").lower()


__all__ = ["ImportJob", "ImportTarget", "OpenBody", "ProgressReporter", "instance_key"]
