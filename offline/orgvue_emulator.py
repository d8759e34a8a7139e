"""A local Orgvue: the Async Import endpoints this app calls, to Orgvue's published contract.

It follows what is known of Orgvue's API (shared/reference/README.md: seed 003 and Orgvue's docs "Async Import
Integration", "Keeping Track of a Request", "Query Parameters", "Secure Temporary Files") and
`people_sync.api_assumptions` (section Orgvue) for the rest:

* API calls (files/generate, items/import) must be `Content-Type: application/json` (else 415).
* `POST .../files/generate` (`targetEncoding` "identity" only) gives a temporary file's pre-signed GET/PUT
  URLs; the file expires 15 minutes after it was generated, on the emulator's own clock (tests move it); a PUT
  must carry Content-Length (chunked: 411 MissingContentLength, as S3's pre-signed URLs answer); the URLs
  refuse an Authorization header.
* `PUT .../datasets/{datasetId}/items/import` (a POST gets 405) answers a job ticket
  ({"_links": {"self": {"url", ...}}, "jobStatus", "_createdAt", "_createdBy", "X-Amzn-Trace-Id"}); its
  pre-signed `_links.self.url` answers the ticket again with the job's status (created, running, then
  completed or failed). Unknown query parameters are refused; the import is a refresh as the recipe says
  (items missing from the upload are deleted) unless `implicitDelete=false` (assumed to keep them); items are
  matched by `idKey`, by the dataset's autoId property (`autoId=true`) or by `_id`.
* The job runs on a background thread after `duration_s` of its clock (or after N ticket polls), writes the
  result document to the result location, and calls the callback URL.
* Errors come as {"errors": [{"name", "code", "message"}]}. Everything is recorded; faults can be injected.

Run it alone with `python -m offline.orgvue_emulator --port 8901`.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import io
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import quote, urlsplit

import requests
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from offline.emulator_base import Fault, FaultInjectingServer
from people_sync import api_assumptions as assumed
from people_sync.targets.orgvue import ACTION_COLUMN, ACTIONS, TENANT_ID_PATTERN

#: Operations that faults can be injected into (names used by `inject` and `calls_of`).
OPERATIONS = ("generate", "import", "tempGet", "tempPut", "ticket")
#: Marks the emulator's own PUT of an import's result document (to the result location, often one of its own
#: temporary files): recorded as "resultPut", so `calls_of("tempPut")` and `uploads` hold only the app's
#: uploads and a fault injected for the app's upload is never spent on the result.
WORKER_HEADER = "X-Orgvue-Emulator-Worker"
TARGET_TYPES = ("json", "csv")
#: (found, seed 003) files/generate's `targetEncoding` is "identity"; no other value is documented.
TARGET_ENCODINGS = ("identity",)
#: How often the worker looks at the clock when nothing wakes it (real-clock mode).
TICK_S = 0.02
PLACEHOLDER = re.compile(r"\{\{(jobStatus|traceId|tenantId)\}\}")
ERROR_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    411: "MissingContentLength",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
}

__all__ = [
    "Fault",
    "ImportBehaviour",
    "OrgvueEmulator",
    "OrgvueEmulatorConfig",
    "RecordedCall",
    "RecordedCallback",
    "RecordedImport",
    "RecordedUpload",
]


@dataclass
class ImportBehaviour:
    """How the next imports run: `created` for `queued_s` of emulator clock, then `running`; processed after
    `duration_s` of emulator clock time, or (when `polls` is set) once its ticket was polled that many times."""

    duration_s: float = 3.0
    queued_s: float = 0.0
    polls: int | None = None
    fail_with: str | None = None  # the job fails with this reason, nothing is applied
    send_callback: bool = True  # False: the callback never comes
    #: Once processed, the ticket reports this jobStatus instead of completed/failed (an undocumented value).
    reported_status: str | None = None


@dataclass
class OrgvueEmulatorConfig:
    tenant_id: str = "ACME_PEOPLE"
    dataset_id: str = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"
    token: str = "emulator-orgvue-jwt"  # noqa: S105 - the emulator's own fake token
    #: The dataset's autoId property (what `autoId=true` matches items by).
    auto_id_property: str = "employeeID"
    user: str = "api-user@acme.example"

    def __post_init__(self) -> None:
        if not re.fullmatch(TENANT_ID_PATTERN, self.tenant_id):
            raise ValueError(f"tenant id {self.tenant_id!r} does not match {TENANT_ID_PATTERN}")
        uuid.UUID(self.dataset_id)  # dataset ids are GUIDs


@dataclass
class RecordedCall:
    operation: str
    method: str
    path: str
    status: int
    at: float
    authorization: str | None = None
    chunked: bool = False
    query: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass
class RecordedUpload:
    """A PUT to a temporary file that was accepted: how it was sent and what it held."""

    file_id: str
    size: int
    chunked: bool
    content_length: int | None
    body: bytes


@dataclass
class RecordedImport:
    job_id: str
    trace_id: str
    body: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)
    status: str = assumed.ORGVUE_JOB_STATUS_CREATED
    ticket_url: str = ""
    ticket_sig: str = ""
    created_at: str = ""
    polls: int = 0
    result: dict[str, Any] | None = None
    result_put_status: int | None = None
    processed: threading.Event = field(default_factory=threading.Event)


@dataclass
class RecordedCallback:
    url: str
    status: int  # 0 when the callback URL did not answer


@dataclass
class _TempFile:
    file_id: str
    target_type: str
    get_sig: str
    put_sig: str
    generated_at: float
    data: bytes | None = None
    reads: int = 0


@dataclass
class _Job:
    record: RecordedImport
    behaviour: ImportBehaviour
    started: float
    import_url: str
    result_url: str | None
    callback_template: str | None


class OrgvueEmulator(FaultInjectingServer):
    """In-memory Orgvue served over loopback HTTP; thread-safe; usable as a context manager."""

    def __init__(
        self,
        config: OrgvueEmulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config or OrgvueEmulatorConfig()
        self.clock = clock
        self.import_behaviour = ImportBehaviour()
        #: The dataset's items, keyed by the value of the property they are matched by (idKey, autoId or _id).
        self.items: dict[str, dict[str, str]] = {}
        self.calls: list[RecordedCall] = []
        self.uploads: list[RecordedUpload] = []
        self.imports: list[RecordedImport] = []
        self.callbacks: list[RecordedCallback] = []
        self._files: dict[str, _TempFile] = {}
        self._jobs: list[_Job] = []
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._routes = Map(
            [
                Rule("/api/v1/<tenant>/files/generate", methods=["POST"], endpoint="generate"),
                Rule(
                    "/api/v1/<tenant>/datasets/<dataset>/items/import",
                    methods=[assumed.ORGVUE_IMPORT_METHOD],
                    endpoint="import",
                ),
                Rule("/temp-files/<file_id>", methods=["GET"], endpoint="tempGet"),
                Rule("/temp-files/<file_id>", methods=["PUT"], endpoint="tempPut"),
                Rule("/job-tickets/<job_id>", methods=["GET"], endpoint="ticket"),
            ]
        )
        super().__init__(self._wsgi, name="orgvue-emulator", host=host, port=port)
        self._worker = threading.Thread(target=self._work, name="orgvue-emulator-jobs", daemon=True)

    def start(self) -> Self:
        super().start()
        self._worker.start()
        return self

    def serve_forever(self) -> None:
        """Serves in the calling thread, with the job worker alongside (from the command line)."""
        self._worker.start()
        try:
            super().serve_forever()
        finally:
            self._stop_worker()

    def stop(self) -> None:
        """Stops the job worker (it finishes the job in hand) and the server: no thread is left running."""
        self._stop_worker()
        super().stop()

    def _stop_worker(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._worker.is_alive():
            self._worker.join(timeout=10)

    # --- test controls ---------------------------------------------------------------------------

    def inject(self, operation: str, *faults: Fault) -> None:
        """Queues failures for the next calls of an operation: generate, import, tempGet, tempPut, ticket."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {', '.join(OPERATIONS)}")
        super().inject(operation, *faults)

    def calls_of(self, operation: str) -> list[RecordedCall]:
        with self._lock:
            return [call for call in self.calls if call.operation == operation]

    def wake(self) -> None:
        """Makes the worker look at its jobs now (after a test moved the injected clock)."""
        with self._wake:
            self._wake.notify_all()

    def wait_until_processed(self, job_id: str | None = None, timeout: float = 5.0) -> RecordedImport:
        """Blocks until the job (default: the latest) was processed, result written and callback sent."""
        with self._lock:
            records = [record for record in self.imports if job_id in (None, record.job_id)]
        if not records:
            raise LookupError(f"no import {job_id or ''}")
        record = records[-1]
        deadline = time.monotonic() + timeout
        while not record.processed.is_set():
            self.wake()
            if time.monotonic() > deadline:
                raise TimeoutError(f"import {record.job_id} was not processed within {timeout}s")
            record.processed.wait(0.01)
        return record

    def chunked_requests(self) -> list[RecordedCall]:
        """Every request that came with `Transfer-Encoding: chunked` (whatever the answer)."""
        with self._lock:
            return [call for call in self.calls if call.chunked]

    def file_content(self, url: str) -> bytes | None:
        """What a temporary file (by either of its URLs) holds, without counting as a read."""
        with self._lock:
            temp = self._file_of(url)
            return temp.data if temp else None

    # --- WSGI ------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self._routes.bind_to_environ(environ).match()
        except HTTPException as error:
            request.get_data()
            self._record("unrouted", request, error.code or 404)
            return _error(error.code or 404, error.description or "not found")(environ, start_response)
        work = functools.partial(getattr(self, f"_op_{endpoint}"), request, **args)
        if endpoint == "tempPut" and request.headers.get(WORKER_HEADER):
            return self._answer(environ, start_response, "resultPut", request, work, _error)
        return self._answer(environ, start_response, endpoint, request, work, _error)

    def _authorised(self, request: Request, tenant: str) -> Response | None:
        """401 without our bearer token, 403 for another tenant; None when the call may proceed."""
        if request.headers.get("Authorization") != f"Bearer {self.config.token}":
            return _error(401, "invalid or missing bearer token")
        if tenant != self.config.tenant_id:
            return _error(assumed.ORGVUE_FOREIGN_TENANT_STATUS, f"no access to tenant {tenant}")
        return None

    @staticmethod
    def _not_json(request: Request) -> Response | None:
        """415 for an API call whose Content-Type is not JSON (found: the recipe sends `application/json;
        charset=UTF-8`; the status is an assumption, api_assumptions.ORGVUE_UNSUPPORTED_MEDIA_TYPE_STATUS)."""
        if request.mimetype == "application/json":
            return None
        sent = f"Content-Type {request.mimetype!r}" if request.mimetype else "no Content-Type"
        return _error(
            assumed.ORGVUE_UNSUPPORTED_MEDIA_TYPE_STATUS,
            f"the request must be application/json; charset=UTF-8, it sent {sent}",
            "UnsupportedMediaType",
        )

    def _record(self, operation: str, request: Request, status: int) -> None:
        with self._lock:
            self.calls.append(
                RecordedCall(
                    operation,
                    request.method,
                    request.path,
                    status,
                    self.clock(),
                    request.headers.get("Authorization"),
                    _is_chunked(request),
                    dict(request.args),
                    request.headers.get("Content-Type"),
                )
            )

    # --- operations ------------------------------------------------------------------------------

    def _op_generate(self, request: Request, tenant: str) -> Response:
        refused = self._authorised(request, tenant) or self._not_json(request)
        if refused:
            return refused
        body = _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        if body.get("targetType") not in TARGET_TYPES:
            return _error(400, f"targetType must be one of {', '.join(TARGET_TYPES)}")
        if body.get("targetEncoding", "identity") not in TARGET_ENCODINGS:
            return _error(400, f"targetEncoding must be one of {', '.join(TARGET_ENCODINGS)}")
        temp = _TempFile(
            secrets.token_hex(8),
            body["targetType"],
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(24),
            generated_at=self.clock(),
        )
        with self._lock:
            self._files[temp.file_id] = temp
        url = f"{self.base_url}/temp-files/{temp.file_id}"
        return _json({"get": f"{url}?sig={temp.get_sig}", "put": f"{url}?sig={temp.put_sig}"})

    def _temp_refusal(self, request: Request, file_id: str, method: str) -> tuple[_TempFile | None, Response | None]:
        if assumed.ORGVUE_TEMP_URL_REFUSES_AUTHORIZATION and "Authorization" in request.headers:
            return None, _error(400, "only one auth mechanism allowed: the URL is pre-signed", "InvalidArgument")
        with self._lock:
            temp = self._files.get(file_id)
        expected = None if temp is None else (temp.get_sig if method == "GET" else temp.put_sig)
        if temp is None or not secrets.compare_digest(request.args.get("sig", ""), expected or ""):
            return None, _error(403, "signature does not match", "SignatureDoesNotMatch")
        if self.clock() - temp.generated_at >= assumed.ORGVUE_TEMP_FILE_LIFETIME_SECONDS:
            # "Secure Temporary Files": removed 15 minutes after they are generated (the bytes are kept for
            # `file_content`, which tests read; the URLs no longer reach them)
            return None, _error(assumed.ORGVUE_TEMP_EXPIRED_STATUS, "Request has expired", "AccessDenied")
        return temp, None

    def _op_tempGet(self, request: Request, file_id: str) -> Response:  # noqa: N802 - operation name
        temp, refused = self._temp_refusal(request, file_id, "GET")
        if refused or temp is None:
            return refused or _error(403, "signature does not match", "SignatureDoesNotMatch")
        with self._wake:
            temp.reads += 1
            self._wake.notify_all()
            data = temp.data
        if data is None:
            return _error(404, "The specified key does not exist.", "NoSuchKey")
        mimetype = "application/json" if temp.target_type == "json" else "text/csv"
        return Response(data, status=200, mimetype=mimetype)

    def _op_tempPut(self, request: Request, file_id: str) -> Response:  # noqa: N802
        chunked = _is_chunked(request)
        if chunked or request.content_length is None:
            request.get_data()  # drained, so the client reads the refusal rather than a broken pipe
            return _error(
                assumed.ORGVUE_TEMP_PUT_CHUNKED_STATUS,
                "You must provide the Content-Length HTTP header.",
                "MissingContentLength",
            )
        temp, refused = self._temp_refusal(request, file_id, "PUT")
        if refused or temp is None:
            request.get_data()
            return refused or _error(403, "signature does not match", "SignatureDoesNotMatch")
        data = request.get_data()
        with self._lock:
            temp.data = data
            if not request.headers.get(WORKER_HEADER):
                self.uploads.append(RecordedUpload(file_id, len(data), chunked, request.content_length, data))
        return Response(status=200)

    def _op_ticket(self, request: Request, job_id: str) -> Response:
        """The job ticket's pre-signed link: the ticket again, with the job's current status."""
        if assumed.ORGVUE_TICKET_URL_IS_PRESIGNED and "Authorization" in request.headers:
            return _error(400, "only one auth mechanism allowed: the URL is pre-signed", "InvalidArgument")
        with self._wake:
            record = next((r for r in self.imports if r.job_id == job_id), None)
            if record is None or not secrets.compare_digest(request.args.get("sig", ""), record.ticket_sig):
                return _error(403, "signature does not match", "SignatureDoesNotMatch")
            record.polls += 1
            job = next((j for j in self._jobs if j.record is record), None)
            due = job is not None and (
                job.behaviour.polls is not None or self.clock() - job.started >= job.behaviour.queued_s
            )
            if due and record.status == assumed.ORGVUE_JOB_STATUS_CREATED:
                record.status = assumed.ORGVUE_JOB_STATUS_RUNNING
            self._wake.notify_all()
            ticket = self._ticket(record)
        return _json(ticket)

    def _ticket(self, record: RecordedImport) -> dict[str, Any]:
        ticket = assumed.orgvue_job_ticket(
            url=record.ticket_url,
            job_status=record.status,
            created_at=record.created_at,
            created_by=self.config.user,
            trace_id=record.trace_id,
        )
        if record.status == assumed.ORGVUE_JOB_STATUS_FAILED and record.result is not None:
            reason = str(record.result.get(assumed.ORGVUE_RESULT_MESSAGE_FIELD) or "the import failed")
            ticket.update(assumed.orgvue_errors(("ImportFailed", "IMPORT_FAILED", reason)))
        return ticket

    def _op_import(self, request: Request, tenant: str, dataset: str) -> Response:
        refused = self._authorised(request, tenant) or self._not_json(request)
        if refused:
            return refused
        if dataset != self.config.dataset_id:
            return _error(assumed.ORGVUE_UNKNOWN_DATASET_STATUS, f"dataset {dataset} not found", "DatasetNotFound")
        params = dict(request.args)
        problem = _query_problem(request)
        if problem:
            return _error(400, problem, "InvalidQueryParameter")
        body = _json_body(request)
        problem = _import_body_problem(body)
        if problem:
            return _error(400, problem, "InvalidBody")
        import_url = body["importLocation"]["url"]
        result_url = (body.get("resultLocation") or {}).get("url")
        with self._wake:
            if result_url is None:  # default: the original PUT URL of the imported file
                source = self._file_of(import_url)
                if source is not None:
                    result_url = f"{self.base_url}/temp-files/{source.file_id}?sig={source.put_sig}"
            job_id = str(uuid.uuid4())
            sig = secrets.token_urlsafe(24)
            record = RecordedImport(
                job_id=job_id,
                trace_id=f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}",
                body=body,
                params=params,
                ticket_url=f"{self.base_url}/job-tickets/{job_id}?sig={sig}",
                ticket_sig=sig,
                created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            )
            self.imports.append(record)
            self._jobs.append(
                _Job(
                    record=record,
                    behaviour=ImportBehaviour(**vars(self.import_behaviour)),
                    started=self.clock(),
                    import_url=import_url,
                    result_url=result_url,
                    callback_template=(body.get("callback") or {}).get("urlTemplate"),
                )
            )
            self._wake.notify_all()
            ticket = self._ticket(record)
        response = _json(ticket, status=assumed.ORGVUE_IMPORT_ACCEPTED_STATUS)
        response.headers[assumed.ORGVUE_TICKET_TRACE_FIELD] = record.trace_id
        return response

    def _file_of(self, url: str) -> _TempFile | None:
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.base_url or not parts.path.startswith("/temp-files/"):
            return None
        return self._files.get(parts.path.rsplit("/", 1)[-1])

    # --- asynchronous processing -----------------------------------------------------------------

    def _work(self) -> None:
        """The job worker: processes due jobs one at a time, off the request threads."""
        while True:
            with self._wake:
                due = self._due_job()
                while due is None and not self._stopping:
                    self._wake.wait(TICK_S)
                    due = self._due_job()
                if self._stopping or due is None:
                    return
                self._jobs.remove(due)
            self._process(due)

    def _due_job(self) -> _Job | None:
        for job in self._jobs:
            if job.behaviour.polls is not None:
                if job.record.polls >= job.behaviour.polls:
                    return job
            elif self.clock() - job.started >= job.behaviour.duration_s:
                return job
        return None

    def _process(self, job: _Job) -> None:
        record = job.record
        try:
            with self._lock:
                record.status = assumed.ORGVUE_JOB_STATUS_RUNNING
            status, document = self._run_import(job)
            with self._lock:
                record.result = document
                record.status = job.behaviour.reported_status or status
            if job.result_url:
                try:
                    put = requests.put(
                        job.result_url, data=json.dumps(document).encode(), headers={WORKER_HEADER: "result"}, timeout=5
                    )
                    record.result_put_status = put.status_code
                except requests.RequestException:
                    record.result_put_status = 0
            if job.callback_template and job.behaviour.send_callback:
                self._call_back(job.callback_template, record.status, record.trace_id)
        finally:
            record.processed.set()

    def _run_import(self, job: _Job) -> tuple[str, dict[str, Any]]:
        """Reads the data from the import location and applies it; (jobStatus, result document)."""
        trace_id = job.record.trace_id

        def failed(reason: str, counts: dict[str, int] | None = None) -> tuple[str, dict[str, Any]]:
            status = assumed.ORGVUE_JOB_STATUS_FAILED
            return status, assumed.orgvue_result_document(
                trace_id=trace_id, job_status=status, message=reason, counts=counts or {}
            )

        try:
            fetched = requests.get(job.import_url, timeout=5)
        except requests.RequestException as error:
            return failed(f"the import location could not be read: {type(error).__name__}")
        if not fetched.ok:
            return failed(f"the import location answered HTTP {fetched.status_code}")
        try:
            header, rows = _parse_items(fetched.content)
        except ValueError as error:
            return failed(str(error))
        if job.behaviour.fail_with:
            return failed(job.behaviour.fail_with, {"rows": len(rows), "errors": len(rows)})
        try:
            counts, errors = self._apply(header, rows, job.record.params)
        except ValueError as error:
            return failed(str(error))
        status = assumed.ORGVUE_JOB_STATUS_COMPLETED
        message = f"Processed {counts['rows']} items with {counts['errors']} errors"
        return status, assumed.orgvue_result_document(
            trace_id=trace_id, job_status=status, message=message, counts=counts, errors=errors
        )

    def _apply(
        self, header: list[str], rows: list[list[str]], params: Mapping[str, str]
    ) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """Applies the rows; items are matched by `idKey`, the autoId property or `_id` ("Query Parameters").
        The import is a refresh as the recipe describes it (items missing from the upload are deleted), unless
        `implicitDelete=false` (an assumption, see api_assumptions)."""
        action_at = header.index(ACTION_COLUMN)
        properties = [(index, name) for index, name in enumerate(header) if index != action_at]
        if params.get("idKey"):
            key_name = params["idKey"]
        elif params.get("autoId") == assumed.ORGVUE_QUERY_TRUE:
            key_name = self.config.auto_id_property
        else:
            key_name = assumed.ORGVUE_DEFAULT_ID_PROPERTY
        refresh = _refreshes(params.get("implicitDelete"))
        if key_name not in header and key_name != assumed.ORGVUE_DEFAULT_ID_PROPERTY:
            raise ValueError(f"the import data has no {key_name} column to identify items by")
        key_at = header.index(key_name) if key_name in header else -1
        counts = dict.fromkeys(assumed.ORGVUE_RESULT_COUNT_KEYS, 0)
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()

        def refuse(number: int, message: str) -> None:
            counts["errors"] += 1
            errors.append({"name": "RowError", "code": "ROW_REFUSED", "message": message, "row": number})

        with self._lock:
            for number, row in enumerate(rows, start=1):
                counts["rows"] += 1
                if len(row) != len(header):
                    refuse(number, f"expected {len(header)} fields, found {len(row)}")
                    continue
                action = row[action_at].strip().lower()
                key = row[key_at] if key_at >= 0 else ""
                if not key and action == "create" and key_name == assumed.ORGVUE_DEFAULT_ID_PROPERTY:
                    key = str(uuid.uuid4())  # Orgvue gives a new item its internal _id
                seen.add(key)
                values = {name: row[index] for index, name in properties}
                if action not in ACTIONS:
                    refuse(number, f"unknown _action {row[action_at]!r}; use create, update or delete")
                elif not key:
                    refuse(number, f"empty {key_name}")
                elif action == "create":
                    if key in self.items:
                        refuse(number, f"{key} already exists")
                    else:
                        self.items[key] = values
                        counts["created"] += 1
                elif key not in self.items:
                    refuse(number, f"{key} does not exist")
                elif action == "update":
                    self.items[key].update({name: value for name, value in values.items() if value != ""})
                    counts["updated"] += 1
                else:
                    del self.items[key]
                    counts["deleted"] += 1
            if refresh:
                for key in [key for key in self.items if key not in seen]:
                    del self.items[key]
                    counts["deleted"] += 1
        return counts, errors

    def _call_back(self, template: str, status: str, trace_id: str) -> None:
        values = {"jobStatus": status, "traceId": trace_id, "tenantId": self.config.tenant_id}
        url = PLACEHOLDER.sub(lambda match: quote(values[match.group(1)], safe=""), template)
        try:
            answer = requests.get(url, timeout=5).status_code
        except requests.RequestException:
            answer = 0
        with self._lock:
            self.callbacks.append(RecordedCallback(url, answer))


