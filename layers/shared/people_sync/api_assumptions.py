"""Every fact about the target APIs that is *assumed* rather than taken from a published spec.

Facts marked (found) in `shared/reference/README.md` live next to the code that uses them; anything we
had to guess lives here, in one place, so that correcting a guess is a one-line change. The ChartHop
emulator imports this module too, so the app and the emulator can never disagree about a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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

#: (assumption) Process ids are unique across orgs (the spec shows 24-hex ObjectId-like ids and says nothing on
#: their scope). One deployment serving several orgs keys a sync by its process id alone: the status loop's
#: execution name (sync-<id>), the start journal's `start#<id>` and the loop memory. What carries the org where
#: it could collide without this: the Sync Now slot (`sync-now#<orgId>`), the ChartHop import queue
#: (`queue#charthop#<orgId>`), the upload journal (a digest of bucket/key/version, the key holds the org's folder)
#: and the import starter's idempotency keys (the Sync Now key hashes orgId; the file key hashes the S3 key).
#: An app token is valid in the org that installed the app only (another org's path with it: 401 or 403); the
#: emulator answers 401 and the app never sends one org's token to another org's path either way.
CHARTHOP_PROCESS_IDS_UNIQUE_ACROSS_ORGS = True

#: findProcesses pages (found, and settled by the vendored spec contracts/charthop/charthop-process-api-openapi.yml
#: that the contract tests check every client call against: query parameters `limit` (int32) and `from`
#: "from id", answer ResultsProcess `{data, next}`; there is no `pageSize` or `cursor` parameter).
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
#: interrupted start into them is closed ERROR ("cannot tell whether the import began") instead of retried
#: (Orgvue: see ORGVUE_IMPORT_METHOD below).

#: (assumption) ChartHop answers rate limiting with 429, with or without a Retry-After header
#: (seconds). Without the header we fall back to our own capped exponential backoff.
CHARTHOP_RATE_LIMIT_STATUS = 429

#: (assumption) A missing process answers 404 (the spec lists only 400/401/403).
CHARTHOP_NOT_FOUND_STATUS = 404

#: (assumption) A request body whose Content-Type is missing or not one of the operation's requestBody media
#: types (found: the JSON bodies are `application/json` only, importDataCsv's `multipart/form-data`) is refused
#: with 415 Unsupported Media Type, as a JAX-RS resource that @Consumes(application/json) answers (the spec lists
#: only 400/401/403). The app always sends the media type, so it never sees this. Confirm: PATCH updateProcess
#: with a JSON body and no Content-Type on a sandbox org.
CHARTHOP_UNSUPPORTED_MEDIA_TYPE_STATUS = 415

#: (assumption) updateProcess answers 200 with the updated Process (the spec documents no 2xx body);
#: the client does not depend on the body.

#: (assumption) Statuses that end a process. `DONE_WITH_ERRORS` appears only as a findProcesses
#: filter in the spec; we treat it as terminal success-with-errors in case getProcess returns it.
CHARTHOP_TERMINAL_STATUSES = frozenset({"DONE", "ERROR", "DONE_WITH_ERRORS"})
CHARTHOP_FAILED_STATUSES = frozenset({"ERROR"})

#: (assumption) Keys in an import Process's `results` object. The spec says only "results summary";
#: we read these keys when present and report what we find.
CHARTHOP_RESULT_COUNT_KEYS = ("rows", "created", "updated", "unchanged", "errors")

#: (assumption) importDataCsv's `progress` scale. The spec says "percent progress so far", the seed says 0 to 1:
#: the app accepts both. A value above CHARTHOP_PERCENT_SCALE_ABOVE can only be a percentage, and once one was
#: seen for an import, every later value of that import is read as a percentage (a later 1.0 is 1 %). Until
#: then values are read as fractions, except a running import's exactly-1.0, which is ambiguous (1 % or 100 %)
#: and moves nothing. Confirm: poll getProcess on a large import and look at the values.
CHARTHOP_PERCENT_SCALE_ABOVE = 1.0
#: The import's job detail key that remembers the percent scale (see targets/charthop.py).
CHARTHOP_PROGRESS_SCALE_DETAIL = "progressScale"


def charthop_import_fraction(raw: float | None, *, percent: bool, finished: bool) -> tuple[float, bool]:
    """The fraction 0..1 of an import's `progress` and whether the percent scale is (now) known to apply."""
    if raw is None or isinstance(raw, bool) or not math.isfinite(raw):
        return 0.0, percent
    percent = percent or raw > CHARTHOP_PERCENT_SCALE_ABOVE
    if percent:
        return min(1.0, max(0.0, raw / 100.0)), True
    if raw == CHARTHOP_PERCENT_SCALE_ABOVE and not finished:
        return 0.0, False  # ambiguous: no news rather than a jump to the end
    return min(1.0, max(0.0, raw)), False


