"""Import targets: platforms that take a staged file through an asynchronous bulk import."""

from people_sync.targets.base import ImportTarget, ProgressReporter

__all__ = ["ImportTarget", "ProgressReporter"]
