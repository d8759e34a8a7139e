"""ELMA365 as an import target: upload the file, start the app's data import, poll it.

What is known (elma365.com "Data import"): a file is uploaded under a `hash` the client chooses (and must
keep: ELMA365 does not return it), an import is started with that hash, the format and
`withEventHandlers: false`, and its status is polled no more than once a second. A temporary file lives
60 minutes and is meant for at most 50,000 entries, and an app runs one import at a time (a second start
answers `blocked`). So a large file is imported in chunks of at most 50,000 rows, one after another, each
uploaded right before its import starts, and this app holds a slot per ELMA365 app so that another sync
cannot slip its import in between two chunks.

With a directory configured (`directory_id`), the whole file is instead uploaded once into that directory, as
ELMA365 recommends for more than 50,000 entries, and imported in one import: a directory file does not expire.
Paths and field names are guesses: see `api_assumptions`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import IO, Any

import requests
from urllib3.util.retry import Retry

from people_sync import api_assumptions as assumed
from people_sync.charthop_client import RETRY_AFTER_MAX, RETRYABLE_STATUSES, BudgetAdapter, default_retry
from people_sync.csv_checks import CsvProblem, CsvRejected
from people_sync.errors import ImportMayHaveStarted, TargetRejected, TargetUnavailable
from people_sync.models import ImportJob, ImportState, ImportStatus, StagedFile
from people_sync.slots import ImportSlots
from people_sync.targets.base import OpenBody, instance_key

logger = logging.getLogger(__name__)

#: (connect, read) seconds; the read timeout covers ELMA365's answer after a chunk's upload.
DEFAULT_TIMEOUT = (5.0, 120.0)
#: A temporary file is kept 60 minutes after its upload (found).
TEMP_FILE_TTL_SECONDS = 60 * 60
#: A waiting chunk whose upload is older than this is uploaded again (with a new hash) before its start,
#: so the import never starts on a file about to expire.
REUPLOAD_AFTER_SECONDS = 45 * 60
#: Temporary files are meant for at most 50,000 entries (found); larger files go in chunks.
DEFAULT_CHUNK_ROWS = 50_000
#: How long a sync holds the app's slot without refreshing it; a sync that dies frees it after this.
DEFAULT_SLOT_TTL_SECONDS = 60 * 60
#: A running sync refreshes its slot at a check at least this long after the last refresh.
SLOT_REFRESH_SECONDS = 60
#: A chunk is spooled in memory up to this size, then on disk (/tmp).
SPOOL_MEMORY_BYTES = 16 * 1024 * 1024
#: Uploads are attempted this often; a retry uses a new hash, so a half-done upload is only an orphan.
UPLOAD_ATTEMPTS = 3
#: Each start attempt (a directory file's, a chunk's) is claimed (in the slots store) before its request is
#: sent, for this long: a check that finds its attempt already claimed knows an earlier one may have started it.
START_CLAIM_TTL_SECONDS = 8 * 24 * 3600
_READ_BLOCK = 1024 * 1024
_IMPORT_STATUSES = frozenset(
    {
        assumed.ELMA365_STATUS_IN_PROGRESS,
        assumed.ELMA365_STATUS_DONE,
        assumed.ELMA365_STATUS_ERROR,
        assumed.ELMA365_STATUS_BLOCKED,
    }
)
_WRITE_BLOCK = 1024 * 1024


# --- client ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportAnswer:
    """ELMA365's answer to an import start or status request (keys are assumptions)."""

    status: str
    id: str | None = None
    imported: int | None = None
    total: int | None = None
    error: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportAnswer:
        raw_id = data.get(assumed.ELMA365_ANSWER_ID_KEY)
        error = data.get(assumed.ELMA365_ANSWER_ERROR_KEY)
        return cls(
            status=str(data.get(assumed.ELMA365_ANSWER_STATUS_KEY) or ""),
            id=str(raw_id) if raw_id not in (None, "") else None,
            imported=_int_or_none(data.get(assumed.ELMA365_ANSWER_IMPORTED_KEY)),
            total=_int_or_none(data.get(assumed.ELMA365_ANSWER_TOTAL_KEY)),
            error=str(error) if error else None,
        )