#: getProcessEvents (found): `GET /v1/org/{orgId}/process/{processId}/events` answers
#: `ProcessEventResponse` = `{"events": [ProcessEvent]}`, with no paging parameters. ProcessEvent (found) has
#: `id`, `type` (enum incl. HIRE, UPDATE, CREATE_PERSON, ERROR), `entityData` (object of objects), `updates`
#: (`[{type: FIELD|CONTACT|COMP|ERROR, payload: {key, value, errorMessage, ...}}]`) and `at`.
#: LogData.data and Process.results are Java maps too ("object of objects"): plain values are sent in them.
#: (assumption) Not paged: one answer holds every event of the import, so the app reads at most
#: CHARTHOP_EVENTS_MAX_BYTES of it (larger: the details are reported as unreadable, the count comes from
#: `results`) and lists at most CHARTHOP_MAX_ROW_ERRORS error rows. Confirm: getProcessEvents on an import of
#: a few thousand rows (does it page, and how large does it get?).
CHARTHOP_EVENTS_MAX_BYTES = 10_000_000
CHARTHOP_MAX_ROW_ERRORS = 1000
#: (assumption) A row that importDataCsv skipped (skipErrors=true) is an event of type ERROR whose updates of
#: type ERROR name the column in `payload.key` and the reason in `payload.errorMessage`; the row is
#: `entityData.row`, the data row number (1-based, header not counted). The spec's `entityData` is a Java
#: Map<String, Object> rendered as "object of objects"; `{"row": {"number": n}}` is read too. Confirm:
#: getProcessEvents of an import with a bad row and skipErrors=true.
CHARTHOP_ERROR_EVENT_TYPE = "ERROR"
CHARTHOP_ERROR_UPDATE_TYPE = "ERROR"
CHARTHOP_EVENT_ROW_KEY = "row"
CHARTHOP_EVENT_ROW_NUMBER_KEY = "number"
#: (assumption) `results.errors` of a finished import counts its skipped rows (see CHARTHOP_RESULT_COUNT_KEYS).
CHARTHOP_SKIPPED_ROWS_KEY = "errors"

#: appendToProcessLogFile (found): `POST /v1/org/{orgId}/process/{processId}/log` with AppendLogRequest
#: `{"log": [LogData]}`, LogData = {level: INFO|WARN|ERROR, at, message, data} (`data` required; each of its
#: values is an object). (assumption) It answers any 2xx without a body the app needs; it has no idempotency
#: key, so a repeated POST appends again. ChartHop's largest batch is not published: the app sends at most
#: CHARTHOP_LOG_BATCH entries per POST and CHARTHOP_MAX_LOG_ROW_ERRORS row entries per sync. Confirm: append
#: 100 entries in one call and read them back with getProcessLogFile.
CHARTHOP_LOG_BATCH = 100
CHARTHOP_MAX_LOG_ROW_ERRORS = 500

#: (assumption) With importDryRun=true and importAfterDryRun=false the import process validates only: it ends
#: DONE (or ERROR) with the same `results` counters, meaning what the import *would* do, and changes nothing.
#: With importAfterDryRun=true the same process goes on to import when the dry run succeeds (no row errors, or
#: skipErrors=true), so it is followed and reported like an import; when the dry run fails it ends ERROR and
#: nothing is applied. Confirm: importDataCsv with importDryRun=true&importAfterDryRun=true, then findProcesses
#: under the parent (is the import a second process?).


def row_error_event(*, event_id: str, row: int, column: str | None, message: str, at: str) -> dict[str, Any]:
    """The ProcessEvent the emulator lists for a skipped row (the shape the app reads)."""
    payload: dict[str, Any] = {"errorMessage": message}
    if column:
        payload["key"] = column
    return {
        "id": event_id,
        "type": CHARTHOP_ERROR_EVENT_TYPE,
        "entityData": {CHARTHOP_EVENT_ROW_KEY: row},
        "updates": [{"type": CHARTHOP_ERROR_UPDATE_TYPE, "payload": payload}],
        "at": at,
    }


