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
#: The app does not rely on the import's type: after an ambiguous import failure it looks for the import
#: by `parentProcessId` alone (the emulator's EmulatorConfig.import_process_type can spell it otherwise).
CHARTHOP_IMPORT_PROCESS_TYPE = "import"
CHARTHOP_SYNC_PROCESS_TYPE = "sync"

#: findProcesses pages (found: query parameters `limit` and `from` "from id", answer `{data, next}`).
#: (assumption) `next` is an opaque cursor: passed back as `from` it asks for the following page, and a page
#: without `next` (absent, null or empty) is the last. ChartHop's largest page is not published; a short
#: page does not mean the last one. The emulator's cursor is the id of the next page's first process.
CHARTHOP_PAGE_LIMIT_PARAM = "limit"
CHARTHOP_PAGE_FROM_PARAM = "from"
CHARTHOP_NEXT_FIELD = "next"

#: (assumption) A process's `appId` (found: "app id of the process") is set on every process an app's "Sync Now"
#: creates, and on the processes an app creates with `appId`: the app touches only processes carrying its own
#: id (`ChartHopAppId`, or the delivery's `appId` when that is not configured). A process with a
#: `parentProcessId` (an import under a sync) is never a press.
#: (assumption) An import that importDataCsv started is listed by findProcesses under its `parentProcessId` as
#: soon as the POST has answered, so an interrupted start finds it there (confirm: findProcesses right after an
#: import POST). A POST whose body was cut off (the pre-flight check refused it, or the function died while
#: streaming) starts no import.
#: (assumption) Orgvue and ELMA365 offer no way to ask whether an import was started for a given upload, so an
#: interrupted start into them is closed ERROR ("cannot tell whether the import began") instead of retried.

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
# Found (shared/reference/README.md, seed 003) and kept in targets/orgvue.py: bearer JWT, files/generate and its
# {"get", "put"} answer, the items/import body (importLocation, resultLocation, callback), the callback
# placeholders {{jobStatus}}/{{traceId}}/{{tenantId}}, the create/update/delete actions, the tenant id pattern.
# Everything below is a guess.

#: (assumption) The import call is a POST (the docs give its path and body, not its method).
ORGVUE_IMPORT_METHOD = "POST"

#: (assumption) The import answers 202 with a JSON job ticket: `jobId` (the job's id, our ImportJob.import_id),
#: `traceId` (what the callback's {{traceId}} carries) and `jobStatus`. The app accepts any 2xx and falls back
#: to `traceId` when `jobId` is missing.
ORGVUE_IMPORT_ACCEPTED_STATUS = 202
ORGVUE_TICKET_ID_FIELD = "jobId"
ORGVUE_TICKET_TRACE_FIELD = "traceId"
ORGVUE_TICKET_STATUS_FIELD = "jobStatus"
ORGVUE_TICKET_QUEUED_STATUS = "queued"

#: (assumption) jobStatus spellings. The emulator sends the first of each; the app compares case-insensitively
#: and accepts these variants. Any other value is not taken as the end of the import.
ORGVUE_JOB_STATUS_COMPLETED = "completed"
ORGVUE_JOB_STATUS_FAILED = "failed"
ORGVUE_JOB_DONE_STATUSES = frozenset({"completed", "complete", "succeeded", "success", "done", "finished"})
ORGVUE_JOB_FAILED_STATUSES = frozenset({"failed", "failure", "error", "errored", "cancelled", "canceled", "aborted"})

#: (assumption) The result document Orgvue writes to the result location is a JSON object:
#: {"traceId", "jobStatus", "message", "summary": {rows, created, updated, deleted, errors},
#:  "errors": [{"row": <data row number, 1-based>, "message": ...}]}. A job whose rows partly failed still
#: completes ("completed" with errors > 0); "failed" means nothing was imported.
ORGVUE_RESULT_STATUS_FIELD = "jobStatus"
ORGVUE_RESULT_MESSAGE_FIELD = "message"
ORGVUE_RESULT_SUMMARY_FIELD = "summary"
ORGVUE_RESULT_ERRORS_FIELD = "errors"
ORGVUE_RESULT_COUNT_KEYS = ("rows", "created", "updated", "deleted", "errors")
#: The result location's temporary file type (`targetType` of files/generate).
ORGVUE_RESULT_TARGET_TYPE = "json"