class _SizedBody:
    """A seekable body requests streams with a known Content-Length (and urllib3 can rewind for a 429 retry)
    without touching `fileno()`, which would push an in-memory spool to disk."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self._raw = raw
        self.len = size

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)


class Elma365Client:
    """The ELMA365 calls of an import into one app; every method raises TargetUnavailable or TargetRejected.

    Retries follow the ChartHop client's policy (`default_retry`): a 429 is repeated after Retry-After for
    any call; a 5xx or timeout is repeated only for the status request (a read, although it is a POST).
    Starting an import is never repeated blindly; an upload is repeated under a new hash.
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str,
        namespace: str,
        code: str,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: Retry | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        self.code = code
        self.timeout = timeout
        self.retry = retry or default_retry()
        self.sleep = sleep
        self.session = session or requests.Session()
        self.session.mount("https://", BudgetAdapter(max_retries=self.retry))
        self.session.mount("http://", BudgetAdapter(max_retries=self.retry))
        # requests picks the longest mounted prefix: status requests get a policy that repeats them on 5xx
        status_prefix = self.base_url + assumed.ELMA365_STATUS_PATH.format(namespace=namespace, code=code, import_id="")
        self.session.mount(status_prefix, BudgetAdapter(max_retries=_reads_retry(self.retry)))
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

    @property
    def app(self) -> str:
        """The app as people name it: `<namespace>.<code>`."""
        return f"{self.namespace}.{self.code}"

    def upload_file(self, body: IO[bytes], size: int, *, file_format: str) -> str:
        """Uploads a seekable body as a temporary file and returns the hash it was uploaded under."""
        last_error: TargetUnavailable | None = None
        for attempt in range(UPLOAD_ATTEMPTS):
            if attempt:
                self.sleep(min(RETRY_AFTER_MAX, 0.5 * 2**attempt))
            file_hash = str(uuid.uuid4())
            body.seek(0)
            try:
                self._send(
                    "POST",
                    assumed.ELMA365_UPLOAD_PATH,
                    what="upload the file",
                    params={assumed.ELMA365_UPLOAD_HASH_PARAM: file_hash},
                    data=_SizedBody(body, size),
                    headers={"Content-Type": assumed.ELMA365_UPLOAD_CONTENT_TYPES[file_format]},
                )
            except TargetUnavailable as error:
                logger.warning("ELMA365 upload failed; retrying under a new hash", extra={"attempt": attempt + 1})
                last_error = error
                continue
            return file_hash
        assert last_error is not None
        raise last_error

    def upload_to_directory(
        self, open_body: OpenBody, *, directory_id: str, name: str, file_format: str
    ) -> tuple[str, int | None]:
        """Streams the staged file into a directory (never holding it: a retry, or a rewind for a 429, opens
        it afresh) and returns the hash it was uploaded under and, when the stream counted them (the
        pre-flight checks do), its data rows. A failed attempt leaves at most an orphan under its own hash."""
        path = assumed.ELMA365_DIRECTORY_UPLOAD_PATH.format(directory_id=directory_id)
        last_error: TargetUnavailable | None = None
        for attempt in range(UPLOAD_ATTEMPTS):
            if attempt:
                self.sleep(min(RETRY_AFTER_MAX, 0.5 * 2**attempt))
            file_hash = str(uuid.uuid4())
            body = _ReopeningBody(open_body)
            try:
                self._send(
                    "POST",
                    path,
                    what="upload the file to the directory",
                    params={
                        assumed.ELMA365_DIRECTORY_UPLOAD_HASH_PARAM: file_hash,
                        assumed.ELMA365_DIRECTORY_UPLOAD_NAME_PARAM: name,
                    },
                    data=body,
                    headers={"Content-Type": assumed.ELMA365_UPLOAD_CONTENT_TYPES[file_format]},
                )
            except TargetUnavailable as error:
                logger.warning(
                    "ELMA365 directory upload failed; retrying under a new hash",
                    extra={"attempt": attempt + 1, "reason": error.user_message, "detail": error.detail},
                )
                last_error = error
                continue
            finally:
                body.close()
            return file_hash, body.rows
        assert last_error is not None
        raise last_error

    def start_import(self, file_hash: str, *, file_format: str) -> ImportAnswer:
        """Starts the app's import of an uploaded file; a `blocked` answer is returned, not raised."""
        body = {
            assumed.ELMA365_IMPORT_HASH_KEY: file_hash,
            assumed.ELMA365_IMPORT_FORMAT_KEY: file_format,
            assumed.ELMA365_IMPORT_EVENT_HANDLERS_KEY: False,
        }
        path = assumed.ELMA365_IMPORT_PATH.format(namespace=self.namespace, code=self.code)
        return self._answer("POST", path, what="start the import", json=body, may_start=True)

    def import_status(self, import_id: str) -> ImportAnswer:
        path = assumed.ELMA365_STATUS_PATH.format(namespace=self.namespace, code=self.code, import_id=import_id)
        extra: dict[str, Any] = {"json": {}} if assumed.ELMA365_STATUS_METHOD == "POST" else {}
        return self._answer(assumed.ELMA365_STATUS_METHOD, path, what="read the import's status", **extra)

    # --- plumbing --------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, *, what: str, may_start: bool = False, **kwargs: Any) -> ImportAnswer:
        data = self._send(method, path, what=what, may_start=may_start, **kwargs)
        answer = ImportAnswer.from_json(data)
        if not answer.status:
            raise TargetUnavailable(f"ELMA365 answered without an import status when trying to {what}.")
        return answer

    def _send(self, method: str, path: str, *, what: str, may_start: bool = False, **kwargs: Any) -> dict[str, Any]:
        """`may_start`: the request starts an import (not idempotent): a failure after it was sent (a read
        timeout, a reset, a 5xx) raises ImportMayHaveStarted, since ELMA365 cannot be asked whether it began."""
        try:
            response = self.session.request(method, f"{self.base_url}{path}", timeout=self.timeout, **kwargs)
        except requests.ConnectTimeout as exc:  # never sent
            raise TargetUnavailable(
                f"ELMA365 did not answer when trying to {what}; will retry.", detail=type(exc).__name__
            ) from exc
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            if may_start:
                raise ImportMayHaveStarted(
                    f"ELMA365 did not answer the request to {what} ({type(exc).__name__}); it may have started "
                    f"the import. Check the app {self.app} in ELMA365 before staging the file again.",
                    detail=type(exc).__name__,
                ) from exc
            raise TargetUnavailable(
                f"ELMA365 did not answer when trying to {what}; will retry.", detail=type(exc).__name__
            ) from exc
        data = _json_object(response)
        status = response.status_code
        if (
            data.get(assumed.ELMA365_ANSWER_STATUS_KEY) == assumed.ELMA365_STATUS_BLOCKED
            and status not in assumed.ELMA365_UNAUTHENTICATED_STATUSES
        ):
            # "another import is running", whatever HTTP status it came with: an answer to wait out
            if not response.ok:
                logger.info("ELMA365 answered blocked with a non-2xx status", extra={"status": status})
            return data
        if may_start and status >= 500:
            raise ImportMayHaveStarted(
                f"ELMA365 answered HTTP {status} to the request to {what}; it may have started the import. Check "
                f"the app {self.app} in ELMA365 before staging the file again.",
                detail=_error_text(data),
            )
        if status in RETRYABLE_STATUSES or status >= 500:
            raise TargetUnavailable(
                f"ELMA365 is unavailable (HTTP {status}) when trying to {what}; will retry.", detail=_error_text(data)
            )
        if status in assumed.ELMA365_UNAUTHENTICATED_STATUSES:
            raise TargetRejected("ELMA365 refused the token", status=status, detail=_error_text(data))
        if status == 404:
            raise TargetRejected(
                f"ELMA365 found nothing at {path} when trying to {what}; check the app {self.app} exists.",
                status=status,
                detail=_error_text(data),
            )
        if not response.ok:
            raise TargetRejected(f"ELMA365 refused to {what}: {_error_text(data) or f'HTTP {status}'}", status=status)
        # an import that ended in error, or a blocked start, is an answer to report, whatever `success` says
        has_status = data.get(assumed.ELMA365_ANSWER_STATUS_KEY) in _IMPORT_STATUSES
        if data.get("success") is False and not has_status:
            raise TargetRejected(f"ELMA365 refused to {what}: {_error_text(data) or 'no reason given'}", status=status)
        return data