def row_errors_of_event(event: Any) -> list[tuple[int | None, str | None, str]]:
    """(row, column, message) for each error of a ProcessEvent; [] for an event that is not a row error."""
    if not isinstance(event, dict) or str(event.get("type") or "").upper() != CHARTHOP_ERROR_EVENT_TYPE:
        return []
    entity = event.get("entityData")
    entity = entity if isinstance(entity, dict) else {}
    raw_row = entity.get(CHARTHOP_EVENT_ROW_KEY)
    if isinstance(raw_row, dict):
        raw_row = raw_row.get(CHARTHOP_EVENT_ROW_NUMBER_KEY)
    row = raw_row if isinstance(raw_row, int) and not isinstance(raw_row, bool) else None
    found: list[tuple[int | None, str | None, str]] = []
    for update in event.get("updates") or []:
        if not isinstance(update, dict) or str(update.get("type") or "").upper() != CHARTHOP_ERROR_UPDATE_TYPE:
            continue
        payload = update.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        column = payload.get("key")
        message = payload.get("errorMessage")
        found.append((row, str(column) if column else None, str(message) if message else "no reason given"))
    return found or [(row, None, "no reason given")]


# The webhook envelope fields are (found) in ChartHop's Event schema
# (contracts/charthop/charthop-event-api-openapi.yml): id, orgId, userId, type, entityType, entityId, at,
# payload, code, subtype; the webhook summary (charthop-events-webhooks.yml) adds appId/appName/userName/
# matchFilters to a delivery. tests/contract checks both.
#: (assumption) How a "Sync Now" press is spelled in a delivery. The seed names the subscription
#: `process.create.{appname}`; the Event schema has `type` (enum: CREATE, not "process.create..."), `entityType`
#: (enum: PROCESS) and `code` (e.g. "job.update"). We accept every plausible spelling; the emulator sends the one
#: the Event schema allows (type CREATE, entityType PROCESS, code "process.create", appName). Confirm: a real
#: delivery of a "Sync Now" press.

#: (assumption) A process this app creates itself (the sync process an upload opens, see
#: targets/charthop.py) carries `options[CHARTHOP_CREATED_BY_OPTION] == <app name>` and
#: `options[CHARTHOP_TRIGGER_OPTION]` (e.g. "upload"): the spec says only "options passed to the process", and we
#: assume ChartHop keeps them as createProcess sent them and shows them in getProcess and in the `process.create`
#: delivery's payload. ChartHop may deliver `process.create.<app>` for such a process (and for the child process
#: importDataCsv creates): those are echoes of our own work, never a "Sync Now" press. Confirm: createProcess
#: with options, then getProcess (and the delivery it causes) shows them unchanged. Should ChartHop drop them, the
#: start journal (an upload record that opened the sync) still tells an echo.
CHARTHOP_CREATED_BY_OPTION = "createdBy"
CHARTHOP_TRIGGER_OPTION = "trigger"
#: (assumption) A `process.create` delivery's `payload` is the created Process (the emulator sends it so; the
#: webhook summary says only "event data (CQL-shaped)"). The webhook reads an echo from it when it can; the
#: import starter and the loop's first task decide from getProcess and the journal whatever the payload holds.


def own_process_options(app_name: str, trigger: str, **options: Any) -> dict[str, Any]:
    """The `options` of a process this app creates: marked so its `process.create` echo is known as ours."""
    return {**options, CHARTHOP_CREATED_BY_OPTION: app_name, CHARTHOP_TRIGGER_OPTION: trigger}


