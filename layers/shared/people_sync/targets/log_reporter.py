"""Progress of syncs into targets other than ChartHop: structured log lines (CloudWatch) and metrics.

Orgvue and ELMA365 have no "Sync Now" progress bar of ours to drive, so a sync into them is reported
where an operator looks: one JSON log line per step, with the sync id, target, progress and message.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

logger = logging.getLogger("people_sync.progress")


class LogProgressReporter:
    def __init__(self, target: str) -> None:
        self.target = target
        self.closed: set[str] = set()

    def start_sync(self, name: str, source: str, version_id: str | None) -> str:
        """A deterministic id (the same object version is the same sync), short enough for an execution name."""
        digest = hashlib.sha256(f"{source}#{version_id}".encode()).hexdigest()[:24]
        sync_id = f"{self.target}-{digest}"
        logger.info("sync started", extra={"sync_id": sync_id, "target": self.target, "file": name, "source": source})
        return sync_id

    def is_closed(self, sync_id: str) -> bool:
        return sync_id in self.closed

    def report_progress(self, sync_id: str, progress: float, message: str) -> None:
        logger.info(
            "sync progress",
            extra={
                "sync_id": sync_id,
                "target": self.target,
                "progress": round(progress, 3),
                "progress_message": message,
            },
        )

    def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None:
        self.closed.add(sync_id)
        log = logger.info if succeeded else logger.error
        log(
            "sync finished",
            extra={
                "sync_id": sync_id,
                "target": self.target,
                "status": "DONE" if succeeded else "ERROR",
                "progress_message": message,
                "results": results,
            },
        )
