"""A local ELMA365: the Web API data import this app calls (temporary-file and directory uploads, import
start, status).

The paths, field names and status values are the guesses in `people_sync.api_assumptions` (the emulator
imports them, so app and emulator cannot disagree); the behaviour follows what ELMA365 documents: a
client-chosen hash that is not returned, temporary files that expire 60 minutes after upload, one import
per app at a time (a second start answers `blocked`), an import that finishes asynchronously. Files uploaded
into a directory (one of `Elma365EmulatorConfig.directories`) do not expire. What the seed only recommends
is not enforced unless configured: a temporary-file import of more than 50,000 entries is refused only with
`temp_file_max_rows` set, and `blocked` is answered with HTTP 200 unless `blocked_http_status` says otherwise
(both are assumptions, see `api_assumptions`). The documented "poll the status no more than once a second" is
enforced: a sooner status request for the same import answers 429 with Retry-After. Time is the
emulator's own clock (injectable), so tests move it instead of sleeping. Every call is recorded.

Run it alone with `python -m offline.elma365_emulator --port 8902`.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from werkzeug.exceptions import ClientDisconnected, HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from offline.emulator_base import Fault, FaultInjectingServer
from people_sync import api_assumptions as assumed
from people_sync.targets.elma365 import TEMP_FILE_TTL_SECONDS

__all__ = [
    "DEFAULT_DIRECTORY_ID",
    "DIRECTORY_UPLOAD",
    "IMPORT_STATUS",
    "START_IMPORT",
    "UPLOAD",
    "Elma365Emulator",
    "Elma365EmulatorConfig",
    "Fault",
    "ImportBehaviour",
    "RecordedCall",
    "RecordedImport",
    "RecordedStart",
    "RecordedUpload",
]

#: Operation names for `inject` and `calls_of`.
UPLOAD = "upload"
DIRECTORY_UPLOAD = "directoryUpload"
START_IMPORT = "startImport"
IMPORT_STATUS = "importStatus"


#: The directory the emulator has unless configured otherwise (ELMA365 names directories by UUID; an assumption).
DEFAULT_DIRECTORY_ID = "3f6a2c1e-5d0b-4e8a-9c71-0e365d1e0001"


@dataclass
class ImportBehaviour:
    """How an import runs: done after `duration_s` of emulator clock, or after `polls` status requests
    when set; with `fail_with`, it ends in `error` with that message (importing nothing)."""

    duration_s: float = 3.0
    polls: int | None = None
    fail_with: str | None = None


@dataclass
class Elma365EmulatorConfig:
    token: str = "emulator-elma365-token"  # noqa: S105 - the emulator's own fake token
    #: The apps that exist, as (namespace, code).
    apps: tuple[tuple[str, str], ...] = (("hr", "employees"),)
    #: The directories files can be uploaded into (by id).
    directories: tuple[str, ...] = (DEFAULT_DIRECTORY_ID,)
    #: (assumption, off by default) Refuse to start the import of a temporary file with more data rows than
    #: this. The seed only recommends a directory above 50,000 entries (api_assumptions.ELMA365_TEMP_FILE_MAX_ENTRIES).
    temp_file_max_rows: int | None = None
    #: The documented limit "poll the status no more than once a second": a status request for an import
    #: that comes sooner after the last one answered is refused with 429 and Retry-After (the status and the
    #: header are assumptions, api_assumptions.ELMA365_RATE_LIMIT_STATUS). A refused request does not count.
    #: None turns the limit off.
    min_status_interval_s: float | None = assumed.ELMA365_MIN_STATUS_INTERVAL_SECONDS


@dataclass
class RecordedCall:
    operation: str
    method: str
    path: str
    status: int
    at: float


@dataclass
class RecordedUpload:
    hash: str
    rows: int | None
    size: int
    at: float
    #: The directory it was uploaded into; None for a temporary file.
    directory: str | None = None
    name: str | None = None


@dataclass
class RecordedStart:
    """Every start request that reached the import logic: `started`, `blocked` or `refused`."""

    app: str
    hash: str
    outcome: str
    at: float
    import_id: str | None = None


@dataclass
class RecordedImport:
    id: str
    app: str
    hash: str
    rows: int
    behaviour: ImportBehaviour
    started_at: float
    status: str = assumed.ELMA365_STATUS_IN_PROGRESS
    imported: int = 0
    polls: int = 0
    finished_at: float | None = None
    error: str | None = None
    #: Emulator clock of the last status request answered (not refused) for this import.
    last_polled_at: float | None = None
    #: Status requests refused for coming sooner than `min_status_interval_s` after the last answered one.
    polls_refused: int = 0


@dataclass
class _TempFile:
    hash: str
    rows: int | None
    problem: str | None
    uploaded_at: float
    #: Set for a file in a directory, which never expires.
    directory: str | None = None


@dataclass
class _AppState:
    imported_rows: int = 0
    running: str | None = None
    foreign: set[str] = field(default_factory=set)


class Elma365Emulator(FaultInjectingServer):
    """In-memory ELMA365 served over loopback HTTP; thread-safe; usable as a context manager."""

    def __init__(
        self,
        config: Elma365EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config or Elma365EmulatorConfig()
        self.clock = clock
        #: How new imports run (copied when an import starts); `queue_behaviours` overrides it per import.
        self.import_behaviour = ImportBehaviour()
        self.calls: list[RecordedCall] = []
        self.uploads: list[RecordedUpload] = []
        self.starts: list[RecordedStart] = []
        self.imports: list[RecordedImport] = []
        self._apps = {f"{ns}.{code}": _AppState() for ns, code in self.config.apps}
        self._files: dict[str, _TempFile] = {}
        self._imports: dict[str, RecordedImport] = {}
        self._behaviours: deque[ImportBehaviour] = deque()
        self._forced_blocks = 0
        self._forced_status_blocks = 0
        #: The HTTP status a `blocked` answer comes with (200 unless a test says otherwise: not published).
        self.blocked_http_status = 200
        self._lock = threading.RLock()
        app_path = assumed.ELMA365_IMPORT_PATH.format(namespace="<namespace>", code="<code>")
        status_path = assumed.ELMA365_STATUS_PATH.format(
            namespace="<namespace>", code="<code>", import_id="<import_id>"
        )
        self._routes = Map(
            [
                Rule(assumed.ELMA365_UPLOAD_PATH, methods=["POST"], endpoint=UPLOAD),
                Rule(
                    assumed.ELMA365_DIRECTORY_UPLOAD_PATH.format(directory_id="<directory_id>"),
                    methods=["POST"],
                    endpoint=DIRECTORY_UPLOAD,
                ),
                Rule(app_path, methods=["POST"], endpoint=START_IMPORT),
                Rule(status_path, methods=["GET", "POST"], endpoint=IMPORT_STATUS),
            ]
        )
        super().__init__(self._wsgi, name="elma365-emulator", host=host, port=port)

    # --- test controls ---------------------------------------------------------------------------

    def queue_behaviours(self, *behaviours: ImportBehaviour) -> None:
        """The next imports run with these, in order (e.g. chunk 2 of 3 fails); then `import_behaviour`."""
        with self._lock:
            self._behaviours.extend(behaviours)

    def block_next_starts(self, count: int) -> None:
        """The next `count` import starts answer `blocked`, as if another import were running."""
        with self._lock:
            self._forced_blocks += count

    def block_next_status_checks(self, count: int) -> None:
        """The next `count` status requests answer `blocked` (with `blocked_http_status`) instead of the
        import's state, as ELMA365 might while the import waits to begin."""
        with self._lock:
            self._forced_status_blocks += count

    def start_foreign_import(
        self, namespace: str, code: str, *, rows: int = 10, behaviour: ImportBehaviour | None = None
    ) -> str:
        """An import someone else started in the app (a person in ELMA365's UI): the app is busy until it ends."""
        with self._lock:
            app = f"{namespace}.{code}"
            run = self._begin(app, f"foreign-{uuid.uuid4()}", rows, behaviour or replace(self.import_behaviour))
            self._apps[app].foreign.add(run.id)
            return run.id

    def import_(self, import_id: str) -> RecordedImport:
        """An import, advanced to where the clock says it is."""
        with self._lock:
            run = self._imports[import_id]
            self._advance(run)
            return run

    def imported_rows(self, namespace: str | None = None, code: str | None = None) -> int:
        """Rows the app has imported in total (the first configured app by default)."""
        with self._lock:
            for run in self._imports.values():
                self._advance(run)
            ns, cd = self.config.apps[0]
            return self._apps[f"{namespace or ns}.{code or cd}"].imported_rows

    def calls_of(self, operation: str) -> list[RecordedCall]:
        with self._lock:
            return [call for call in self.calls if call.operation == operation]

    def own_imports(self) -> list[RecordedImport]:
        """The imports started through the API (not `start_foreign_import`), advanced to now."""
        with self._lock:
            foreign = set().union(*(state.foreign for state in self._apps.values()))
            runs = [run for run in self.imports if run.id not in foreign]
            for run in runs:
                self._advance(run)
            return list(runs)

    # --- WSGI ------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self._routes.bind_to_environ(environ).match()
        except HTTPException as error:
            request.get_data()
            return _error(error.code or 404, error.description or "not found")(environ, start_response)
        # faults are injected per operation: UPLOAD, START_IMPORT, IMPORT_STATUS
        work = functools.partial(self._dispatch, endpoint, request, args)
        return self._answer(environ, start_response, endpoint, request, work, _error)

    def _dispatch(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> Response:
        authorization = request.headers.get("Authorization") or ""
        if not authorization.startswith("Bearer "):
            request.get_data()
            return _error(401, "authorization required")
        if authorization.removeprefix("Bearer ") != self.config.token:
            request.get_data()
            return _error(403, "login failed")
        if endpoint == UPLOAD:
            return self._upload(request)
        if endpoint == DIRECTORY_UPLOAD:
            directory = str(args["directory_id"])
            if directory not in self.config.directories:
                request.get_data()
                return _error(404, f"directory {directory} not found")
            return self._upload(request, directory=directory)
        app = f"{args['namespace']}.{args['code']}"
        if app not in self._apps:
            return _error(404, f"app {app} not found")
        if endpoint == START_IMPORT:
            return self._start(request, app)
        return self._status(app, str(args["import_id"]))

    def _record(self, operation: str, request: Request, status: int) -> None:
        with self._lock:
            self.calls.append(RecordedCall(operation, request.method, request.path, status, self.clock()))

    # --- operations ------------------------------------------------------------------------------

    def _upload(self, request: Request, *, directory: str | None = None) -> Response:
        hash_param = (
            assumed.ELMA365_UPLOAD_HASH_PARAM if directory is None else assumed.ELMA365_DIRECTORY_UPLOAD_HASH_PARAM
        )
        file_hash = request.args.get(hash_param)
        name = request.args.get(assumed.ELMA365_DIRECTORY_UPLOAD_NAME_PARAM) if directory is not None else None
        if not file_hash:
            request.get_data()
            return _error(400, f"query parameter {hash_param} is required")
        if assumed.ELMA365_HASH_IS_UUID and not _is_uuid(file_hash):
            request.get_data()
            return _error(400, f"{hash_param} must be a UUID")
        if directory is not None and not name:
            request.get_data()
            return _error(400, f"query parameter {assumed.ELMA365_DIRECTORY_UPLOAD_NAME_PARAM} is required")
        counter = _CountingReader(request.stream)
        try:
            rows, problem = _count_csv_rows(counter)
        except ClientDisconnected:
            return _error(400, "the upload was cut off")
        now = self.clock()
        with self._lock:
            self._drop_expired(now)
            if file_hash in self._files:
                return _error(400, f"a file with hash {file_hash} already exists")
            if counter.size == 0:
                return _error(400, "the file is empty")
            self._files[file_hash] = _TempFile(file_hash, rows, problem, now, directory)
            self.uploads.append(RecordedUpload(file_hash, rows, counter.size, now, directory, name))
        return _json({"success": True})

    def _start(self, request: Request, app: str) -> Response:
        body = _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        file_hash = body.get(assumed.ELMA365_IMPORT_HASH_KEY)
        file_format = body.get(assumed.ELMA365_IMPORT_FORMAT_KEY)
        handlers = body.get(assumed.ELMA365_IMPORT_EVENT_HANDLERS_KEY)
        if not isinstance(file_hash, str) or not file_hash:
            return _error(400, f"{assumed.ELMA365_IMPORT_HASH_KEY} is required")
        if file_format not in assumed.ELMA365_IMPORT_FORMATS:
            return _error(400, f"unknown format {file_format!r}; expected one of {assumed.ELMA365_IMPORT_FORMATS}")
        if not isinstance(handlers, bool):
            return _error(400, f"{assumed.ELMA365_IMPORT_EVENT_HANDLERS_KEY} (true or false) is required")
        now = self.clock()
        with self._lock:
            self._drop_expired(now)
            temp = self._files.get(file_hash)
            if temp is None:
                self.starts.append(RecordedStart(app, file_hash, "refused", now))
                return _error(400, f"file {file_hash} not found or expired")
            if file_format == "csv" and temp.problem:
                self.starts.append(RecordedStart(app, file_hash, "refused", now))
                return _error(400, temp.problem)
            limit = self.config.temp_file_max_rows
            if temp.directory is None and limit is not None and (temp.rows or 0) > limit:
                self.starts.append(RecordedStart(app, file_hash, "refused", now))
                return _error(400, f"a temporary file may hold at most {limit} entries; upload it to a directory")
            state = self._apps[app]
            if state.running is not None:
                self._advance(self._imports[state.running])
            if self._forced_blocks or state.running is not None:
                self._forced_blocks = max(0, self._forced_blocks - 1)
                self.starts.append(RecordedStart(app, file_hash, "blocked", now))
                return self._blocked()
            behaviour = self._behaviours.popleft() if self._behaviours else replace(self.import_behaviour)
            run = self._begin(app, file_hash, temp.rows or 0, behaviour)
            self.starts.append(RecordedStart(app, file_hash, "started", now, run.id))
            return _json(_answer(run))

    def _status(self, app: str, import_id: str) -> Response:
        with self._lock:
            run = self._imports.get(import_id)
            if run is None or run.app != app:
                return _error(404, f"import {import_id} not found")
            now, interval = self.clock(), self.config.min_status_interval_s
            if interval is not None and run.last_polled_at is not None and now - run.last_polled_at < interval:
                run.polls_refused += 1
                wait = max(1, math.ceil(interval - (now - run.last_polled_at)))
                response = _error(assumed.ELMA365_RATE_LIMIT_STATUS, "status requested more than once a second")
                response.headers["Retry-After"] = str(wait)
                return response
            run.last_polled_at = now
            if self._forced_status_blocks:
                self._forced_status_blocks -= 1
                return self._blocked(run.id)
            run.polls += 1
            self._advance(run)
            return _json(_answer(run))

    def _blocked(self, import_id: str | None = None) -> Response:
        body: dict[str, Any] = {"success": True, assumed.ELMA365_ANSWER_STATUS_KEY: assumed.ELMA365_STATUS_BLOCKED}
        if import_id is not None:
            body[assumed.ELMA365_ANSWER_ID_KEY] = import_id
        if self.blocked_http_status >= 300:
            body["success"] = False
            body[assumed.ELMA365_ANSWER_ERROR_KEY] = "another import into the app is running"
        return _json(body, status=self.blocked_http_status)

    # --- imports ---------------------------------------------------------------------------------

    def _begin(self, app: str, file_hash: str, rows: int, behaviour: ImportBehaviour) -> RecordedImport:
        run = RecordedImport(str(uuid.uuid4()), app, file_hash, rows, behaviour, self.clock())
        self._imports[run.id] = run
        self.imports.append(run)
        self._apps[app].running = run.id
        self._advance(run)
        return run

    def _advance(self, run: RecordedImport) -> None:
        """Moves an import to where its clock (or poll count) says it is."""
        if run.status != assumed.ELMA365_STATUS_IN_PROGRESS:
            return
        behaviour, now = run.behaviour, self.clock()
        if behaviour.polls is not None:
            fraction = min(1.0, run.polls / max(1, behaviour.polls))
        elif behaviour.duration_s > 0:
            fraction = min(1.0, (now - run.started_at) / behaviour.duration_s)
        else:
            fraction = 1.0
        if fraction < 1.0:
            run.imported = int(run.rows * fraction) if not behaviour.fail_with else 0
            return
        run.finished_at = now if behaviour.polls is not None else min(now, run.started_at + behaviour.duration_s)
        state = self._apps[run.app]
        if state.running == run.id:
            state.running = None
        if behaviour.fail_with:
            run.status, run.error, run.imported = assumed.ELMA365_STATUS_ERROR, behaviour.fail_with, 0
            return
        run.status, run.imported = assumed.ELMA365_STATUS_DONE, run.rows
        state.imported_rows += run.rows

    def _drop_expired(self, now: float) -> None:
        expired = [
            h for h, f in self._files.items() if f.directory is None and now - f.uploaded_at >= TEMP_FILE_TTL_SECONDS
        ]
        for file_hash in expired:
            del self._files[file_hash]


def _answer(run: RecordedImport) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "success": True,
        assumed.ELMA365_ANSWER_ID_KEY: run.id,
        assumed.ELMA365_ANSWER_STATUS_KEY: run.status,
        assumed.ELMA365_ANSWER_IMPORTED_KEY: run.imported,
        assumed.ELMA365_ANSWER_TOTAL_KEY: run.rows,
    }
    if run.error:
        answer[assumed.ELMA365_ANSWER_ERROR_KEY] = run.error
    return answer


