"""Orgvue as an import target: its Async Import (temporary files, the items/import PUT, job tickets, callback).

Flow (seed 003, Orgvue's "Async Import Integration" recipe): generate a temporary file for the data, PUT the
CSV to it (with Content-Length: pre-signed URLs take no chunked uploads, "Secure Temporary Files"), generate a
temporary file for the result, then PUT `.../datasets/{datasetId}/items/import` with the data's GET URL, the
result's PUT URL and a callback URL template. Orgvue answers with a **job ticket** ("Keeping Track of a
Request"): its `_links.self.url` is polled for `jobStatus` (created, running, completed, failed) and its
`X-Amzn-Trace-Id` names the job (the callback's {{traceId}}). The callback only ends the loop's wait early;
the result document adds counts. Query parameters ("Query Parameters"): `implicitDelete` (always sent,
default false), `dateFormat`, and `idKey=<property>` or `autoId=true`.
Everything guessed about the API lives in `people_sync.api_assumptions` (section Orgvue).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

import requests
from urllib3.util.retry import Retry

from people_sync import api_assumptions as assumed
from people_sync.charthop_client import RETRY_AFTER_MAX, RETRYABLE_STATUSES, BudgetAdapter, default_retry
from people_sync.csv_checks import CsvProblem, CsvRejected
from people_sync.errors import ImportMayHaveStarted, TargetRejected, TargetUnavailable
from people_sync.models import ImportJob, ImportState, ImportStatus, StagedFile
from people_sync.targets.base import OpenBody

logger = logging.getLogger(__name__)

# --- found (shared/reference/README.md) ----------------------------------------------------------------
#: The CSV column that says what to do with each item, and its values (seed 003).
ACTION_COLUMN = "_action"
ACTIONS = ("create", "update", "delete")
#: Tenant ids (Orgvue's API docs, via the reference README).
TENANT_ID_PATTERN = r"^[A-Z][A-Z0-9_]{0,29}$"
#: The Content-Type header the recipe asks for (seed 003, step 3).
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
#: The callback's placeholders, as the recipe's example spells the query (seed 003, step 7).
CALLBACK_QUERY = "status={{jobStatus}}&traceId={{traceId}}&tenantId={{tenantId}}"
DATA_TARGET = {"targetType": "csv", "targetEncoding": "identity"}
#: dateFormat values ("Query Parameters"); the first is Orgvue's default.
DATE_FORMATS = assumed.ORGVUE_DATE_FORMATS

#: (connect, read) seconds; an upload's read timeout covers the storage's answer after the body.
DEFAULT_TIMEOUT = (5.0, 60.0)
#: Bytes read from the staged file at a time, and the most a header row may take.
CHUNK = 1024 * 1024
MAX_HEADER_BYTES = 1024 * 1024


class TemporaryFileExpired(TargetUnavailable):
    """A temporary file was too old to use (Orgvue deletes them 15 minutes after they are generated)."""


@dataclass(frozen=True)
class TempFile:
    """A temporary file's pre-signed URLs: `get` to read it, `put` to write it; `generated_at` on the client's
    clock (it is deleted ORGVUE_TEMP_FILE_LIFETIME_SECONDS after that)."""

    get: str
    put: str
    target_type: str = "csv"
    generated_at: float = 0.0


class OrgvueClient:
    """The Orgvue calls this app makes; every method raises TargetUnavailable or TargetRejected.

    API calls carry the bearer token; the temporary files' and the job ticket's pre-signed URLs get no
    Authorization header (assumption, see api_assumptions), so the token never travels to the storage host.
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str,
        tenant_id: str,
        dataset_id: str,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: Retry | None = None,
        session: requests.Session | None = None,
        upload_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self.dataset_id = dataset_id
        self.timeout = timeout
        self.retry = retry or default_retry()
        self.upload_attempts = max(1, upload_attempts)
        self.sleep = sleep
        self.clock = clock
        self.session = session or requests.Session()
        for prefix in ("https://", "http://"):
            self.session.mount(prefix, BudgetAdapter(max_retries=self.retry))
        # generating a temporary file twice only leaves an unused one to expire: safe to repeat after a 5xx
        self.session.mount(
            self._url("/files/generate"), BudgetAdapter(max_retries=self.retry.new(allowed_methods=None))
        )
        # the import PUT is not idempotent: only a 429 (refused before acting) or a connection that never
        # opened is repeated; a 5xx, a read timeout or a reset is not (ChartHopRetry repeats 429s for any method)
        self.session.mount(
            self._url(self._import_path()),
            BudgetAdapter(max_retries=self.retry.new(allowed_methods=frozenset({"GET", "HEAD"}), other=0)),
        )
        self.session.headers.update(
            {"Authorization": f"Bearer {token}", "Accept": "application/json", "Content-Type": JSON_CONTENT_TYPE}
        )
        # pre-signed URLs: no token; tickets and results are read with retries, uploads repeated by hand
        self._files = requests.Session()
        for prefix in ("https://", "http://"):
            self._files.mount(prefix, BudgetAdapter(max_retries=self.retry))
        self._uploads = requests.Session()

    # --- API calls -------------------------------------------------------------------------------

    def generate_file(self, target_type: str) -> TempFile:
        """A new temporary file (`targetType` csv or json) to upload data to or receive a result in."""
        body = {**DATA_TARGET, "targetType": target_type}
        generated_at = self.clock()
        data = self._json("POST", "/files/generate", json=body, what="generate a temporary file")
        if not isinstance(data.get("get"), str) or not isinstance(data.get("put"), str):
            raise TargetUnavailable(
                "Orgvue answered the temporary-file request without GET and PUT URLs.", detail=str(data)[:500]
            )
        return TempFile(get=data["get"], put=data["put"], target_type=target_type, generated_at=generated_at)

    def start_import(
        self, import_url: str, result_url: str | None, callback_template: str | None, params: dict[str, str]
    ) -> dict[str, Any]:
        """PUTs the asynchronous import and returns its job ticket (the answer's JSON body).

        Never repeated after a 5xx, a timeout or a reset: Orgvue may have started the import, and a second one
        would apply the same actions twice. Those raise ImportMayHaveStarted. A 429 is repeated.
        """
        body: dict[str, Any] = {"importLocation": {"method": "GET", "url": import_url}}
        if result_url:
            body["resultLocation"] = {"method": "PUT", "url": result_url}
        if callback_template:
            body["callback"] = {"method": "GET", "urlTemplate": callback_template}
        what = "start the import"
        maybe = (
            "Orgvue may have started the import: people-sync does not repeat the request, because a second "
            "import would apply the file twice. Check the dataset in Orgvue before staging the file again."
        )
        try:
            response = self.session.request(
                assumed.ORGVUE_IMPORT_METHOD,
                self._url(self._import_path()),
                params=params,
                json=body,
                timeout=self.timeout,
            )
        except requests.ConnectTimeout as exc:  # the connection never opened: nothing was sent
            raise TargetUnavailable(f"Orgvue did not answer when trying to {what}.", detail=type(exc).__name__) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ImportMayHaveStarted(
                f"Orgvue did not answer the request to start the import ({type(exc).__name__}). {maybe}",
                detail=type(exc).__name__,
            ) from exc
        if response.status_code == assumed.ORGVUE_RATE_LIMIT_STATUS:
            raise _unavailable(response, what)
        if response.status_code >= 500:
            raise ImportMayHaveStarted(
                f"Orgvue answered HTTP {response.status_code} ({_error_text(response)}) to the request to start "
                f"the import. {maybe}",
                detail=response.text[:500],
            )
        if not response.ok:
            raise _rejected(response, what, self._hints())
        try:
            data = response.json()
        except ValueError:
            data = None
        return data if isinstance(data, dict) else {"raw": response.text[:500]}

    def read_ticket(self, url: str) -> dict[str, Any]:
        """The job ticket as its pre-signed `_links.self.url` answers it now (no Authorization header)."""
        what = "read the import's job ticket"
        with _transport_errors(what):
            response = self._files.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
        if not response.ok:
            if response.status_code in RETRYABLE_STATUSES:
                raise _unavailable(response, what)
            # an expired or refused ticket link is not the file's fault: the loop waits it out (or the callback
            # arrives), and a persistent refusal ends the sync without claiming the import failed
            raise TargetUnavailable(
                f"Orgvue's job ticket link answered HTTP {response.status_code} ({_error_text(response)}).",
                detail=response.text[:500],
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise TargetUnavailable(
                "Orgvue's job ticket link answered without a JSON ticket.", detail=response.text[:500]
            )
        return data

    # --- temporary files -------------------------------------------------------------------------

    def age(self, temp: TempFile) -> float:
        """Seconds since the temporary file was generated (on this client's clock)."""
        return self.clock() - temp.generated_at

    def upload(self, temp: TempFile, open_upload: Callable[[], tuple[Any, Callable[[], None]]]) -> TempFile:
        """PUTs a body of known length to a temporary file, re-opening it for each attempt; returns the file
        written (a fresh one when the first grew too old to start an import from before an attempt).

        `open_upload` returns (body, close): a file-like object with a `len`, always sent with Content-Length
        (pre-signed URLs refuse chunked uploads). A streamed body cannot be replayed, so the retrying adapter is
        not used; a PUT to the same URL only overwrites the file, so repeating it by hand is safe.
        CsvRejected raised while the body is read propagates unchanged.
        """
        last: TargetUnavailable | None = None
        retry_after: float | None = None
        for attempt in range(self.upload_attempts):
            if last is not None:
                self.sleep(min(RETRY_AFTER_MAX, retry_after if retry_after is not None else 0.5 * 2 ** (attempt - 1)))
            if self.age(temp) >= assumed.ORGVUE_IMPORT_START_DEADLINE_SECONDS:
                temp = self.generate_file(temp.target_type)  # harmless: the old one expires unused
            body, close = open_upload()
            if getattr(body, "len", None) is None:
                close()
                raise TypeError("an upload body must carry its length (pre-signed URLs take no chunked uploads)")
            try:
                response = self._uploads.put(temp.put, data=body, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last, retry_after = TargetUnavailable("Orgvue's temporary file did not answer the upload."), None
                last.detail = type(exc).__name__
                continue
            finally:
                close()
            if response.ok:
                return temp
            if _expired(response, self.age(temp)):
                raise TemporaryFileExpired(
                    f"Orgvue's temporary file expired before the upload finished ({_error_text(response)}; Orgvue "
                    "deletes temporary files 15 minutes after they are generated). Nothing was imported.",
                    detail=response.text[:500],
                )
            if response.status_code not in RETRYABLE_STATUSES:
                raise _rejected(response, "take the upload of the file", self._hints())
            last, retry_after = _unavailable(response, "take the upload of the file"), _retry_after(response)
        assert last is not None
        raise last

    def read_result(self, get_url: str) -> dict[str, Any] | str | None:
        """The result document, or None while nothing is written there yet.

        Returns the raw text when the document is not JSON (the format is an assumption; the caller says so).
        """
        with _transport_errors("read the import result"):
            response = self._files.get(get_url, timeout=self.timeout, headers={"Accept": "application/json"})
        if response.status_code in assumed.ORGVUE_RESULT_NOT_WRITTEN_STATUSES or (
            response.ok and not response.content.strip()
        ):
            return None
        if not response.ok:
            if response.status_code in RETRYABLE_STATUSES:
                raise _unavailable(response, "read the import result")
            raise _rejected(response, "hand over the import result", self._hints())
        try:
            data = response.json()
        except ValueError:
            return response.text
        return data if isinstance(data, dict) else response.text

    # --- plumbing --------------------------------------------------------------------------------

    def _import_path(self) -> str:
        return f"/datasets/{self.dataset_id}/items/import"

    def _url(self, path: str) -> str:
        return f"{self.base_url}/api/v1/{self.tenant_id}{path}"

    def _json(self, method: str, path: str, *, what: str, **kwargs: Any) -> dict[str, Any]:
        with _transport_errors(what):
            response = self.session.request(method, self._url(path), timeout=self.timeout, **kwargs)
        if not response.ok:
            if response.status_code in RETRYABLE_STATUSES:
                raise _unavailable(response, what)
            raise _rejected(response, what, self._hints())
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise TargetUnavailable(f"Orgvue answered without JSON when trying to {what}.", detail=response.text[:500])
        return data

    def _hints(self) -> dict[int, str]:
        return {
            401: "Orgvue refused the API token; create a new one on Orgvue's Tokens page and store it in the secret",
            403: f"the API user lacks permission for tenant {self.tenant_id} (check OrgvueTenantId and the user's "
            "token permission in Orgvue's User Management), or a temporary file's URL has expired",
            404: f"tenant {self.tenant_id} has no dataset {self.dataset_id}; check OrgvueDatasetId and OrgvueBaseUrl",
        }


class OrgvueTarget:
    """Imports a staged CSV into one Orgvue dataset; follows its job ticket, and Orgvue calls back when done."""

    name = "orgvue"
    display_name = "Orgvue"
    calls_back = True
    min_check_interval_seconds = 5

    def __init__(
        self,
        client: OrgvueClient,
        *,
        default_action: str | None = None,
        implicit_delete: bool = False,
        id_key: str | None = None,
        date_format: str = DATE_FORMATS[0],
    ) -> None:
        if default_action is not None and default_action.strip().lower() not in ACTIONS:
            raise ValueError(f"OrgvueDefaultAction must be one of {', '.join(ACTIONS)}, not {default_action!r}")
        if date_format not in DATE_FORMATS:
            raise ValueError(f"OrgvueDateFormat must be one of {', '.join(DATE_FORMATS)}, not {date_format!r}")
        self.client = client
        self.default_action = default_action.strip().lower() if default_action else None
        self.implicit_delete = implicit_delete
        self.id_key = (id_key or "").strip() or None
        self.date_format = date_format

    def query(self) -> dict[str, str]:
        """The items/import query ("Query Parameters"): deletion is always explicit; items are matched by the
        dataset's own key (`idKey`) or its autoId property, never by Orgvue's internal `_id`."""
        params = {
            "implicitDelete": assumed.ORGVUE_QUERY_TRUE if self.implicit_delete else assumed.ORGVUE_QUERY_FALSE,
            "dateFormat": self.date_format,
        }
        if self.id_key:
            params["idKey"] = self.id_key
        else:
            params["autoId"] = assumed.ORGVUE_QUERY_TRUE
        return params

    def start_import(
        self, staged: StagedFile, open_body: OpenBody, *, sync_id: str, callback_url: str | None = None
    ) -> ImportJob:
        has_action = self._check_header(open_body, staged.name)  # refuses a file before any upload
        if has_action:
            opener = lambda: self._sized(open_body)  # noqa: E731
        else:
            # a first pass counts the rewritten file's length (the checks read it whole, nothing is kept), so
            # the upload carries Content-Length; the temporary file is generated only after it
            length = _transformed_length(open_body, staged.name, self._action())
            opener = lambda: self._with_action(open_body, staged.name, length)  # noqa: E731
        data = self.client.upload(self.client.generate_file(DATA_TARGET["targetType"]), opener)
        age = self.client.age(data)
        if age >= assumed.ORGVUE_IMPORT_START_DEADLINE_SECONDS:
            raise TemporaryFileExpired(
                f"Uploading {staged.name} to Orgvue took {age / 60:.0f} minutes; Orgvue deletes temporary files "
                f"15 minutes after they are generated, so the import was not started (Orgvue might not read the "
                "file in time). Nothing was imported."
            )
        result = self.client.generate_file(assumed.ORGVUE_RESULT_TARGET_TYPE)  # lives from now on
        template = callback_template(callback_url) if callback_url else None
        if self.implicit_delete:
            logger.warning(
                "Orgvue implicitDelete is on: items missing from the file will be deleted from the dataset",
                extra={"file": staged.name, "dataset": self.client.dataset_id},
            )
        ticket = self.client.start_import(data.get, result.put, template, self.query())
        return self._job(ticket, result.get, sync_id)

    def _job(self, ticket: dict[str, Any], result_url: str, sync_id: str) -> ImportJob:
        """The job to follow from the import's answer. The import was accepted (2xx): whatever the ticket lacks,
        the sync must not claim nothing started."""
        links = ticket.get(assumed.ORGVUE_TICKET_LINKS_FIELD)
        link = links.get("self") if isinstance(links, dict) else None
        ticket_url = link.get("url") if isinstance(link, dict) else None
        trace_id = ticket.get(assumed.ORGVUE_TICKET_TRACE_FIELD)
        if not isinstance(ticket_url, str) or not ticket_url:
            ticket_url = None
        if not isinstance(trace_id, str) or not trace_id:
            trace_id = None
        if ticket_url is None and trace_id is None:
            raise ImportMayHaveStarted(
                "Orgvue accepted the import but answered without a job ticket (no _links.self.url, no "
                "X-Amzn-Trace-Id), so people-sync cannot follow it; the import has probably begun. Check the "
                "dataset in Orgvue before staging the file again.",
                detail=str(ticket)[:500],
            )
        import_id = trace_id or "ticket-" + hashlib.sha256(urlsplit(str(ticket_url)).path.encode()).hexdigest()[:16]
        detail: dict[str, Any] = {"resultUrl": result_url, "syncId": sync_id, "implicitDelete": self.implicit_delete}
        if ticket_url:
            detail["ticketUrl"] = ticket_url
        if trace_id:
            detail["traceId"] = trace_id
        status = ticket.get(assumed.ORGVUE_TICKET_STATUS_FIELD)
        if isinstance(status, str):
            detail["jobStatus"] = status
        logger.info("Orgvue import started", extra={"trace_id": trace_id, "job_status": status})
        return ImportJob(import_id=import_id, detail=detail)

    def abandon(self, job: ImportJob) -> None:
        """Nothing is held for an import here."""

    def import_status(self, job: ImportJob, open_body: OpenBody) -> tuple[ImportStatus, ImportJob]:
        """The callback, when it came for this job and names an end, decides at once (the fast path);
        otherwise the job ticket is polled. An end adds the result document's counts when readable."""
        callback = job.detail.get("callback")
        called = (
            str(callback.get("status") or "").strip().lower()
            if isinstance(callback, dict) and _same_job(callback, job)
            else None
        )
        ticket: dict[str, Any] = {}
        if called in _ENDED:
            job_status: str | None = called
        elif isinstance(job.detail.get("ticketUrl"), str):
            ticket = self.client.read_ticket(job.detail["ticketUrl"])
            raw = ticket.get(assumed.ORGVUE_TICKET_STATUS_FIELD)
            job_status = raw.strip().lower() if isinstance(raw, str) else repr(raw)
        elif called:
            job_status = called
        else:
            return ImportStatus(
                state="running", message="Orgvue is importing the file (waiting for its callback)."
            ), job
        if job_status == assumed.ORGVUE_JOB_STATUS_CREATED:
            return ImportStatus(state="pending", message="Orgvue has queued the import."), job
        if job_status == assumed.ORGVUE_JOB_STATUS_RUNNING:
            return ImportStatus(state="running", message="Orgvue is importing the file."), job
        if job_status not in _ENDED:
            return (
                ImportStatus(
                    state="failed",
                    progress=1.0,
                    message=(
                        f"Orgvue reported job status {job_status!r}, which is not one of "
                        f"{', '.join(assumed.ORGVUE_JOB_STATUSES)}; people-sync cannot tell how the import ended. "
                        "Check the dataset in Orgvue"
                    ),
                ),
                job,
            )
        return self._ended(job, job_status, ticket), job

    def _ended(self, job: ImportJob, job_status: str, ticket: dict[str, Any]) -> ImportStatus:
        """The job ended: its status decides, the result document (when readable) adds counts and reasons."""
        document: dict[str, Any] | str | None = None
        result_url = job.detail.get("resultUrl")
        if isinstance(result_url, str):
            try:
                document = self.client.read_result(result_url)
            except (TargetUnavailable, TargetRejected) as error:
                logger.warning("Orgvue result unreadable after the job ended", extra={"error": error.user_message})
        ticket_errors = _error_messages(ticket.get(assumed.ORGVUE_ERRORS_FIELD))
        written = document.get(assumed.ORGVUE_RESULT_STATUS_FIELD) if isinstance(document, dict) else None
        if isinstance(document, dict) and str(written or "").strip().lower() in _ENDED:
            status = _status_from_result(document)
            if job_status == assumed.ORGVUE_JOB_STATUS_FAILED and status.state != "failed":
                status = status.model_copy(
                    update={"state": "failed", "message": _failed_message(None, job_status, ticket_errors)}
                )
            return status
        if job_status == assumed.ORGVUE_JOB_STATUS_COMPLETED:
            return ImportStatus(state="done", progress=1.0, message="Orgvue finished the import.")
        return ImportStatus(state="failed", progress=1.0, message=_failed_message(None, job_status, ticket_errors))

    def _action(self) -> str:
        assert self.default_action is not None
        return self.default_action

    def _check_header(self, open_body: OpenBody, name: str) -> bool:
        """Whether the file has an `_action` column; refuses a file Orgvue could not import at all."""
        stream, _ = open_body()
        try:
            header = [cell.strip() for cell in _header(_read_head(stream, name), name)]
        finally:
            _close(stream)
        if self.id_key and self.id_key not in header:
            raise CsvRejected(
                CsvProblem(
                    "missing-id-key",
                    f"{name} has no {self.id_key} column; Orgvue matches items by it (OrgvueIdKey).",
                )
            )
        if ACTION_COLUMN in header:
            return True
        if self.default_action is None:
            raise CsvRejected(
                CsvProblem(
                    "missing-action",
                    f"{name} has no _action column; Orgvue needs create/update/delete per row. "
                    "Add the column or set OrgvueDefaultAction.",
                )
            )
        return False

    @staticmethod
    def _sized(open_body: OpenBody) -> tuple[Any, Callable[[], None]]:
        stream, size = open_body()
        return _SizedBody(stream, size), lambda: _close(stream)

    def _with_action(self, open_body: OpenBody, name: str, length: int) -> tuple[Any, Callable[[], None]]:
        stream, _ = open_body()
        return _CountedBody(_with_action_column(stream, name, self._action()), length), lambda: _close(stream)


_ENDED = (assumed.ORGVUE_JOB_STATUS_COMPLETED, assumed.ORGVUE_JOB_STATUS_FAILED)


def _same_job(callback: dict[str, Any], job: ImportJob) -> bool:
    """A callback whose traceId is not this job's X-Amzn-Trace-Id is someone else's: poll the ticket instead."""
    expected, got = job.detail.get("traceId"), callback.get("traceId")
    if expected and got and str(got) != str(expected):
        logger.warning("Orgvue callback for another job ignored", extra={"expected": expected, "got": got})
        return False
    return True


def callback_template(callback_url: str) -> str:
    """Our callback URL with Orgvue's placeholders appended to its query."""
    if callback_url.endswith(("?", "&")):
        return callback_url + CALLBACK_QUERY
    return callback_url + ("&" if "?" in callback_url else "?") + CALLBACK_QUERY


# --- result documents ------------------------------------------------------------------------------


def _status_from_result(document: dict[str, Any] | str) -> ImportStatus:
    """A written result means processing is over: done or failed, with counts and a readable message."""
    if not isinstance(document, dict):
        return ImportStatus(
            state="failed",
            progress=1.0,
            message="Orgvue wrote an import result people-sync cannot read; check the dataset in Orgvue.",
            results={"raw": document[:500]},
        )
    job_status = str(document.get(assumed.ORGVUE_RESULT_STATUS_FIELD) or "").strip()
    summary = document.get(assumed.ORGVUE_RESULT_SUMMARY_FIELD)
    counts = (
        {key: summary[key] for key in assumed.ORGVUE_RESULT_COUNT_KEYS if isinstance(summary.get(key), int)}
        if isinstance(summary, dict)
        else {}
    )
    reason = document.get(assumed.ORGVUE_RESULT_MESSAGE_FIELD)
    reason = str(reason).strip() if reason else None
    first_errors = _first_errors(document.get(assumed.ORGVUE_RESULT_ERRORS_FIELD))
    lowered = job_status.lower()
    state: ImportState
    if lowered == assumed.ORGVUE_JOB_STATUS_COMPLETED:
        state = "done"
        message = _done_message(counts, first_errors, reason)
    elif lowered == assumed.ORGVUE_JOB_STATUS_FAILED:
        state = "failed"
        message = _failed_message(reason, job_status, first_errors)
    else:
        state = "failed"
        message = (
            f"Orgvue wrote an import result with status {job_status or 'missing'!r}, which people-sync does not "
            "recognise; check the dataset in Orgvue."
        )
    return ImportStatus(state=state, progress=1.0, message=message, results=counts)


def _first_errors(errors: Any, limit: int = 3) -> list[str]:
    if not isinstance(errors, list):
        return []
    texts = []
    for error in errors[:limit]:
        if isinstance(error, dict):
            row = error.get("row")
            text = str(error.get("message") or error.get("name") or error.get("code") or "")
            texts.append(f"row {row}: {text}" if row is not None else text)
        else:
            texts.append(str(error))
    return texts


def _error_messages(errors: Any, limit: int = 3) -> list[str]:
    """Messages of an error list in Orgvue's documented shape [{"name", "code", "message"}]."""
    return [text for text in _first_errors(errors, limit) if text]


def _done_message(counts: dict[str, int], first_errors: list[str], reason: str | None) -> str:
    parts = [f"{counts[key]} {key}" for key in ("created", "updated", "deleted") if counts.get(key)]
    text = "Orgvue imported the file" + (f" ({', '.join(parts)})" if parts else "") + "."
    if counts.get("errors"):
        text += f" {counts['errors']} rows were refused"
        text += f": {'; '.join(first_errors)}." if first_errors else "."
    elif reason and not parts:
        text += f" {reason}"
    return text


def _failed_message(reason: str | None, job_status: str, first_errors: list[str] | None = None) -> str:
    text = f"Orgvue could not import the file: {reason}" if reason else f"Orgvue's import ended {job_status!r}"
    if first_errors:
        text += f" ({'; '.join(first_errors)})"
    return text.rstrip(".") + "."


# --- streaming the CSV -----------------------------------------------------------------------------


class _SizedBody:
    """The staged stream with a known length: requests sends it with Content-Length, block by block."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self._raw = raw
        self.len = size

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size if size is not None and size >= 0 else CHUNK)


class _CountedBody:
    """A generated body whose length was counted beforehand: sent with Content-Length, a block at a time.

    It refuses to send more or fewer bytes than it declared (the staged version cannot change, so this is a
    guard, not a path): a mismatch aborts the upload instead of leaving the storage waiting for bytes.
    """

    def __init__(self, pieces: Iterator[bytes], length: int) -> None:
        self._pieces = pieces
        self._pending = b""
        self.len = length
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        size = size if size is not None and size > 0 else CHUNK
        while len(self._pending) < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._pending += piece
        block, self._pending = self._pending[:size], self._pending[size:]
        self.sent += len(block)
        if self.sent > self.len or (not block and self.sent != self.len):
            raise TargetUnavailable(
                f"The file changed while it was uploaded to Orgvue ({self.sent} bytes, {self.len} counted); "
                "nothing was imported."
            )
        return block


def _transformed_length(open_body: OpenBody, name: str, action: str) -> int:
    """The byte length of the file with the `_action` column added, counted in a streaming first pass: one
    block of the output is held at a time, whatever the file's size. Raises CsvRejected as the upload would."""
    stream, _ = open_body()
    try:
        return sum(len(piece) for piece in _with_action_column(stream, name, action))
    finally:
        _close(stream)


def _read_head(stream: IO[bytes], name: str) -> bytes:
    """The first bytes up to the end of the header record (a newline outside quotes)."""
    head = b""
    while True:
        chunk = stream.read(64 * 1024)
        head += chunk
        end = _header_end(head)
        if end >= 0 or not chunk:
            return head
        if len(head) > MAX_HEADER_BYTES:
            raise CsvRejected(CsvProblem("header-too-long", f"{name} has a header row longer than 1 MiB."))


def _header_end(data: bytes) -> int:
    quoted = False
    for index, byte in enumerate(data):
        if byte == 0x22:
            quoted = not quoted
        elif byte == 0x0A and not quoted:
            return index
    return -1


def _header(head: bytes, name: str) -> list[str]:
    end = _header_end(head)
    first = head if end < 0 else head[: end + 1]
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CsvRejected(
            CsvProblem("not-utf8", f"{name} is not UTF-8 text ({error.reason}); save it as CSV UTF-8.")
        ) from error
    try:
        row = next(csv.reader(io.StringIO(text), strict=True), None)
    except csv.Error as error:
        raise CsvRejected(CsvProblem("malformed-csv", f"{name} is not valid CSV: {error}.")) from error
    if not row:
        raise CsvRejected(CsvProblem("empty-file", f"{name} has no header row."))
    return row


def _with_action_column(stream: IO[bytes], name: str, action: str) -> Iterator[bytes]:
    """The CSV with `_action` as a first column (`action` on every row), re-written with CSV quoting.

    A generator yielding blocks of about CHUNK bytes, so the file is never wholly in memory; the same input
    always gives the same bytes (the length pass and the upload agree).
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()

    def lines() -> Iterator[str]:
        carry = ""
        while True:
            chunk = stream.read(CHUNK)
            try:
                text = carry + decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                raise CsvRejected(
                    CsvProblem("not-utf8", f"{name} is not UTF-8 text ({error.reason}); save it as CSV UTF-8.")
                ) from error
            parts = text.split("\n")
            carry = parts.pop()
            for part in parts:
                yield part + "\n"
            if not chunk:
                if carry:
                    yield carry
                return

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    first = True
    try:
        for row in csv.reader(lines(), strict=True):
            if not row or row == [""]:
                continue  # blank line: not an item
            writer.writerow([ACTION_COLUMN if first else action, *row])
            first = False
            if buffer.tell() >= CHUNK:
                yield buffer.getvalue().encode("utf-8")
                buffer.seek(0)
                buffer.truncate()
    except csv.Error as error:
        raise CsvRejected(CsvProblem("malformed-csv", f"{name} is not valid CSV: {error}.")) from error
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def _close(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close:
        close()


# --- errors ----------------------------------------------------------------------------------------


@contextmanager
def _transport_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TargetUnavailable(
            f"Orgvue did not answer when trying to {what}; will retry.", detail=type(exc).__name__
        ) from exc


def _unavailable(response: requests.Response, what: str) -> TargetUnavailable:
    return TargetUnavailable(
        f"Orgvue is unavailable (HTTP {response.status_code}) when trying to {what}.", detail=response.text[:500]
    )


def _rejected(response: requests.Response, what: str, hints: dict[int, str]) -> TargetRejected:
    reason = _error_text(response)
    hint = hints.get(response.status_code)
    text = f"Orgvue refused to {what} (HTTP {response.status_code}: {reason})"
    message = f"{hint[0].upper()}{hint[1:]}. {text}." if hint else f"{text}."
    return TargetRejected(message, status=response.status_code, detail=response.text[:500])


def _error_text(response: requests.Response) -> str:
    """What the answer says went wrong: the messages of Orgvue's documented error shape
    {"errors": [{"name", "code", "message"}]} (Orgvue's guide), an S3-style XML <Message> from a pre-signed
    URL, or the text."""
    try:
        body = response.json()
    except ValueError:
        text = (response.text or "").strip()
        found = re.search(r"<Message>(.*?)</Message>", text, re.DOTALL)
        if found:
            return found.group(1).strip()[:200]
        return text[:200] or response.reason or "no detail"
    if isinstance(body, dict):
        errors = body.get(assumed.ORGVUE_ERRORS_FIELD)
        if isinstance(errors, list) and errors:
            texts = []
            for error in errors[:5]:
                if isinstance(error, dict):
                    message = str(error.get("message") or error.get("name") or "").strip()
                    code = str(error.get("code") or "").strip()
                    texts.append(f"{message} ({code})" if code and code not in message else message)
                else:
                    texts.append(str(error))
            return "; ".join(text for text in texts if text) or response.reason or "no detail"
        return str(body.get("message") or body.get("error") or body.get("title") or response.reason)
    return response.reason or "no detail"


def _expired(response: requests.Response, age: float) -> bool:
    """A temporary file's URL refused because the file is gone (Orgvue deletes them after 15 minutes)."""
    if response.status_code != assumed.ORGVUE_TEMP_EXPIRED_STATUS:
        return False
    return (
        age >= assumed.ORGVUE_TEMP_FILE_LIFETIME_SECONDS
        or assumed.ORGVUE_TEMP_EXPIRED_TEXT in (response.text or "").lower()
    )


def _retry_after(response: requests.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


__all__ = [
    "ImportMayHaveStarted",
    "OrgvueClient",
    "OrgvueTarget",
    "TempFile",
    "TemporaryFileExpired",
    "callback_template",
]