def own_process_echo(process: Mapping[str, Any] | None, app_name: str) -> str | None:
    """Why a created process is an echo of this app's own work (None: nothing says so). `process` is a Process
    as ChartHop shows it (camelCase keys), e.g. a delivery's payload."""
    if not isinstance(process, Mapping):
        return None
    if process.get("parentProcessId"):
        return "a child process (an import under a sync)"
    options = process.get("options")
    if isinstance(options, Mapping) and str(options.get(CHARTHOP_CREATED_BY_OPTION) or "") == app_name:
        return f"a process this app created ({options.get(CHARTHOP_TRIGGER_OPTION) or 'unknown trigger'})"
    return None


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
    """The delivery the emulator sends for a created process (a "Sync Now" press, or an echo of ours): the
    spelling we assume, within the Event schema (type CREATE, entityType PROCESS) plus the webhook summary's
    envelope fields (appId, appName, userName, matchFilters)."""
    return {
        "id": event_id,
        "orgId": org_id,
        "userId": user_id,
        "userName": user_name,
        "appId": app_id,
        "appName": app_name,
        "type": "CREATE",
        "code": "process.create",
        "entityType": "PROCESS",
        "entityId": process["id"],
        "processId": process["id"],
        "matchFilters": [f"process.create.{app_name}"],
        "at": at,
        "payload": process,
    }


# --- Orgvue ---------------------------------------------------------------------------------------
# Found, and kept next to the code in targets/orgvue.py (each with its source): seed 003 ("Async Import
# Integration" recipe): bearer JWT, files/generate and its {"get", "put"} answer, the upload's `_action` column
# (create/update/delete), the items/import body (importLocation, resultLocation, callback) and the callback
# placeholders {{jobStatus}}/{{traceId}}/{{tenantId}}; the import is "the PUT: Create, update or delete items
# from a secure temporary file API". Orgvue docs "Keeping Track of a Request": the job ticket
# {"_links": {"self": {"url", "contentType", "type": "downloadLink"}}, "jobStatus", "_createdAt", "_createdBy",
# "X-Amzn-Trace-Id"} with jobStatus created|running|failed|completed, progress followed by polling
# `_links.self.url`. "Secure Temporary Files": pre-signed URLs, files removed 15 minutes after they are made,
# no chunked transfer encoding (send Content-Length). "Query Parameters": dateFormat, autoId, idKey,
# implicitDelete (and others we do not send). Orgvue's guide: error bodies {"errors": [{"name", "code",
# "message"}]}. The tenant id pattern (Orgvue API docs). Everything below is a guess; each says what would
# confirm it.

#: (found, seed 003) The import call is a PUT. Not idempotent: it is never repeated after a 5xx, a timeout or
#: a reset (the client mounts an adapter that repeats only 429s and failed connects for it).
ORGVUE_IMPORT_METHOD = "PUT"

#: (assumption) The import answers any 2xx (202 in the emulator) with the job ticket as its JSON body.
#: Confirm: one import against a test tenant.
ORGVUE_IMPORT_ACCEPTED_STATUS = 202
#: (found, "Keeping Track of a Request") Job ticket fields and the four jobStatus values.
ORGVUE_TICKET_STATUS_FIELD = "jobStatus"
ORGVUE_TICKET_TRACE_FIELD = "X-Amzn-Trace-Id"
ORGVUE_TICKET_LINKS_FIELD = "_links"
ORGVUE_JOB_STATUS_CREATED = "created"
ORGVUE_JOB_STATUS_RUNNING = "running"
ORGVUE_JOB_STATUS_COMPLETED = "completed"
ORGVUE_JOB_STATUS_FAILED = "failed"
ORGVUE_JOB_STATUSES = (
    ORGVUE_JOB_STATUS_CREATED,
    ORGVUE_JOB_STATUS_RUNNING,
    ORGVUE_JOB_STATUS_COMPLETED,
    ORGVUE_JOB_STATUS_FAILED,
)
#: (assumption) The callback's {{traceId}} is the ticket's `X-Amzn-Trace-Id` value (the docs name both "trace
#: id" and show no other id), so a callback is matched to its import by it. Confirm: compare one callback's
#: traceId with the ticket of the same import.
ORGVUE_CALLBACK_TRACE_IS_TICKET_TRACE = True
#: (assumption) The ticket's `_links.self.url` is pre-signed like the temporary files: it is read with a plain
#: GET and no Authorization header (an S3-style pre-signed URL refuses a second auth mechanism with 400), and
#: it answers the ticket again, with the current jobStatus, for as long as the job is followed (imports can
#: outlast 15 minutes). Confirm: poll a ticket link with and without the bearer token, and past 15 minutes.
ORGVUE_TICKET_URL_IS_PRESIGNED = True
#: (assumption) A failed job's ticket (or result document) may carry Orgvue's error list in the documented
#: error shape {"errors": [{"name", "code", "message"}]}; the app shows those messages when present.
#: Confirm: the ticket of a failed import.
ORGVUE_ERRORS_FIELD = "errors"

