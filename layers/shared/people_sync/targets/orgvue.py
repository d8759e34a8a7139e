"""Orgvue as an import target: its Async Import (temporary files, items/import, result location, callback).

Flow (seed 003): generate a temporary file for the data and one for the result, PUT the CSV to the data
file, start the import with the data's GET URL, our result PUT URL and a callback URL template. Orgvue
writes the result to the result location and calls the callback when processing completes; the status
loop either receives that callback (`job.detail["callback"]`) or polls the result location.
Everything guessed about the API lives in `people_sync.api_assumptions` (section Orgvue).
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import requests
from urllib3.util.retry import Retry

from people_sync import api_assumptions as assumed
from people_sync.charthop_client import RETRY_AFTER_MAX, RETRYABLE_STATUSES, BudgetAdapter, default_retry
from people_sync.csv_checks import CsvProblem, CsvRejected
from people_sync.errors import TargetRejected, TargetUnavailable
from people_sync.models import ImportJob, ImportState, ImportStatus, StagedFile
from people_sync.targets.base import OpenBody

logger = logging.getLogger(__name__)

# --- found (shared/reference/README.md, seed 003) ------------------------------------------------------
#: The CSV column that says what to do with each item, and its values.
ACTION_COLUMN = "_action"
ACTIONS = ("create", "update", "delete")
TENANT_ID_PATTERN = r"^[A-Z][A-Z0-9_]{0,29}$"
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
#: The callback's placeholders, as the docs' example spells the query.
CALLBACK_QUERY = "status={{jobStatus}}&traceId={{traceId}}&tenantId={{tenantId}}"
DATA_TARGET = {"targetType": "csv", "targetEncoding": "identity"}

#: (connect, read) seconds; an upload's read timeout covers the storage's answer after the body.
DEFAULT_TIMEOUT = (5.0, 60.0)
#: Bytes read from the staged file at a time, and the most a header row may take.
CHUNK = 1024 * 1024
MAX_HEADER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TempFile:
    """A temporary file's pre-signed URLs: `get` to read it, `put` to write it."""

    get: str
    put: str