#: (assumption) The temporary GET/PUT URLs are pre-signed storage URLs: they need no Authorization header,
#: and like S3 they refuse one (HTTP 400), so our bearer token never travels to the storage host.
ORGVUE_TEMP_URL_REFUSES_AUTHORIZATION = True
#: (assumption) A temporary PUT URL accepts `Transfer-Encoding: chunked` (needed when the app adds the
#: `_action` column, because the size then changes). An S3 pre-signed PUT would not (501): if Orgvue's do
#: not, the app must count the transformed size in a first pass. The emulator honours this flag.
ORGVUE_TEMP_PUT_ACCEPTS_CHUNKED = True
#: (assumption) GET on a result location nothing was written to yet answers 404; S3-style pre-signed URLs
#: may answer 403 instead, and an empty 200 is possible: the app reads all three as "not written yet".
ORGVUE_RESULT_NOT_WRITTEN_STATUSES = frozenset({403, 404})

#: (assumption) `_action` may be any column of the CSV (the docs' example has it first, so the app puts it
#: first when it adds it); values are matched case-insensitively.
#: (assumption) Rate limiting answers 429, with or without Retry-After (seconds), before acting: safe to
#: repeat for any method. files/generate is safe to repeat after a 5xx (an unused temporary file expires).
ORGVUE_RATE_LIMIT_STATUS = 429
#: (assumption) A tenant the token does not belong to answers 403; a dataset the tenant lacks answers 404.
ORGVUE_FOREIGN_TENANT_STATUS = 403
ORGVUE_UNKNOWN_DATASET_STATUS = 404
#: (assumption) Row semantics (emulator only): `create` of an existing key, `update`/`delete` of a missing key
#: and an unknown action are row errors; the job still completes. A file without an `_action` column, or
#: that cannot be read, fails the job. The current docs call the async import a refresh that deletes
#: records missing from the upload: the emulator does that only when told (ImportBehaviour.refresh).