#: (assumption) The result document Orgvue writes to the result location is a JSON object:
#: {"X-Amzn-Trace-Id", "jobStatus", "message", "summary": {rows, created, updated, deleted, errors},
#:  "errors": [{"name", "code", "message", "row": <data row number, 1-based>}]}. A job whose rows partly failed
#: still completes ("completed" with errors > 0); "failed" means nothing was imported. The app reads it only for
#: counts and messages once the ticket (or the callback) says the job ended; an unreadable or missing result
#: leaves the counts out. Confirm: the result location of one completed and one failed import.
ORGVUE_RESULT_STATUS_FIELD = "jobStatus"
ORGVUE_RESULT_MESSAGE_FIELD = "message"
ORGVUE_RESULT_SUMMARY_FIELD = "summary"
ORGVUE_RESULT_ERRORS_FIELD = ORGVUE_ERRORS_FIELD
ORGVUE_RESULT_COUNT_KEYS = ("rows", "created", "updated", "deleted", "errors")
#: The result location's temporary file type (`targetType` of files/generate).
ORGVUE_RESULT_TARGET_TYPE = "json"
#: (assumption) GET on a temporary file nothing was written to yet answers 404 (S3 may answer 403), and an
#: empty 200 is possible: all three read as "not written yet".
ORGVUE_RESULT_NOT_WRITTEN_STATUSES = frozenset({403, 404})

#: (found, "Secure Temporary Files") Temporary files are removed 15 minutes after they are generated.
ORGVUE_TEMP_FILE_LIFETIME_SECONDS = 15 * 60
#: (assumption) The import must start this long after files/generate at the latest, leaving Orgvue 5 minutes to
#: read the import location once the job runs (how soon a created job reads it is not published). Past it the
#: app does not start the import (it says why; the file stays staged). Confirm: Orgvue's queueing delay.
ORGVUE_IMPORT_START_DEADLINE_SECONDS = 10 * 60
#: (assumption) The temporary GET/PUT URLs need no Authorization header and refuse one (HTTP 400, as S3 does),
#: so our bearer token never travels to the storage host. Confirm: a PUT with the header.
ORGVUE_TEMP_URL_REFUSES_AUTHORIZATION = True
#: (found, "Secure Temporary Files") A pre-signed PUT refuses `Transfer-Encoding: chunked`; as S3 does, we
#: expect 411 "MissingContentLength" (S3 may answer 501 NotImplemented): the app always sends Content-Length.
ORGVUE_TEMP_PUT_CHUNKED_STATUS = 411
#: (assumption) An expired temporary URL answers 403 with "Request has expired" (S3's AccessDenied). The app
#: also takes any 403 on a temporary file older than the lifetime as expiry. Confirm: a PUT after 15 minutes.
ORGVUE_TEMP_EXPIRED_STATUS = 403
ORGVUE_TEMP_EXPIRED_TEXT = "expired"

#: (found, "Query Parameters") Items endpoints take these query parameters. The app sends `implicitDelete`
#: (always, default false), `dateFormat` (always) and either `idKey=<property>` or `autoId=true`.
#: (found, "Async Import Integration" recipe) The async import is a refresh: it adds new records, updates
#: existing ones and DELETES records not present in the uploaded data; "Query Parameters" documents
#: `implicitDelete` as "whether to delete items not in the payload" without naming its default. So an import
#: without `implicitDelete` deletes the items missing from the file (the emulator does so).
ORGVUE_IMPORT_REFRESHES_BY_DEFAULT = True
#: (assumption) `implicitDelete=false` on the async import turns that refresh off: items missing from the file
#: are kept, and only rows with `_action` delete. The app's "deletion is explicit" rests on it, which is why it
#: always sends the parameter (false unless OrgvueImplicitDelete=true). Nothing published says the async import
#: honours the Items parameter this way. Confirm: on a test dataset with an item X, import a file without X
#: with `implicitDelete=false` and check X is still there (and, without the parameter, that X is deleted).
ORGVUE_IMPLICIT_DELETE_FALSE_KEEPS_MISSING_ITEMS = True
ORGVUE_QUERY_PARAMETERS = frozenset(
    {
        "dateFormat",
        "onPropertyAccessDenied",
        "onActionValidationFailure",
        "onItemAccessDenied",
        "autoId",
        "idKey",
        "mergeKey",
        "implicitDelete",
        "noopToken",
        "clearToken",
    }
)
ORGVUE_DATE_FORMATS = ("YYYY-MM-DD", "DD/MM/YYYY", "MM/DD/YYYY")
#: (assumption) Booleans in the query are spelled `true`/`false`, and `autoId` and `idKey` exclude each other
#: (the emulator refuses both together with 400). Confirm: the OpenAPI spec offered for download on the docs.
ORGVUE_QUERY_TRUE = "true"
ORGVUE_QUERY_FALSE = "false"
#: (assumption) Without idKey/autoId, items are matched by Orgvue's internal `_id` (found: "the default identifier
#: of the sync endpoint is the internal _id"; we assume the async import shares it). An HRIS export has no `_id`,
#: so the app always sends idKey or autoId.
ORGVUE_DEFAULT_ID_PROPERTY = "_id"

