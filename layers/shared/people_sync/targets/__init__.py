"""Import targets: platforms that take a staged file through an asynchronous bulk import."""

from people_sync.targets.base import ImportJob, ImportTarget, OpenBody, ProgressReporter

__all__ = ["ImportJob", "ImportTarget", "OpenBody", "ProgressReporter"]
