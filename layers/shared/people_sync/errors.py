"""Errors the domain raises; their class names are the `Error` values the state machine matches."""

from __future__ import annotations


class SyncError(Exception):
    """Base class: `user_message` is safe to show in ChartHop's progress message."""

    def __init__(self, user_message: str, *, detail: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.detail = detail


class TargetUnavailable(SyncError):
    """An import target kept failing transiently (429/5xx/timeout/reset) after our retries: try again later."""


class ImportMayHaveStarted(TargetUnavailable):
    """The request that starts an import failed ambiguously (5xx, timeout, reset after sending) and the target
    cannot be asked whether it took effect: it is never repeated, and the sync is closed saying so."""


class TargetRejected(SyncError):
    """An import target refused the request (4xx other than 429): retrying will not help."""

    def __init__(self, user_message: str, *, status: int, detail: str | None = None) -> None:
        super().__init__(user_message, detail=detail)
        self.status = status


class ChartHopUnavailable(TargetUnavailable):
    """ChartHop kept failing transiently (429/5xx/timeout/reset) after our retries: try again later."""


class ChartHopRejected(TargetRejected):
    """ChartHop refused the request (4xx other than 429): retrying will not help."""


class ChartHopTokenRefused(ChartHopRejected):
    """ChartHop refused the org's token (401) and no fresh one could be had (see org_tokens.py): nothing can be
    written to that org's ChartHop until an operator stores a working token (`orgs set-token`). `operation`
    says what was being done; the token itself is never in the error."""

    def __init__(self, user_message: str, *, operation: str, detail: str | None = None) -> None:
        super().__init__(user_message, status=401, detail=detail)
        self.operation = operation


class NoStagedFile(SyncError):
    """ "Sync Now" was pressed but nothing is staged for the org."""


class InvalidStagedFile(SyncError):
    """The staged object cannot be imported (wrong place, not a CSV, ...)."""


class TargetNotConfigured(SyncError):
    """A file was routed to a target this deployment has no settings or token for."""

    #: The code of the refused file's report.
    code = "target-not-configured"


class TargetNotEnabled(TargetNotConfigured):
    """A file was staged in an org's further-target folder, and the org's settings do not feed that target."""

    code = "target-not-enabled"


class OrgNotServed(SyncError):
    """The org is not one this deployment syncs for now (unknown, paused, uninstalled, without a token, or
    with refused settings); `reason` is org_registry.NotServed's reason, the message says why."""

    def __init__(self, org_id: str, reason: str, user_message: str) -> None:
        super().__init__(user_message)
        self.org_id = org_id
        self.reason = reason