#: (assumption) `_action` may be any column of the CSV (the docs' example has it first, so the app puts it first
#: when it adds it); values are matched case-insensitively.
#: (assumption) Rate limiting answers 429, with or without Retry-After (seconds), before acting: safe to repeat
#: for any method, the import PUT included. files/generate is safe to repeat after a 5xx (an unused temporary
#: file expires). Confirm: Orgvue's rate limit documentation.
ORGVUE_RATE_LIMIT_STATUS = 429
#: (assumption) An API call (files/generate, items/import) without `Content-Type: application/json` (found: the
#: recipe sends `application/json; charset=UTF-8`, the client always does) is refused with 415 and an error
#: body, as a JSON API usually answers. Confirm: POST files/generate with `Content-Type: text/plain`.
ORGVUE_UNSUPPORTED_MEDIA_TYPE_STATUS = 415
#: (assumption) A tenant the token does not belong to answers 403; a dataset the tenant lacks answers 404.
ORGVUE_FOREIGN_TENANT_STATUS = 403
ORGVUE_UNKNOWN_DATASET_STATUS = 404
#: (assumption) Orgvue offers no way to ask whether an import started for a given upload (no lookup by file or
#: result location is published): after an ambiguous failure of the import PUT (5xx, timeout, reset) the sync
#: is closed saying the import may have started. Confirm: a jobs listing endpoint in the OpenAPI spec.
#: (assumption) Row semantics (emulator only): `create` of an existing key, `update`/`delete` of a missing key
#: and an unknown action are row errors; the job still completes. A file without an `_action` column, or without
#: the idKey column, or that cannot be read, fails the job.


def orgvue_job_ticket(*, url: str, job_status: str, created_at: str, created_by: str, trace_id: str) -> dict[str, Any]:
    """A job ticket in the documented shape ("Keeping Track of a Request"); the emulator answers these."""
    return {
        ORGVUE_TICKET_LINKS_FIELD: {
            "self": {"url": url, "contentType": "application/json; charset=UTF-8", "type": "downloadLink"}
        },
        ORGVUE_TICKET_STATUS_FIELD: job_status,
        "_createdAt": created_at,
        "_createdBy": created_by,
        ORGVUE_TICKET_TRACE_FIELD: trace_id,
    }


def orgvue_errors(*errors: tuple[str, str, str]) -> dict[str, Any]:
    """An error body in the documented shape, from (name, code, message) triples."""
    return {ORGVUE_ERRORS_FIELD: [{"name": name, "code": code, "message": message} for name, code, message in errors]}


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
#: and the client's hash in the query string; the answer is {"success": true} (no hash in it). Confirm with
#: ELMA365's Web API reference for the temporary-file upload or one upload on a test company: the path, raw
#: or multipart body, the parameter name, the Content-Type it wants.
ELMA365_UPLOAD_PATH = "/pub/v1/disk/file/upload"
ELMA365_UPLOAD_HASH_PARAM = "hash"
ELMA365_UPLOAD_CONTENT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