def _reads_retry(retry: Retry) -> Retry:
    """The same policy, but repeating a POST too: for requests that only read."""
    methods = retry.allowed_methods
    if methods is None:
        return retry
    return retry.new(allowed_methods=frozenset(methods) | {"POST"})


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_text(data: dict[str, Any]) -> str:
    return str(data.get(assumed.ELMA365_ANSWER_ERROR_KEY) or data.get("message") or "")


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _ReopeningBody:
    """The staged file as a request body streamed from `open_body`, with a known Content-Length; rewinding it
    (urllib3 does, to repeat a 429) opens the file afresh instead of keeping what was sent."""

    def __init__(self, open_body: OpenBody) -> None:
        self._open_body = open_body
        self._raw, self.len = open_body()
        self._position = 0

    @property
    def rows(self) -> int | None:
        """Data rows, when the stream counted them (the pre-flight checks' summary)."""
        summary = getattr(self._raw, "summary", None)
        rows = getattr(summary, "rows", None)
        return rows if isinstance(rows, int) else None

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes; everything left for a negative `size` (as `io` readers do: urllib3 reads in
        blocks, but a caller such as the `responses` mock under moto reads the whole body in one call)."""
        if size is None or size < 0:
            blocks = []
            while block := self._raw.read(_READ_BLOCK):
                blocks.append(block)
            data = b"".join(blocks)
        else:
            data = self._raw.read(size)
        self._position += len(data)
        return data

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1 and offset == 0:
            return self._position
        if (offset, whence) != (0, 0):
            raise io.UnsupportedOperation("the upload can only be rewound to its start")
        if self._position:
            _close(self._raw)
            self._raw, self.len = self._open_body()
            self._position = 0
        return 0

    def close(self) -> None:
        _close(self._raw)


# --- chunks ----------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    """One chunk spooled for upload: a standalone CSV (header + rows) or, for xlsx, the whole file."""

    body: IO[bytes]
    size: int
    rows: int | None


class _Readable(io.RawIOBase):
    """Any `read(n)` stream (an S3 body, CheckedUpload) as a raw stream io.BufferedReader accepts."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _records(stream: IO[bytes]) -> Generator[str]:
    """Each CSV record's original text, header first, blank lines skipped.

    The csv module decides where a record ends, so a quoted field holding newlines stays in its record;
    the record's own lines are passed on unchanged (quoting and all).
    """
    text = io.TextIOWrapper(
        io.BufferedReader(_Readable(stream), _READ_BLOCK), encoding="utf-8-sig", newline="", errors="strict"
    )
    lines: list[str] = []

    def feed() -> Iterator[str]:
        for line in text:
            lines.append(line)
            yield line

    try:
        for row in csv.reader(feed(), strict=True):
            record = "".join(lines)
            lines.clear()
            if row:
                yield record if record.endswith("\n") else record + "\r\n"
    except UnicodeDecodeError as error:
        raise CsvRejected(CsvProblem("not-utf8", f"The file is not UTF-8 text ({error.reason}).")) from error
    except csv.Error as error:
        raise CsvRejected(CsvProblem("malformed-csv", f"The file is not valid CSV: {error}.")) from error