def orgvue_result_document(
    *,
    trace_id: str,
    job_status: str,
    message: str,
    counts: dict[str, int],
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The result document the emulator writes to the result location (the shape the app reads)."""
    return {
        ORGVUE_TICKET_TRACE_FIELD: trace_id,
        ORGVUE_RESULT_STATUS_FIELD: job_status,
        ORGVUE_RESULT_MESSAGE_FIELD: message,
        ORGVUE_RESULT_SUMMARY_FIELD: {key: int(counts.get(key, 0)) for key in ORGVUE_RESULT_COUNT_KEYS},
        ORGVUE_RESULT_ERRORS_FIELD: list(errors or []),
    }


# --- ELMA365 --------------------------------------------------------------------------------------
# Found (elma365.com "Data import" and "Apps API", see shared/reference/README.md): JSON POSTs under
# /pub/v1/, answers {"success": bool, "error": ...}, 400 with the reason, 403 failed login, 404 bad
# address; a client-chosen `hash` names an uploaded file and is not returned; start with hash, format
# (xlsx/csv) and withEventHandlers; a temporary file lives 60 minutes; one import per app at a time
# (a second start answers status `blocked`); the status method answers like the start; poll at most
# once a second. Everything below is a guess.

#: (assumption) Upload of a temporary file: POST with the file as the raw request body (not multipart)
#: and the client's hash in the query string; the answer is {"success": true} (no hash in it).
ELMA365_UPLOAD_PATH = "/pub/v1/disk/file/upload"
ELMA365_UPLOAD_HASH_PARAM = "hash"
ELMA365_UPLOAD_CONTENT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

#: (assumption) ELMA365 expects the hash to be a UUID (its disk API names files by UUID); we send uuid4.
ELMA365_HASH_IS_UUID = True

#: (assumption) Start an import of an app: POST with a JSON body of these keys.
ELMA365_IMPORT_PATH = "/pub/v1/app/{namespace}/{code}/import"
ELMA365_IMPORT_HASH_KEY = "hash"
ELMA365_IMPORT_FORMAT_KEY = "format"
ELMA365_IMPORT_EVENT_HANDLERS_KEY = "withEventHandlers"
ELMA365_IMPORT_FORMATS = ("csv", "xlsx")

#: (assumption) The import's status: POST (the API's usual verb; GET is the alternative) with an empty
#: JSON body, under the start path plus the import id.
ELMA365_STATUS_PATH = "/pub/v1/app/{namespace}/{code}/import/{import_id}"
ELMA365_STATUS_METHOD = "POST"

#: (assumption) Field names of the start/status answer: {"success", "id", "status", "imported",
#: "total", "error"}. A `blocked` start answers HTTP 200, success true, and carries no id.
ELMA365_ANSWER_ID_KEY = "id"
ELMA365_ANSWER_STATUS_KEY = "status"
ELMA365_ANSWER_IMPORTED_KEY = "imported"
ELMA365_ANSWER_TOTAL_KEY = "total"
ELMA365_ANSWER_ERROR_KEY = "error"

#: (assumption) Status values ("blocked" is found; the others are guesses).
ELMA365_STATUS_IN_PROGRESS = "in_progress"
ELMA365_STATUS_DONE = "done"
ELMA365_STATUS_ERROR = "error"
ELMA365_STATUS_BLOCKED = "blocked"

#: (assumption) A missing or malformed Authorization header answers 401, a wrong token 403 (found: 403
#: "failed login"); the token goes as `Authorization: Bearer <token>`.
ELMA365_UNAUTHENTICATED_STATUSES = frozenset({401, 403})

#: (assumption) Rate limiting answers 429, with or without Retry-After (seconds), as ChartHop does.
ELMA365_RATE_LIMIT_STATUS = 429

#: (assumption) The CSV ELMA365 imports is UTF-8, comma-separated, with the app template's column
#: names in its first row; each chunk we upload repeats that header row.
ELMA365_CSV_HAS_HEADER = True


# --- ChartHop app installs and per-org settings (issue 13) -----------------------------------------
# Found (App API spec): getInstalledApp GET /v1/app/org/{orgId}/install/{appUserId} -> User;
# getActiveAppInstalls GET /v1/app/install/{appId} -> ResultsUser {data, next} (query orgTypes,
# hasRunProcess "defaults to true", internalOptions); getAccessToken GET .../install/{appUserId}/token ->
# AccessTokenResponse {access_token, expires_in, ...}; App.configFields: AppConfigField {name, label, type
# (STRING, SUBDOMAIN, URL, SECRET, XML, OAUTH, INSTRUCTION, BOOLEAN), details, optional, ...}; User.options:
# "for apps, options (specific options are specific to the particular app)" - an object, nothing more.

#: (assumption) An installed app user's `options` holds what the org's admin filled in on the app's
#: configuration page, one key per declared config field, keyed by the field's `name`. We declare the fields
#: below under our own setting names, so the map is the identity; a different spelling is a one-line change
#: here. Confirm: install the app in a sandbox org, fill in the page, read getInstalledApp's `options`.
CHARTHOP_OPTION_KEYS: dict[str, str] = {}

#: (assumption) Value types inside `options`: a BOOLEAN field as a JSON boolean or the string "true"/"false";
#: a STRING field as a string (lists comma-separated, e.g. requiredColumns "Employee ID,First Name"); a field
#: the admin left empty is absent, null or "". Every type is accepted, so a wrong guess here only changes
#: how a value is spelled. Confirm with the same read as above, once with every field filled, once empty.

#: The config fields the app declares in ChartHop (App.configFields, found shape), for the app's developer
#: to publish; each is optional - left empty, the stack's default applies.
CHARTHOP_APP_CONFIG_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "importOnUpload", "label": "Import every uploaded file at once", "type": "BOOLEAN", "optional": True},
    {
        "name": "requiredColumns",
        "label": "Columns every file must have (comma-separated)",
        "type": "STRING",
        "optional": True,
    },
    {"name": "skipErrors", "label": "Skip rows ChartHop cannot import", "type": "BOOLEAN", "optional": True},
    {"name": "upsert", "label": "Create people not yet in ChartHop", "type": "BOOLEAN", "optional": True},
    {
        "name": "createGroups",
        "label": "Create departments and locations named in the file",
        "type": "BOOLEAN",
        "optional": True,
    },
    {"name": "disableSyncHireDate", "label": "Do not sync hire dates", "type": "BOOLEAN", "optional": True},
    {
        "name": "disableOverwritePerson",
        "label": "Do not overwrite existing person fields",
        "type": "BOOLEAN",
        "optional": True,
    },
    {"name": "importDryRun", "label": "Validate only (dry run)", "type": "BOOLEAN", "optional": True},
    {
        "name": "notifyUserIds",
        "label": "User ids e-mailed when an import completes (comma-separated)",
        "type": "STRING",
        "optional": True,
    },
)

#: (assumption) Each user getActiveAppInstalls lists is one org's install: its `id` is the app user id and its
#: org is the (only) entry of its `orgs`. Confirm: list installs of an app installed in two sandbox orgs.
#: (assumption) An install whose user `status` is one of these is gone (UNINSTALLED is in the User.status enum;
#: INACTIVE is read the same way).
CHARTHOP_INSTALL_GONE_STATUSES = frozenset({"UNINSTALLED", "INACTIVE"})
#: hasRunProcess (found, "defaults to true") is sent as false, so an org that installed the app but never
#: synced is listed too.
CHARTHOP_INSTALLS_HAS_RUN_PROCESS_PARAM = "hasRunProcess"
#: (assumption) getActiveAppInstalls pages like findProcesses (`next` passed back as `from`).
#: (assumption) Only a token of the org that owns (publishes) the app may call getActiveAppInstalls, and that
#: token may call getAccessToken for each install, answering that org's app token (expiring after
#: `expires_in` seconds). An org's own app token can read its own getInstalledApp. Confirm: call both with
#: the developer org's app token and with an installing org's token; note which answer 403.