#: (assumption) Upload of a file to a directory (the method seed 004 recommends for more than 50,000 entries;
#: its path and fields are not public): POST with the file as the raw request body, the directory's id in the
#: path, the client's hash and the file's name in the query string; the answer is {"success": true} (found: the
#: hash is not returned). A file in a directory does not expire, and its hash starts an import as a temporary
#: file's does. Confirm with ELMA365's Files API reference ("upload a file to a folder") or one upload on a
#: test company: the path, whether the body is raw or multipart, the parameter names, and that the import
#: start accepts the hash of a directory file.
ELMA365_DIRECTORY_UPLOAD_PATH = "/pub/v1/disk/directory/{directory_id}/upload"
ELMA365_DIRECTORY_UPLOAD_HASH_PARAM = "hash"
ELMA365_DIRECTORY_UPLOAD_NAME_PARAM = "name"

#: (found) Temporary files are recommended for at most this many entries ("more than 50,000 entries at a
#: time, it is recommended to upload the file to a directory"). (assumption) ELMA365 does not refuse a
#: larger temporary-file import: the seed only recommends. The app keeps chunks of a temporary-file import
#: within it anyway; the emulator enforces it only when told (Elma365EmulatorConfig.temp_file_max_rows).
#: Confirm: start a temporary-file import of 50,001 rows on a test company.
ELMA365_TEMP_FILE_MAX_ENTRIES = 50_000

#: (assumption) ELMA365 expects the hash to be a UUID (its disk API names files by UUID); we send uuid4.
#: Confirm: the upload methods' reference (the hash's format), or an upload with a uuid4 hash accepted.
ELMA365_HASH_IS_UUID = True

#: (assumption) Start an import of an app: POST with a JSON body of these keys (the keys hash, format and
#: withEventHandlers are the seed's words; the path and the format values "csv"/"xlsx" are guesses).
#: Confirm: the import method's reference, or one start on a test company.
#: (assumption) Each start of the same hash is a new import (nothing makes a repeated start idempotent), and
#: ELMA365 offers no way to find the import a given hash started: so a start whose answer was lost is never
#: repeated (the sync is closed "cannot tell"). Confirm: start one hash twice on a test company; look for an
#: import list method.
ELMA365_IMPORT_PATH = "/pub/v1/app/{namespace}/{code}/import"
ELMA365_IMPORT_HASH_KEY = "hash"
ELMA365_IMPORT_FORMAT_KEY = "format"
ELMA365_IMPORT_EVENT_HANDLERS_KEY = "withEventHandlers"
ELMA365_IMPORT_FORMATS = ("csv", "xlsx")

#: (assumption) The import's status: POST (the API's usual verb; GET is the alternative) with an empty
#: JSON body, under the start path plus the import id. Confirm: the status method's reference, or a GET and
#: a POST of a known import id on a test company.
ELMA365_STATUS_PATH = "/pub/v1/app/{namespace}/{code}/import/{import_id}"
ELMA365_STATUS_METHOD = "POST"

#: (assumption) Field names of the start/status answer: {"success", "id", "status", "imported",
#: "total", "error"}. A `blocked` start carries no id. Its HTTP status is not published: the emulator
#: answers 200 (with success true) by default, but the app reads the body before the status, so a `blocked`
#: that comes with 409, 423, 400 or another non-2xx status (other than 401/403, a refused token) is waited
#: out like a 200 one. Confirm: start a second import while one runs on a test company and record the status.
ELMA365_ANSWER_ID_KEY = "id"
ELMA365_ANSWER_STATUS_KEY = "status"
ELMA365_ANSWER_IMPORTED_KEY = "imported"
ELMA365_ANSWER_TOTAL_KEY = "total"
ELMA365_ANSWER_ERROR_KEY = "error"

#: (assumption) Status values ("blocked" is found; the others are guesses). (assumption) A status request
#: answering `blocked` means the import has not begun yet: the app keeps polling. Confirm: the values a
#: test company's status method returns while an import runs, after it ends and when it fails.
ELMA365_STATUS_IN_PROGRESS = "in_progress"
ELMA365_STATUS_DONE = "done"
ELMA365_STATUS_ERROR = "error"
ELMA365_STATUS_BLOCKED = "blocked"

#: (assumption) A missing or malformed Authorization header answers 401, a wrong token 403 (found: 403
#: "failed login"); the token goes as `Authorization: Bearer <token>`. Confirm: calls with no, a malformed
#: and a wrong token on a test company.
ELMA365_UNAUTHENTICATED_STATUSES = frozenset({401, 403})