class _ChunkWriter:
    """Writes records into a spool in large blocks."""

    def __init__(self) -> None:
        self.spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self._pending: list[str] = []
        self._pending_chars = 0
        self.rows = 0

    def write(self, record: str, *, data: bool = True) -> None:
        self._pending.append(record)
        self._pending_chars += len(record)
        self.rows += data
        if self._pending_chars >= _WRITE_BLOCK:
            self._flush()

    def finish(self) -> _Chunk:
        self._flush()
        size = self.spool.tell()
        self.spool.seek(0)
        return _Chunk(self.spool, size, self.rows)

    def _flush(self) -> None:
        self.spool.write("".join(self._pending).encode("utf-8"))
        self._pending.clear()
        self._pending_chars = 0


# --- target ----------------------------------------------------------------------------------------


class Elma365Target:
    """Imports a staged file into one ELMA365 app, in chunks, holding the app's slot from first to last.

    `job.detail` carries (all JSON): owner (the sync id), rows, chunks, chunkRows, chunk (0-based index of
    the current chunk), hash and uploadedAt (its temporary file, epoch seconds), chunkRows of the current
    chunk (chunkSize), importedBefore (rows imported by earlier chunks), chunkImported, progress (never
    goes backwards), waiting (the current chunk waits to start) and waitingFor ("blocked" or "slot").
    `import_id` is the current chunk's ELMA365 import id, or "" while it waits to start.

    With `directory_id`, the file is one "chunk": detail adds directory (its id), and hash is the directory
    file's, uploaded once by `start_import` and kept until the import ends (never uploaded again).

    startAttempts counts the current file's (or chunk's) start requests whose answer was recorded. Each start
    request is first claimed in the slots store under the directory file's hash (or the sync and the chunk's
    index) and the attempt number: a check that finds the attempt it is about to make already claimed was
    preceded by one that sent it and died before its answer was recorded, so the sync is closed (ELMA365
    cannot tell whether that import began) rather than risking a second import.
    """

    name = "elma365"
    display_name = "ELMA365"
    calls_back = False
    min_check_interval_seconds = math.ceil(assumed.ELMA365_MIN_STATUS_INTERVAL_SECONDS)

    def __init__(
        self,
        client: Elma365Client,
        *,
        slots: ImportSlots,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        file_format: str = "csv",
        slot_ttl_seconds: int = DEFAULT_SLOT_TTL_SECONDS,
        directory_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be positive")
        if file_format not in assumed.ELMA365_IMPORT_FORMATS:
            raise ValueError(f"file_format must be one of {assumed.ELMA365_IMPORT_FORMATS}")
        self.client = client
        self.slots = slots
        self.chunk_rows = chunk_rows
        self.file_format = file_format
        self.slot_ttl_seconds = slot_ttl_seconds
        self.directory_id = directory_id or None
        self.clock = clock  # wall clock: a job's uploadedAt must make sense in any Lambda container

    @property
    def slot_key(self) -> str:
        """The app's import slot: per ELMA365 instance and app (see target_queue.queue_key for why not per org)."""
        return f"slot#elma365#{instance_key(self.client.base_url)}/{self.client.namespace}/{self.client.code}"

    # --- ImportTarget ----------------------------------------------------------------------------

    def start_import(
        self, staged: StagedFile, open_body: OpenBody, *, sync_id: str, callback_url: str | None = None
    ) -> ImportJob:
        """Reads the whole file once (counting rows, spooling chunk 1) before anything is sent: a file the
        pre-flight checks refuse never gets a chunk imported. Then starts chunk 1, or leaves it waiting.
        With a directory, streams the whole file into it once instead (the checks run as it goes: a refused
        file is cut off and never started) and starts its one import, or leaves it waiting."""
        if self.directory_id is not None:
            return self._start_from_directory(staged, open_body, sync_id=sync_id, directory_id=self.directory_id)
        first, rows = self._first_chunk(open_body)
        chunks = max(1, math.ceil(rows / self.chunk_rows)) if rows is not None else 1
        detail: dict[str, Any] = {
            "owner": sync_id,
            "file": staged.name,
            "format": self.file_format,
            "rows": rows,
            "chunks": chunks,
            "chunkRows": self.chunk_rows,
            "chunk": 0,
            "chunkSize": first.rows,
            "hash": None,
            "uploadedAt": None,
            "importedBefore": 0,
            "chunkImported": 0,
            "progress": 0.0,
            "waiting": True,
            "waitingFor": None,
        }
        try:
            with contextlib.closing(first.body):
                return self._try_start(ImportJob(import_id="", detail=detail), open_body, ready=first)
        except BaseException:
            self.slots.release(self.slot_key, sync_id)
            raise

    def _start_from_directory(
        self, staged: StagedFile, open_body: OpenBody, *, sync_id: str, directory_id: str
    ) -> ImportJob:
        file_hash, rows = self.client.upload_to_directory(
            open_body, directory_id=directory_id, name=staged.name, file_format=self.file_format
        )
        detail: dict[str, Any] = {
            "owner": sync_id,
            "file": staged.name,
            "format": self.file_format,
            "directory": directory_id,
            "rows": rows,
            "chunks": 1,
            "chunkRows": None,
            "chunk": 0,
            "chunkSize": rows,
            "hash": file_hash,
            "uploadedAt": self.clock(),
            "importedBefore": 0,
            "chunkImported": 0,
            "progress": 0.0,
            "waiting": True,
            "waitingFor": None,
            "startAttempts": 0,
        }
        try:
            return self._try_start(ImportJob(import_id="", detail=detail), open_body)
        except BaseException:
            self.slots.release(self.slot_key, sync_id)
            raise

    def abandon(self, job: ImportJob) -> None:
        """Frees the app's import slot if this sync holds it."""
        owner = job.detail.get("owner")
        if owner:
            self.slots.release(self.slot_key, owner)

    def import_status(self, job: ImportJob, open_body: OpenBody) -> tuple[ImportStatus, ImportJob]:
        try:
            return self._import_status(job, open_body)
        except (TargetRejected, CsvRejected):
            self.slots.release(self.slot_key, job.detail["owner"])
            raise

    # --- steps -----------------------------------------------------------------------------------

    def _import_status(self, job: ImportJob, open_body: OpenBody) -> tuple[ImportStatus, ImportJob]:
        if job.detail.get("waiting"):
            job = self._try_start(job, open_body)
            if job.detail.get("startInterrupted"):
                return self._failed(job.import_id, dict(job.detail), str(job.detail["startError"]))
            return self._status(job), job
        detail = dict(job.detail)
        if detail.get("startError"):
            return self._failed(job.import_id, detail, str(detail["startError"]))
        self._refresh_slot(detail)
        answer = self.client.import_status(job.import_id)
        if answer.status == assumed.ELMA365_STATUS_ERROR:
            return self._failed(job.import_id, detail, answer.error or "the import ended in error")
        if answer.status == assumed.ELMA365_STATUS_BLOCKED:  # not begun yet (an assumption): poll on
            job = ImportJob(import_id=job.import_id, detail=detail)
            return self._status(job), job
        if answer.status != assumed.ELMA365_STATUS_DONE:
            detail["chunkImported"] = max(int(detail.get("chunkImported") or 0), answer.imported or 0)
            if answer.total:
                detail["chunkSize"] = answer.total
            job = ImportJob(import_id=job.import_id, detail=detail)
            return self._status(job), job
        chunk_imported = answer.imported if answer.imported is not None else int(detail.get("chunkSize") or 0)
        detail["importedBefore"] = int(detail["importedBefore"]) + chunk_imported
        detail["chunkImported"] = 0
        if int(detail["chunk"]) + 1 < int(detail["chunks"]):
            detail.update(chunk=int(detail["chunk"]) + 1, chunkSize=None, hash=None, uploadedAt=None, startAttempts=0)
            detail.update(waiting=True, waitingFor=None)
            job = self._try_start(ImportJob(import_id="", detail=detail), open_body)
            if job.detail.get("startInterrupted"):
                return self._failed(job.import_id, dict(job.detail), str(job.detail["startError"]))
            return self._status(job), job
        self.slots.release(self.slot_key, detail["owner"])
        detail["progress"] = 1.0
        job = ImportJob(import_id=job.import_id, detail=detail)
        return self._done(detail), job

    def _try_start(self, job: ImportJob, open_body: OpenBody, *, ready: _Chunk | None = None) -> ImportJob:
        """Takes the slot, uploads the current chunk if it has no fresh upload, and starts its import."""
        detail = dict(job.detail)
        now = self.clock()
        if not self.slots.acquire(self.slot_key, detail["owner"], self.slot_ttl_seconds):
            detail.update(waiting=True, waitingFor="slot")
            return ImportJob(import_id="", detail=detail)
        detail["slotRefreshedAt"] = now
        if detail.get("directory"):
            return self._start_directory_file(detail)
        uploaded_at = detail.get("uploadedAt")
        if not detail.get("hash") or uploaded_at is None or now - float(uploaded_at) >= REUPLOAD_AFTER_SECONDS:
            chunk = ready if ready is not None else self._read_chunk(open_body, int(detail["chunk"]))
            try:
                detail["hash"] = self.client.upload_file(chunk.body, chunk.size, file_format=self.file_format)
            finally:
                if chunk is not ready:
                    chunk.body.close()
            detail["uploadedAt"] = self.clock()
            detail["chunkSize"] = chunk.rows
        # A chunk's temporary file gets a new hash on each upload, so its starts are claimed by the sync and
        # the chunk's index (the same after a check died and the next one uploads the chunk again).
        return self._start_claimed(detail, f"elma365-start#{detail['owner']}#chunk{int(detail['chunk'])}")

    def _start_directory_file(self, detail: dict[str, Any]) -> ImportJob:
        return self._start_claimed(detail, f"elma365-start#{detail['hash']}")

    def _start_claimed(self, detail: dict[str, Any], claim_prefix: str) -> ImportJob:
        """Starts the current file's (or chunk's) import at most once per recorded attempt. Each attempt is
        claimed (in the slots store) before its request is sent: a check that finds its attempt claimed knows
        an earlier check may have started the import and died before the loop memory recorded it (a kill, a
        lost answer). ELMA365 cannot be asked, so the sync is closed saying so instead of importing twice."""
        attempt = int(detail.get("startAttempts") or 0)
        claim = f"{claim_prefix}#{attempt}"
        if not self.slots.acquire(claim, f"{detail['owner']}#{uuid.uuid4()}", START_CLAIM_TTL_SECONDS):
            logger.warning("an earlier start of this ELMA365 import was interrupted", extra={"claim": claim})
            error = (
                "an earlier attempt to start the import was interrupted, and ELMA365 cannot tell whether the "
                f"import began; check {self.client.app} in ELMA365 before staging the file again"
            )
            detail.update(waiting=False, waitingFor=None, startError=error, startInterrupted=True)
            return ImportJob(import_id="", detail=detail)
        answer = self.client.start_import(str(detail["hash"]), file_format=self.file_format)
        detail["startAttempts"] = attempt + 1
        return self._started(detail, answer)

    def _started(self, detail: dict[str, Any], answer: ImportAnswer) -> ImportJob:
        """The job after a start answer: waiting again when `blocked`, else following the import."""
        if answer.status == assumed.ELMA365_STATUS_BLOCKED:
            detail.update(waiting=True, waitingFor="blocked")
            return ImportJob(import_id="", detail=detail)
        if answer.id is None:
            raise TargetRejected(
                f"ELMA365 answered the start of an import into {self.client.app} without an import id "
                f"(status {answer.status!r}).",
                status=200,
            )
        detail.update(waiting=False, waitingFor=None, chunkImported=answer.imported or 0)
        if answer.status == assumed.ELMA365_STATUS_ERROR:
            detail["startError"] = answer.error or "the import ended in error"
        return ImportJob(import_id=answer.id, detail=detail)

    def _refresh_slot(self, detail: dict[str, Any]) -> None:
        now = self.clock()
        if now - float(detail.get("slotRefreshedAt") or 0) < SLOT_REFRESH_SECONDS:
            return
        if self.slots.acquire(self.slot_key, detail["owner"], self.slot_ttl_seconds):
            detail["slotRefreshedAt"] = now
        else:  # our slot expired and another sync took it; ELMA365 itself still runs one import at a time
            logger.warning("lost the ELMA365 app slot while importing", extra={"slot": self.slot_key})

    # --- reading the file ------------------------------------------------------------------------

    def _first_chunk(self, open_body: OpenBody) -> tuple[_Chunk, int | None]:
        """Chunk 1 spooled, and the file's number of data rows (None for xlsx, imported whole)."""
        raw, _size = open_body()
        try:
            if self.file_format != "csv":
                return self._spool_whole(raw), None
            writer = _ChunkWriter()
            rows = 0
            try:
                records = _records(raw)
                header = next(records, None)
                if header is None:
                    raise CsvRejected(CsvProblem("empty-file", "The file has no header row."))
                writer.write(header, data=False)
                for record in records:
                    if rows < self.chunk_rows:
                        writer.write(record)
                    rows += 1
            except BaseException:
                writer.spool.close()
                raise
            return writer.finish(), rows
        finally:
            _close(raw)

    def _read_chunk(self, open_body: OpenBody, index: int) -> _Chunk:
        """Chunk `index` (0-based) spooled: the header and the rows after those of the chunks before it."""
        raw, _size = open_body()
        records = _records(raw) if self.file_format == "csv" else None
        try:
            if records is None:
                return self._spool_whole(raw)
            writer = _ChunkWriter()
            try:
                header = next(records, None)
                if header is None:
                    raise CsvRejected(CsvProblem("empty-file", "The file has no header row."))
                writer.write(header, data=False)
                skip = index * self.chunk_rows
                for number, record in enumerate(records):
                    if number < skip:
                        continue
                    writer.write(record)
                    if writer.rows >= self.chunk_rows:
                        break
            except BaseException:
                writer.spool.close()
                raise
            return writer.finish()
        finally:
            if records is not None:
                records.close()
            _close(raw)

    @staticmethod
    def _spool_whole(raw: IO[bytes]) -> _Chunk:
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        while block := raw.read(_READ_BLOCK):
            spool.write(block)
        size = spool.tell()
        spool.seek(0)
        return _Chunk(spool, size, None)

    # --- statuses --------------------------------------------------------------------------------

    def _status(self, job: ImportJob) -> ImportStatus:
        """Pending/running status of a job that is waiting to start or importing a chunk."""
        detail = job.detail
        chunk, chunks = int(detail["chunk"]), int(detail["chunks"])
        fraction = 0.0
        if not detail.get("waiting"):
            size = detail.get("chunkSize")
            imported = int(detail.get("chunkImported") or 0)
            fraction = min(0.99, imported / size) if size else 0.0
        progress = max(float(detail.get("progress") or 0.0), (chunk + fraction) / chunks)
        detail["progress"] = progress
        which = f"chunk {chunk + 1} of {chunks}" if chunks > 1 else "the file"
        if detail.get("waiting"):
            app = self.client.app
            if detail.get("waitingFor") == "slot":
                message = f"Another sync is importing into ELMA365 {app}; waiting to start {which}"
            else:
                message = f"ELMA365 is busy with another import into {app}; waiting to start {which}"
        else:
            message = f"ELMA365 is importing {which} ({int(progress * 100)}%)"
        state: ImportState = "pending" if detail.get("waiting") and chunk == 0 else "running"
        return ImportStatus(state=state, progress=progress, message=message, results=self._results(detail))

    def _done(self, detail: dict[str, Any]) -> ImportStatus:
        imported, rows, chunks = int(detail["importedBefore"]), detail.get("rows"), int(detail["chunks"])
        of_rows = f" of {rows:,}" if rows is not None else ""
        in_chunks = f" in {chunks} chunks" if chunks > 1 else ""
        return ImportStatus(
            state="done",
            progress=1.0,
            message=f"ELMA365 imported {imported:,}{of_rows} rows into {self.client.app}{in_chunks}",
            results=self._results(detail),
        )

    def _failed(self, import_id: str, detail: dict[str, Any], error: str) -> tuple[ImportStatus, ImportJob]:
        self.slots.release(self.slot_key, detail["owner"])
        chunk, chunks, before = int(detail["chunk"]), int(detail["chunks"]), int(detail["importedBefore"])
        if chunks > 1:
            message = f"ELMA365 could not import chunk {chunk + 1} of {chunks}: {error}."
            if chunk:
                earlier = "chunk 1" if chunk == 1 else f"chunks 1-{chunk}"
                message += f" The {before:,} rows of {earlier} stay imported."
        else:
            message = f"ELMA365 could not import the file: {error}."
        detail["failedChunk"] = chunk + 1
        status = ImportStatus(
            state="failed",
            progress=float(detail.get("progress") or 0.0),
            message=message,
            results={**self._results(detail), "failedChunk": chunk + 1, "error": error},
        )
        return status, ImportJob(import_id=import_id, detail=detail)

    @staticmethod
    def _results(detail: dict[str, Any]) -> dict[str, Any]:
        results: dict[str, Any] = {
            "imported": int(detail["importedBefore"]),
            "chunks": int(detail["chunks"]),
            "chunksDone": int(detail["chunk"]) if detail.get("progress", 0) < 1.0 else int(detail["chunks"]),
        }
        if detail.get("rows") is not None:
            results["rows"] = detail["rows"]
        return results


def _close(raw: IO[bytes]) -> None:
    close = getattr(raw, "close", None)
    if close:
        close()


__all__ = ["DEFAULT_CHUNK_ROWS", "TEMP_FILE_TTL_SECONDS", "Elma365Client", "Elma365Target", "ImportAnswer"]