def _refreshes(implicit_delete: str | None) -> bool:
    """Whether an import deletes the items missing from its upload: the recipe's refresh when `implicitDelete` is
    absent (found), none with `implicitDelete=false` (assumption), a refresh with `true`."""
    if implicit_delete is None:
        return assumed.ORGVUE_IMPORT_REFRESHES_BY_DEFAULT
    if implicit_delete == assumed.ORGVUE_QUERY_FALSE:
        return not assumed.ORGVUE_IMPLICIT_DELETE_FALSE_KEEPS_MISSING_ITEMS
    return implicit_delete == assumed.ORGVUE_QUERY_TRUE


def _import_body_problem(body: Any) -> str | None:
    """Why an items/import body is malformed, or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    shapes = (("importLocation", "GET", "url", True), ("resultLocation", "PUT", "url", False))
    for name, method, url_key, required in (*shapes, ("callback", "GET", "urlTemplate", False)):
        value = body.get(name)
        if value is None:
            if required:
                return f"{name} is required"
            continue
        if not isinstance(value, Mapping):
            return f"{name} must be an object"
        if value.get("method") != method:
            return f"{name}.method must be {method}"
        url = value.get(url_key)
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            return f"{name}.{url_key} must be an absolute http(s) URL"
    return None


def _parse_items(data: bytes) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the import data (CSV, or the JSON array form turned into rows)."""
    text = data.decode("utf-8-sig", errors="strict") if data else ""
    if text.lstrip().startswith("["):
        items = json.loads(text)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ValueError("the JSON import data must be an array of objects")
        names: list[str] = [ACTION_COLUMN]
        for item in items:
            names.extend(name for name in item if name not in names)
        rows = [["" if item.get(name) is None else str(item.get(name)) for name in names] for item in items]
        header = names
    else:
        try:
            parsed = [row for row in csv.reader(io.StringIO(text), strict=True) if row]
        except csv.Error as error:
            raise ValueError(f"the import data is not valid CSV: {error}") from error
        if not parsed:
            raise ValueError("the import data is empty")
        header, rows = [cell.strip() for cell in parsed[0]], parsed[1:]
    if ACTION_COLUMN not in header:
        raise ValueError("the import data has no _action column")
    if len(header) < 2:
        raise ValueError("the import data has no property columns besides _action")
    return header, rows


