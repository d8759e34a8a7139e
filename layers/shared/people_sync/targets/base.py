"""The small interface every import target implements (ChartHop now; Orgvue and ELMA365 next)."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, Protocol

from people_sync.models import ImportStatus, StagedFile

OpenBody = Callable[[], tuple[IO[bytes], int]]


class ImportTarget(Protocol):
    """Starts an asynchronous import of a staged file and reports where it is."""

    name: str

    def start_import(self, staged: StagedFile, open_body: OpenBody, *, sync_id: str) -> str:
        """Uploads the file, starts the import and returns the target's import id."""
        ...

    def import_status(self, import_id: str) -> ImportStatus:
        """The import's state, normalised (pending/running/done/failed, progress 0..1)."""
        ...


class ProgressReporter(Protocol):
    """Where a sync's progress is shown to people (ChartHop's "Sync Now" progress bar)."""

    def report_progress(self, sync_id: str, progress: float, message: str) -> None: ...

    def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None: ...