#: (assumption) Rate limiting answers 429, with or without Retry-After (seconds), as ChartHop does.
#: Confirm: ELMA365's published API limits, or the answer to a burst of status requests on a test company.
ELMA365_RATE_LIMIT_STATUS = 429

#: (found) "The status method returns the same response as the start; poll it no more than once a second."
#: What ELMA365 answers a sooner poll is not published: assumed the rate-limit answer above, counted per import
#: from the last answered poll. The app's checks of one import are at least this far apart (its targets'
#: `min_check_interval_seconds`); a retry of a status request that comes sooner waits out the 429.
ELMA365_MIN_STATUS_INTERVAL_SECONDS = 1.0

#: (assumption) The CSV ELMA365 imports is UTF-8, comma-separated, with the app template's column
#: names in its first row; each chunk we upload repeats that header row. Confirm: the app's downloaded
#: import template exported as CSV, and a test import of a chunk with the header row.
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
#: (assumption) getActiveAppInstalls pages like findProcesses (`next` passed back as `from`). The App API spec
#: gives it query parameters orgTypes, hasRunProcess and internalOptions only, yet its answer ResultsUser has
#: `next`: `from` is the one query parameter we send outside the spec (CHARTHOP_ASSUMED_QUERY_PARAMETERS; the
#: contract checks allow it by that name only). Should ChartHop ignore it, the listing stops at a repeated cursor
#: or at a page without new installs and is marked truncated (so is one that hit the page cap), and
#: `orgs sync-installs --mark-uninstalled` marks no org uninstalled from it. Confirm: list the installs of an
#: app installed in more orgs than one page holds, and check the page after `from=<next>` differs.
CHARTHOP_ASSUMED_QUERY_PARAMETERS: dict[str, frozenset[str]] = {
    "getActiveAppInstalls": frozenset({CHARTHOP_PAGE_FROM_PARAM}),
}
#: (assumption) getActiveAppInstalls documents only its 200 answer; ChartHop's general errors (found: 401 not
#: authorized, 403 permission denied) apply to it too, and a token that may not list the app's installs (see
#: below) answers 403. The contract checks allow these statuses for it by name (CHARTHOP_ASSUMED_STATUSES).
#: Confirm with the same calls as the caller assumption below.
CHARTHOP_ASSUMED_STATUSES: dict[str, frozenset[int]] = {"getActiveAppInstalls": frozenset({401, 403})}
#: (assumption) Only a token of the org that owns (publishes) the app may call getActiveAppInstalls, and that
#: token may call getAccessToken for each install, answering that org's app token (expiring after
#: `expires_in` seconds). An org's own app token can read its own getInstalledApp. Confirm: call both with
#: the developer org's app token and with an installing org's token; note which answer 403.

# getAccessToken (found, vendored contracts/charthop/charthop-app-api-openapi.yml): GET
# /v1/app/org/{orgId}/install/{appUserId}/token, no query parameters, 200 -> AccessTokenResponse with required
# `access_token` (string) and `expires_in` (int32, "expiration time of token, in seconds"); optional token_type,
# refresh_token, scope, redirect_uri; 400/401/403/404 documented without bodies.
#: (assumption) The stack's own org (ChartHopOrgId, its token in ChartHopApiTokenSecret) is the org that
#: publishes the app, so its token may call getAccessToken for another org's install (the answer is that org's
#: app token). The app never asks for the stack's own org's token this way: a refused own token needs an operator.
CHARTHOP_ACCESS_TOKEN_CALLER = "stack-org"  # noqa: S105 - names the caller, not a secret
#: (assumption) `expires_in` counts from the answer. A token answered by getAccessToken is valid in the install's
#: org until then, and one answered earlier stays valid until its own expiry (so containers that still hold it
#: keep working while others refresh). `expires_in` <= 0 means "not known to expire". Each call may answer a new
#: token or the current one; the app handles both (the same token with no longer life is not asked for again for
#: a minute). Confirm: call getAccessToken twice a minute apart and use both tokens.
#: (assumption) ChartHop answers an expired token as it answers any token it does not take: 401. The app cannot
#: tell "expired" from "revoked" and treats both alike (read the secret again, then fetch a fresh token once).
CHARTHOP_TOKEN_EXPIRED_STATUS = 401
#: (assumption) getAccessToken answers 404 for an install that is gone (uninstalled app) and 403 when the caller's
#: token may not read the install's token; either way no fresh token can be had and the refusal is recorded.