def _count_csv_rows(stream: io.RawIOBase) -> tuple[int | None, str | None]:
    """Data rows of an uploaded CSV read as a stream (None and a reason when it is not UTF-8 CSV)."""
    text = io.TextIOWrapper(io.BufferedReader(stream, 1024 * 1024), encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(text, strict=True)
        header = next(reader, None)
        if not header:
            _drain(stream)
            return None, "the file has no header row"
        rows = sum(1 for row in reader if row)
    except UnicodeDecodeError:
        _drain(stream)
        return None, "the file is not UTF-8 text"
    except csv.Error as error:
        _drain(stream)
        return None, f"the file is not a valid CSV: {error}"
    return rows, None


def _drain(stream: io.RawIOBase) -> None:
    while stream.read(1024 * 1024):
        pass


class _CountingReader(io.RawIOBase):
    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        self.size += len(data)
        return len(data)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.get_data() or b"null")
    except ValueError:
        return None


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"success": False, assumed.ELMA365_ANSWER_ERROR_KEY: message}, status=status)


def _app(value: str) -> tuple[str, str]:
    namespace, _, code = value.partition("/")
    if not namespace or not code:
        raise argparse.ArgumentTypeError(f"expected namespace/code, got {value!r}")
    return namespace, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8902)
    parser.add_argument("--token", default=Elma365EmulatorConfig.token)
    parser.add_argument("--app", action="append", help="namespace/code of an app (repeatable); default hr/employees")
    parser.add_argument("--import-seconds", type=float, default=ImportBehaviour.duration_s)
    args = parser.parse_args()
    apps = tuple(_app(app) for app in args.app) if args.app else Elma365EmulatorConfig.apps
    config = Elma365EmulatorConfig(token=args.token, apps=apps)
    emulator = Elma365Emulator(config, port=args.port)
    emulator.import_behaviour.duration_s = args.import_seconds
    names = ", ".join(f"{ns}.{code}" for ns, code in config.apps)
    print(f"ELMA365 emulator on {emulator.base_url} (apps {names}, token {args.token})")
    emulator.serve_forever()


if __name__ == "__main__":
    main()