def _query_problem(request: Request) -> str | None:
    """Why the import's query is refused ("Query Parameters"), or None."""
    unknown = sorted(set(request.args) - assumed.ORGVUE_QUERY_PARAMETERS)
    if unknown:
        return f"unknown query parameter(s): {', '.join(unknown)}"
    booleans = (assumed.ORGVUE_QUERY_TRUE, assumed.ORGVUE_QUERY_FALSE)
    for name in ("implicitDelete", "autoId"):
        if name in request.args and request.args[name] not in booleans:
            return f"{name} must be true or false"
    if "dateFormat" in request.args and request.args["dateFormat"] not in assumed.ORGVUE_DATE_FORMATS:
        return f"dateFormat must be one of {', '.join(assumed.ORGVUE_DATE_FORMATS)}"
    if request.args.get("autoId") == assumed.ORGVUE_QUERY_TRUE and request.args.get("idKey"):
        return "autoId and idKey cannot be used together"
    if "idKey" in request.args and not request.args["idKey"].strip():
        return "idKey must name a property"
    return None


def _is_chunked(request: Request) -> bool:
    return "chunked" in (request.headers.get("Transfer-Encoding") or "").lower()


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.get_data() or b"null")
    except ValueError:
        return None


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _error(status: int, message: str, code: str | None = None) -> Response:
    """An error in Orgvue's documented shape: {"errors": [{"name", "code", "message"}]}."""
    name = ERROR_NAMES.get(status, "InternalError" if status >= 500 else "Error")
    return _json(assumed.orgvue_errors((name, code or name, message)), status=status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8901)
    parser.add_argument("--token", default=OrgvueEmulatorConfig.token)
    parser.add_argument("--tenant-id", default=OrgvueEmulatorConfig.tenant_id)
    parser.add_argument("--dataset-id", default=OrgvueEmulatorConfig.dataset_id)
    parser.add_argument("--import-seconds", type=float, default=ImportBehaviour.duration_s)
    args = parser.parse_args()
    config = OrgvueEmulatorConfig(tenant_id=args.tenant_id, dataset_id=args.dataset_id, token=args.token)
    emulator = OrgvueEmulator(config, port=args.port)
    emulator.import_behaviour.duration_s = args.import_seconds
    print(
        f"Orgvue emulator on {emulator.base_url} (tenant {config.tenant_id}, dataset {config.dataset_id}, "
        f"token {args.token})"
    )
    emulator.serve_forever()


if __name__ == "__main__":
    main()
