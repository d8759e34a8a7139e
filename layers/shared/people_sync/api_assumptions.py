"""Every fact about the target APIs that is *assumed* rather than taken from a published spec.

Facts marked (found) in `shared/reference/README.md` live next to the code that uses them; anything we
had to guess lives here, in one place, so that correcting a guess is a one-line change. The ChartHop
emulator imports this module too, so the app and the emulator can never disagree about a guess.
"""

from __future__ import annotations

from typing import Any

# --- ChartHop -------------------------------------------------------------------------------------

#: (assumption) Progress is a fraction 0..1 (the seed says so; the spec only says "percent progress").
CHARTHOP_PROGRESS_MIN = 0.0
CHARTHOP_PROGRESS_MAX = 1.0

#: (assumption) The `type` value of a ChartHop Process created by importDataCsv and of a sync process
#: this app creates itself when a file is dropped without "Sync Now" (the spec leaves `type` free text).
CHARTHOP_IMPORT_PROCESS_TYPE = "import"
CHARTHOP_SYNC_PROCESS_TYPE = "sync"

#: (assumption) ChartHop answers rate limiting with 429, with or without a Retry-After header
#: (seconds). Without the header we fall back to our own capped exponential backoff.
CHARTHOP_RATE_LIMIT_STATUS = 429

#: (assumption) A missing process answers 404 (the spec lists only 400/401/403).
CHARTHOP_NOT_FOUND_STATUS = 404

#: (assumption) updateProcess answers 200 with the updated Process (the spec documents no 2xx body);
#: the client does not depend on the body.

#: (assumption) Statuses that end a process. `DONE_WITH_ERRORS` appears only as a findProcesses
#: filter in the spec; we treat it as terminal success-with-errors in case getProcess returns it.
CHARTHOP_TERMINAL_STATUSES = frozenset({"DONE", "ERROR", "DONE_WITH_ERRORS"})
CHARTHOP_FAILED_STATUSES = frozenset({"ERROR"})

#: (assumption) Keys in an import Process's `results` object. The spec says only "results summary";
#: we read these keys when present and report what we find.
CHARTHOP_RESULT_COUNT_KEYS = ("rows", "created", "updated", "unchanged", "errors")

# The webhook envelope fields are (found) in ChartHop's Event schema: id, orgId, userId, type,
# entityType, entityId, at, payload, code, subtype; deliveries add appId/appName/userName.
#: (assumption) How a "Sync Now" press is spelled in a delivery. The seed names the subscription
#: `process.create.{appname}`; the Event schema has `type` (enum, e.g. CREATE), `entityType`
#: (e.g. PROCESS) and `code` (e.g. "job.update"). We accept every plausible spelling.


def is_sync_now_event(event: dict[str, Any], app_name: str) -> bool:
    """True when a webhook delivery means "the user pressed Sync Now for this app"."""
    wanted = f"process.create.{app_name}".lower()
    event_type = str(event.get("type") or "").lower()
    code = str(event.get("code") or "").lower()
    if wanted in (event_type, code):
        return True
    is_process_create = str(event.get("entityType") or "").upper() == "PROCESS" and (
        event_type == "create" or code == "process.create"
    )
    named_app = {str(event.get("appName") or "").lower(), str(event.get("subtype") or "").lower()}
    return is_process_create and app_name.lower() in named_app


def sync_now_event(
    *,
    event_id: str,
    org_id: str,
    app_id: str,
    app_name: str,
    user_id: str,
    user_name: str,
    process: dict[str, Any],
    at: str,
) -> dict[str, Any]:
    """The delivery the emulator sends for a "Sync Now" press (the canonical spelling we assume)."""
    return {
        "id": event_id,
        "orgId": org_id,
        "userId": user_id,
        "userName": user_name,
        "appId": app_id,
        "appName": app_name,
        "type": f"process.create.{app_name}",
        "subtype": None,
        "entityType": "PROCESS",
        "entityId": process["id"],
        "matchFilters": [f"process.create.{app_name}"],
        "at": at,
        "payload": process,
    }


# --- Orgvue ---------------------------------------------------------------------------------------
# (Orgvue's guesses go here: job-status path and values, job-ticket fields, result-location format.)


# --- ELMA365 --------------------------------------------------------------------------------------
# (ELMA365's guesses go here: upload/import/status paths, field names, status values.)