class OrgvueClient:
    """The Orgvue calls this app makes; every method raises TargetUnavailable or TargetRejected.

    API calls carry the bearer token; the temporary files' pre-signed URLs get no Authorization header
    (assumption, see api_assumptions), so the token never travels to the storage host.
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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self.dataset_id = dataset_id
        self.timeout = timeout
        self.retry = retry or default_retry()
        self.upload_attempts = max(1, upload_attempts)
        self.sleep = sleep
        self.session = session or requests.Session()
        for prefix in ("https://", "http://"):
            self.session.mount(prefix, BudgetAdapter(max_retries=self.retry))
        # generating a temporary file twice only leaves an unused one to expire: safe to repeat after a 5xx
        self.session.mount(
            self._url("/files/generate"), BudgetAdapter(max_retries=self.retry.new(allowed_methods=None))
        )
        self.session.headers.update(
            {"Authorization": f"Bearer {token}", "Accept": "application/json", "Content-Type": JSON_CONTENT_TYPE}
        )
        # pre-signed URLs: no token; results are read with retries, uploads are repeated by hand (see upload)
        self._files = requests.Session()
        for prefix in ("https://", "http://"):
            self._files.mount(prefix, BudgetAdapter(max_retries=self.retry))
        self._uploads = requests.Session()

    # --- API calls -------------------------------------------------------------------------------

    def generate_file(self, target_type: str) -> TempFile:
        """A new temporary file (`targetType` csv or json) to upload data to or receive a result in."""
        body = {**DATA_TARGET, "targetType": target_type}
        data = self._json("POST", "/files/generate", json=body, what="generate a temporary file")
        if not isinstance(data.get("get"), str) or not isinstance(data.get("put"), str):
            raise TargetUnavailable(
                "Orgvue answered the temporary-file request without GET and PUT URLs.", detail=str(data)[:500]
            )
        return TempFile(get=data["get"], put=data["put"])

    def start_import(self, import_url: str, result_url: str, callback_template: str | None) -> dict[str, Any]:
        """Starts the asynchronous import and returns its job ticket.

        Never repeated after a 5xx or a timeout (the adapter's retry does not repeat POSTs): Orgvue may have
        started the import, and a second one would apply the same actions twice. A 429 is repeated.
        """
        body: dict[str, Any] = {
            "importLocation": {"method": "GET", "url": import_url},
            "resultLocation": {"method": "PUT", "url": result_url},
        }
        if callback_template:
            body["callback"] = {"method": "GET", "urlTemplate": callback_template}
        path = f"/datasets/{self.dataset_id}/items/import"
        return self._json(assumed.ORGVUE_IMPORT_METHOD, path, json=body, what="start the import")

    # --- temporary files -------------------------------------------------------------------------

    def upload(self, put_url: str, open_upload: Callable[[], tuple[Any, Callable[[], None]]]) -> None:
        """PUTs a streamed body to a temporary file, re-opening it for each attempt.

        `open_upload` returns (body, close): a file-like object with a `len` (sent with Content-Length) or
        an iterator of bytes (sent chunked). A streamed body cannot be replayed, so the retrying adapter is
        not used; a PUT to the same URL only overwrites the file, so repeating it by hand is safe.
        CsvRejected raised while the body is read propagates unchanged.
        """
        last: TargetUnavailable | None = None
        retry_after: float | None = None
        for attempt in range(self.upload_attempts):
            if last is not None:
                self.sleep(min(RETRY_AFTER_MAX, retry_after if retry_after is not None else 0.5 * 2 ** (attempt - 1)))
            body, close = open_upload()
            try:
                response = self._uploads.put(put_url, data=body, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last, retry_after = TargetUnavailable("Orgvue's temporary file did not answer the upload."), None
                last.detail = type(exc).__name__
                continue
            finally:
                close()
            if response.ok:
                return
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
    """Imports a staged CSV into one Orgvue dataset; Orgvue calls back when the import has finished."""

    name = "orgvue"
    display_name = "Orgvue"
    calls_back = True
    min_check_interval_seconds = 5

    def __init__(self, client: OrgvueClient, *, default_action: str | None = None) -> None:
        if default_action is not None and default_action.strip().lower() not in ACTIONS:
            raise ValueError(f"OrgvueDefaultAction must be one of {', '.join(ACTIONS)}, not {default_action!r}")
        self.client = client
        self.default_action = default_action.strip().lower() if default_action else None

    def start_import(
        self, staged: StagedFile, open_body: OpenBody, *, sync_id: str, callback_url: str | None = None
    ) -> ImportJob:
        has_action = self._has_action_column(open_body, staged.name)  # refuses a file before any upload
        data = self.client.generate_file(DATA_TARGET["targetType"])
        result = self.client.generate_file(assumed.ORGVUE_RESULT_TARGET_TYPE)
        self.client.upload(data.put, lambda: self._open_upload(open_body, staged.name, has_action))
        template = callback_template(callback_url) if callback_url else None
        ticket = self.client.start_import(data.get, result.put, template)
        trace_id = ticket.get(assumed.ORGVUE_TICKET_TRACE_FIELD)
        job_id = ticket.get(assumed.ORGVUE_TICKET_ID_FIELD) or trace_id
        if not job_id:
            raise TargetUnavailable("Orgvue started the import without a job ticket.", detail=str(ticket)[:500])
        detail: dict[str, Any] = {"resultUrl": result.get, "syncId": sync_id}
        if trace_id:
            detail["traceId"] = str(trace_id)
        logger.info("Orgvue import started", extra={"job_id": job_id, "trace_id": trace_id})
        return ImportJob(import_id=str(job_id), detail=detail)

    def abandon(self, job: ImportJob) -> None:
        """Nothing is held for an import here."""

    def import_status(self, job: ImportJob, open_body: OpenBody) -> tuple[ImportStatus, ImportJob]:
        callback = job.detail.get("callback")
        result_url = job.detail.get("resultUrl")
        if isinstance(callback, dict) and _same_job(callback, job):
            return self._status_from_callback(callback, result_url), job
        if not isinstance(result_url, str):
            raise TargetRejected("The Orgvue import has no result location to check.", status=400)
        document = self.client.read_result(result_url)
        if document is None:
            return ImportStatus(state="running", message="Orgvue is importing the file."), job
        return _status_from_result(document), job

    def _status_from_callback(self, callback: dict[str, Any], result_url: Any) -> ImportStatus:
        """Orgvue called back: its status decides, the result document (when readable) adds counts."""
        job_status = str(callback.get("status") or "").strip()
        document: dict[str, Any] | str | None = None
        if isinstance(result_url, str):
            try:
                document = self.client.read_result(result_url)
            except (TargetUnavailable, TargetRejected) as error:
                logger.warning("Orgvue result unreadable after callback", extra={"error": error.user_message})
        lowered = job_status.lower()
        if document is not None:
            status = _status_from_result(document)
            if lowered in assumed.ORGVUE_JOB_FAILED_STATUSES and status.state != "failed":
                status = status.model_copy(update={"state": "failed", "message": _failed_message(None, job_status)})
            return status
        if lowered in assumed.ORGVUE_JOB_DONE_STATUSES:
            return ImportStatus(state="done", progress=1.0, message="Orgvue finished the import.")
        if lowered in assumed.ORGVUE_JOB_FAILED_STATUSES:
            return ImportStatus(state="failed", progress=1.0, message=_failed_message(None, job_status))
        return ImportStatus(
            state="running",
            message=f"Orgvue called back with job status {job_status!r}; waiting for its result.",
        )

    def _has_action_column(self, open_body: OpenBody, name: str) -> bool:
        stream, _ = open_body()
        try:
            header = _header(_read_head(stream, name), name)
        finally:
            _close(stream)
        if ACTION_COLUMN in (cell.strip() for cell in header):
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

    def _open_upload(self, open_body: OpenBody, name: str, has_action: bool) -> tuple[Any, Callable[[], None]]:
        stream, size = open_body()
        if has_action:
            return _SizedBody(stream, size), lambda: _close(stream)
        assert self.default_action is not None
        return _with_action_column(stream, name, self.default_action), lambda: _close(stream)


def _same_job(callback: dict[str, Any], job: ImportJob) -> bool:
    """A callback whose traceId is not this job's is someone else's: keep polling instead of trusting it."""
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
    if lowered in assumed.ORGVUE_JOB_DONE_STATUSES:
        state = "done"
        message = _done_message(counts, first_errors, reason)
    elif lowered in assumed.ORGVUE_JOB_FAILED_STATUSES:
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
            text = str(error.get("message") or "")
            texts.append(f"row {row}: {text}" if row is not None else text)
        else:
            texts.append(str(error))
    return texts


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

    A generator: requests sends it chunked, a block at a time, so the file is never wholly in memory.
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
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:200] or response.reason or "no detail"
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body.get("title") or response.reason)
    return response.reason or "no detail"


def _retry_after(response: requests.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


__all__ = ["OrgvueClient", "OrgvueTarget", "TempFile", "callback_template"]
