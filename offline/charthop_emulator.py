"""A local ChartHop: the endpoints this app calls, with ChartHop's paths, auth and payloads.

It follows ChartHop's published spec (the vendored contracts/charthop/, checked by offline/charthop_contract.py)
and `people_sync.api_assumptions` for what the spec leaves open. Every request is checked against the spec and
refused (400, with the validator's reason) when the spec does not define it: an unknown operation or method, an
unknown query parameter, a missing required one, a value outside an enum. Every answer is checked too: an answer
that leaves the spec is recorded in `contract_violations` (and in the process-wide list the test suite asserts
empty after each test, see `drain_contract_violations`). It also rejects what the real API would reject (missing
bearer token), simulates an asynchronous import whose progress advances with its own clock, records every call,
and can be told to fail. It serves several orgs (`add_org`), each with its own token and installed app user: a
request for one org with another org's token is 401, and each org sees only its own processes. The App API's
getAccessToken answers the developer org's (the config's org) requests for an org's install with a fresh token
that expires after `minted_token_seconds`; an expired or revoked token is refused with 401 (`revoke_token`). With
`echo_process_events` it delivers `process.create.<app>` for the processes the app
creates (createProcess, and the child process of importDataCsv), as ChartHop may.

Run it alone with `python -m offline.charthop_emulator --port 8900`.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import requests
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from offline.charthop_contract import contract
from offline.emulator_base import Fault, FaultInjectingServer
from people_sync import api_assumptions as assumed

PROCESS_STATUSES = ("PENDING", "RUNNING", "DONE", "ERROR")
REQUIRED_IMPORT_FLAGS = (
    "skipErrors",
    "upsert",
    "createGroups",
    "disableSyncHireDate",
    "disableOverwritePerson",
    "importDryRun",
)
CREATE_PROCESS_REQUIRED = ("orgId", "label", "type", "status", "runUserId", "options")
LOG_LEVELS = ("INFO", "WARN", "ERROR")
#: Request bodies up to this size are checked against the spec; a larger upload (a benchmark's) is checked
#: without its body, so the emulator does not hold it in memory (its `file` part is still required below).
CONTRACT_BODY_LIMIT = 8 * 1024 * 1024
#: Every emulator's answers that left the spec, process-wide (tests/conftest.py asserts none after each test).
_CONTRACT_VIOLATIONS: list[ContractViolation] = []
_VIOLATIONS_LOCK = threading.Lock()

__all__ = [
    "ChartHopEmulator",
    "ContractViolation",
    "EmulatorConfig",
    "Fault",
    "ImportBehaviour",
    "OrgAccount",
    "RecordedCall",
    "RecordedUpdate",
    "RecordedUpload",
    "drain_contract_violations",
    "record_contract_violation",
]


@dataclass(frozen=True)
class ContractViolation:
    """A request the emulator refused, or an answer of the emulator, that the spec does not define."""

    side: str  # "request" or "response"
    method: str
    path: str
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.side} {self.method} {self.path}: {'; '.join(self.reasons)}"


def record_contract_violation(violation: ContractViolation) -> None:
    """Records an answer outside the spec process-wide (for stand-ins other than the emulator, too)."""
    with _VIOLATIONS_LOCK:
        _CONTRACT_VIOLATIONS.append(violation)


def drain_contract_violations() -> list[ContractViolation]:
    """The emulators' answers that left the spec since the last drain (process-wide), and forgets them."""
    with _VIOLATIONS_LOCK:
        drained = list(_CONTRACT_VIOLATIONS)
        _CONTRACT_VIOLATIONS.clear()
    return drained


@dataclass
class ImportBehaviour:
    """How the next imports run. `duration_s` of emulator clock time, or `polls` getProcess calls."""

    duration_s: float = 3.0
    polls: int | None = None
    fail_with: str | None = None  # an import ERROR message, e.g. "Unknown column 'Salary'"


@dataclass
class RecordedCall:
    operation: str
    method: str
    path: str
    status: int
    at: float
    query: dict[str, str] = field(default_factory=dict)
    #: The org the path names (`/v1/org/<org>/...`) and the Authorization header the call carried.
    org: str = ""
    authorization: str = ""


@dataclass(frozen=True)
class OrgAccount:
    """An org that installed the app: its id (and slug), the app's token there and the app's user there."""

    org_id: str
    token: str
    app_user_id: str
    slug: str = ""


@dataclass
class RecordedUpdate:
    process_id: str
    body: dict[str, Any]
    at: float


@dataclass
class RecordedUpload:
    import_process_id: str
    file_name: str
    size: int
    rows: int
    query: dict[str, str]
    org_id: str = ""


@dataclass
class _ImportRun:
    behaviour: ImportBehaviour
    started: float
    rows: int
    bad_rows: int
    created: int
    updated: int
    polls: int = 0
    #: (data row, column or None, message) of each bad row, in file order.
    row_errors: list[tuple[int, str | None, str]] = field(default_factory=list)
    #: (data row, created) of the first good rows, listed as HIRE/UPDATE events.
    good_rows: list[tuple[int, bool]] = field(default_factory=list)
    #: importDryRun without importAfterDryRun: nothing is applied.
    validates_only: bool = False


@dataclass
class EmulatorConfig:
    org_id: str = "588f7ee98f138b19220041a7"
    org_slug: str = "acme"
    token: str = "emulator-app-token"  # noqa: S105 - the emulator's own fake token
    app_name: str = "people-sync"
    app_id: str = "64b0c0ffee64b0c0ffee0001"
    app_user_id: str = "64b0c0ffee64b0c0ffee0002"
    admin_user_id: str = "64b0c0ffee64b0c0ffee0003"
    webhook_url: str | None = None
    webhook_headers: dict[str, str] = field(default_factory=dict)
    #: The most processes one findProcesses page holds (also the page size when `limit` is absent). ChartHop's
    #: own cap is not published; it is small here so that tests page through several pages.
    process_page_size: int = 20
    #: findProcesses lists newest first; ChartHop's order is not published, so tests can reverse it.
    newest_first: bool = True
    #: The `type` of the process importDataCsv creates (free text in the spec; the app must not rely on it).
    import_process_type: str = assumed.CHARTHOP_IMPORT_PROCESS_TYPE
    #: Columns a row must have a value in (a row with an empty one is a row error naming the column); a row
    #: whose field count differs from the header's is always a row error.
    required_columns: tuple[str, ...] = ()
    #: getProcessEvents lists a HIRE/UPDATE event for at most this many good rows of an import (and every error).
    listed_good_rows: int = 50
    #: Check every request and answer against the vendored spec (refuse requests it does not define).
    validate_contract: bool = True
    #: Deliver `process.create.<app>` to the webhook for every process the app creates through createProcess
    #: and for every child import process importDataCsv creates, as ChartHop may (they are echoes, not presses).
    echo_process_events: bool = False
    #: Echoes carry the created Process as `payload` (an assumption); False leaves it out, so the app must tell
    #: an echo from getProcess and its start journal instead of the delivery.
    echo_with_payload: bool = True
    #: getAccessToken's `expires_in`: a token it hands out is refused (401) this many emulator-clock seconds later.
    minted_token_seconds: int = 3600


class ChartHopEmulator(FaultInjectingServer):
    """In-memory ChartHop served over loopback HTTP; thread-safe; usable as a context manager."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.clock = clock
        self.import_behaviour = ImportBehaviour()
        self.processes: dict[str, dict[str, Any]] = {}
        self.calls: list[RecordedCall] = []
        self.updates: list[RecordedUpdate] = []
        self.uploads: list[RecordedUpload] = []
        self.roster: set[str] = set()
        #: The orgs `add_org` added (the config's org is always served, see `orgs`).
        self._added_orgs: dict[str, OrgAccount] = {}
        #: Each org's people (first-column keys), apart.
        self.rosters: dict[str, set[str]] = {self.config.org_id: self.roster}
        #: appendToProcessLogFile's entries per process, in the order they arrived.
        self.process_logs: dict[str, list[dict[str, Any]]] = {}
        #: Requests refused because the spec does not define them, and answers that left the spec.
        self.refused_requests: list[ContractViolation] = []
        self.contract_violations: list[ContractViolation] = []
        #: Echo deliveries: (process id, webhook status or None when it could not be delivered).
        self.echoes: list[tuple[str, int | None]] = []
        self._echo_threads: list[threading.Thread] = []
        self._imports: dict[str, _ImportRun] = {}
        #: Tokens getAccessToken handed out: token -> (org, expiry on the emulator clock).
        self._issued: dict[str, tuple[str, float]] = {}
        #: Orgs whose install getAccessToken cannot hand a token for (answers 404, as for an install gone).
        self._unmintable: set[str] = set()
        self._lock = threading.RLock()
        self._routes = Map(
            [
                Rule("/v1/org/<org>/import/csv/data", methods=["POST"], endpoint="importDataCsv"),
                Rule("/v1/org/<org>/process", methods=["GET"], endpoint="findProcesses"),
                Rule("/v1/org/<org>/process", methods=["POST"], endpoint="createProcess"),
                Rule("/v1/org/<org>/process/<process_id>", methods=["GET"], endpoint="getProcess"),
                Rule("/v1/org/<org>/process/<process_id>", methods=["PATCH"], endpoint="updateProcess"),
                Rule("/v1/org/<org>/process/<process_id>/events", methods=["GET"], endpoint="getProcessEvents"),
                Rule("/v1/org/<org>/process/<process_id>/log", methods=["POST"], endpoint="appendToProcessLogFile"),
                Rule("/v1/org/<org>/process/<process_id>/log", methods=["GET"], endpoint="getProcessLogFile"),
                Rule("/v1/app/org/<org>/install/<app_user_id>/token", methods=["GET"], endpoint="getAccessToken"),
            ]
        )
        if self.config.validate_contract:
            contract()  # load the spec now (about a second), not inside the first call a client times
        super().__init__(self._wsgi, name="charthop-emulator", host=host, port=port)

    # --- test controls ---------------------------------------------------------------------------

    @property
    def orgs(self) -> dict[str, OrgAccount]:
        """The orgs served, by id: the config's org (its token as configured now: tests rotate it) first."""
        config = self.config
        own = OrgAccount(config.org_id, config.token, config.app_user_id, config.org_slug)
        with self._lock:
            return {config.org_id: own, **self._added_orgs}

    def add_org(self, org_id: str, *, token: str, app_user_id: str | None = None, slug: str = "") -> OrgAccount:
        """Another org installs the app: it gets its own token and its own app user."""
        account = OrgAccount(org_id, token, app_user_id or secrets.token_hex(12), slug)
        with self._lock:
            self._added_orgs[org_id] = account
            self.rosters.setdefault(org_id, set())
        return account

    def revoke_token(self, org_id: str, *, mintable: bool = True) -> None:
        """ChartHop stops taking the org's token and every token it handed out for the org (401 from now on).
        `mintable`: getAccessToken can still hand out a fresh one; False: it answers 404 for the org's install."""
        unguessable = f"revoked-{secrets.token_hex(16)}"
        with self._lock:
            if org_id == self.config.org_id:
                self.config.token = unguessable
            else:
                self._added_orgs[org_id] = replace(self._added_orgs[org_id], token=unguessable)
            self._issued = {token: held for token, held in self._issued.items() if held[0] != org_id}
            if mintable:
                self._unmintable.discard(org_id)
            else:
                self._unmintable.add(org_id)

    def issued_tokens(self, org_id: str) -> list[str]:
        """The tokens getAccessToken handed out for the org, oldest first (expired ones included)."""
        with self._lock:
            return [token for token, (org, _) in self._issued.items() if org == org_id]

    def processes_of(self, org_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(self._refresh(pid)) for pid, p in list(self.processes.items()) if p["orgId"] == org_id]

    def uploads_of(self, org_id: str) -> list[RecordedUpload]:
        with self._lock:
            return [upload for upload in self.uploads if upload.org_id == org_id]

    def create_sync_process(self, *, label: str | None = None, org_id: str | None = None) -> dict[str, Any]:
        """What ChartHop does when a user presses "Sync Now": a PENDING sync process for the app."""
        return self._new_process(
            label=label or f"{self.config.app_name} sync",
            process_type=assumed.CHARTHOP_SYNC_PROCESS_TYPE,
            run_user_id=self.config.admin_user_id,
            options={},
            app_id=self.config.app_id,
            org_id=org_id,
        )

    def press_sync_now(self, org_id: str | None = None) -> dict[str, Any]:
        """Creates the sync process (in `org_id`, default the config's org) and delivers
        `process.create.{app}` to the app's webhook URL."""
        if not self.config.webhook_url:
            raise RuntimeError("no webhook URL configured")
        process = self.create_sync_process(org_id=org_id)
        event = self.sync_now_event(process)
        response = requests.post(self.config.webhook_url, json=event, headers=self.config.webhook_headers, timeout=30)
        return {"process": process, "event": event, "status": response.status_code, "body": response.text}

    def wait_for_echoes(self, timeout: float = 30.0) -> list[tuple[str, int | None]]:
        """Waits until every echo delivery started so far has been answered; returns all echoes."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [thread for thread in self._echo_threads if thread.is_alive()]
            if not pending:
                break
            pending[0].join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(pending)} echo deliveries still running")
        with self._lock:
            return list(self.echoes)

    def _echo(self, process: dict[str, Any]) -> None:
        """Delivers `process.create.<app>` for a process the app created, a moment later and from another
        thread (ChartHop delivers within seconds, never inside the call that created the process)."""
        if not (self.config.echo_process_events and self.config.webhook_url):
            return
        event = self.sync_now_event(process)
        if not self.config.echo_with_payload:
            del event["payload"]

        def deliver() -> None:
            status: int | None
            try:
                response = requests.post(
                    str(self.config.webhook_url), json=event, headers=self.config.webhook_headers, timeout=30
                )
                status = response.status_code
            except requests.RequestException:
                status = None
            with self._lock:
                self.echoes.append((process["id"], status))

        thread = threading.Thread(target=deliver, name=f"charthop-echo-{process['id'][:8]}", daemon=True)
        with self._lock:
            self._echo_threads.append(thread)
        thread.start()

    def sync_now_event(self, process: dict[str, Any]) -> dict[str, Any]:
        return assumed.sync_now_event(
            event_id=secrets.token_hex(12),
            org_id=process.get("orgId") or self.config.org_id,
            app_id=self.config.app_id,
            app_name=self.config.app_name,
            user_id=self.config.admin_user_id,
            user_name="Pat Admin",
            process=process,
            at=_now_iso(),
        )

    def process(self, process_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._refresh(process_id))

    def updates_for(self, process_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [update.body for update in self.updates if update.process_id == process_id]

    def log_of(self, process_id: str) -> list[dict[str, Any]]:
        """The entries appended to a process's log (appendToProcessLogFile)."""
        with self._lock:
            return [dict(entry) for entry in self.process_logs.get(process_id, [])]

    def calls_of(self, operation: str) -> list[RecordedCall]:
        with self._lock:
            return [call for call in self.calls if call.operation == operation]

    # --- WSGI ------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        if self.config.validate_contract:
            refused = self._refuse_outside_contract(request)
            if refused is not None:
                return refused(environ, start_response)
        try:
            endpoint, args = self._routes.bind_to_environ(environ).match()
        except HTTPException as error:
            response = _error(error.code or 404, error.description or "not found")
            return response(environ, start_response)
        # faults are injected per operationId (e.g. "getProcess")
        work = functools.partial(self._checked_dispatch, endpoint, request, args)
        return self._answer(environ, start_response, endpoint, request, work, _error)

    def _refuse_outside_contract(self, request: Request) -> Response | None:
        """400 with the validator's reasons when the spec does not define this request; 415 for a body whose
        media type (or the lack of one) is not one of the operation's requestBody media types."""
        size = request.content_length
        body = request.get_data(cache=True) if size is not None and size <= CONTRACT_BODY_LIMIT else None
        content_type = request.headers.get("Content-Type") or ""
        unsupported = _unsupported_media_type(request, content_type)
        if unsupported is not None:
            return self._refuse(request, assumed.CHARTHOP_UNSUPPORTED_MEDIA_TYPE_STATUS, [unsupported])
        reasons = contract().check_request(
            request.method, request.path, list(request.args.items(multi=True)), body, content_type
        )
        if not reasons:
            return None
        return self._refuse(request, 400, reasons)

    def _refuse(self, request: Request, status: int, reasons: list[str]) -> Response:
        violation = ContractViolation("request", request.method, request.path, tuple(reasons))
        operation = contract().operation_id(request.method, request.path) or "outside-contract"
        with self._lock:
            self.refused_requests.append(violation)
        self._record(operation, request, status)
        return _error(status, f"the request does not follow ChartHop's API: {'; '.join(reasons)}")

    def _checked_dispatch(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> Response:
        """The operation's answer, checked against the spec; an answer that leaves it is recorded."""
        response = self._dispatch(endpoint, request, args)
        if self.config.validate_contract:
            reasons = contract().check_response(
                request.method, request.path, response.status_code, response.get_data(), response.mimetype or ""
            )
            if reasons:
                violation = ContractViolation("response", request.method, request.path, tuple(reasons))
                with self._lock:
                    self.contract_violations.append(violation)
                record_contract_violation(violation)
        return response

    def _dispatch(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> Response:
        orgs = self.orgs.values()
        presented = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        holder = next((a for a in orgs if presented and presented == a.token), None)
        with self._lock:
            issued = self._issued.get(presented)
        if holder is None and issued is not None:
            if self.clock() >= issued[1]:
                return _error(assumed.CHARTHOP_TOKEN_EXPIRED_STATUS, "not authorized: the token expired")
            holder = self.orgs.get(issued[0])
        account = next((a for a in orgs if args["org"] in (a.org_id, a.slug)), None)
        if holder is None:
            return _error(401, "not authorized")
        if endpoint == "getAccessToken":
            return self._op_getAccessToken(holder, account, args["app_user_id"])
        if account is None:
            return _error(403, "permission denied")
        if holder.org_id != account.org_id:  # an app token is valid in the org that installed the app only
            return _error(401, "not authorized for this org")
        handler = getattr(self, f"_op_{endpoint}")
        try:
            result: Response = handler(request, account, **{k: v for k, v in args.items() if k != "org"})
        except NotFound:
            return _error(assumed.CHARTHOP_NOT_FOUND_STATUS, "process not found")
        return result

    def _record(self, operation: str, request: Request, status: int) -> None:
        parts = request.path.split("/")
        org = parts[3] if len(parts) > 3 and parts[1:3] == ["v1", "org"] else ""
        if len(parts) > 4 and parts[1:4] == ["v1", "app", "org"]:
            org = parts[4]  # the App API's org-scoped operations (getAccessToken: the org whose token is asked)
        with self._lock:
            self.calls.append(
                RecordedCall(
                    operation,
                    request.method,
                    request.path,
                    status,
                    self.clock(),
                    dict(request.args),
                    org=org,
                    authorization=request.headers.get("Authorization") or "",
                )
            )

    # --- operations ------------------------------------------------------------------------------

    def _op_getAccessToken(  # noqa: N802 - ChartHop's operationId
        self, holder: OrgAccount, account: OrgAccount | None, app_user_id: str
    ) -> Response:
        """AccessTokenResponse for an org's install, asked by the app's developer org (the config's org, as
        api_assumptions.CHARTHOP_ACCESS_TOKEN_CALLER assumes): a fresh token, valid `minted_token_seconds`."""
        if holder.org_id != self.config.org_id:
            return _error(403, "permission denied")
        if account is None or account.app_user_id != app_user_id or account.org_id in self._unmintable:
            return _error(404, "not found")
        token = f"minted-{secrets.token_hex(16)}"
        seconds = self.config.minted_token_seconds
        with self._lock:
            self._issued[token] = (account.org_id, self.clock() + seconds)
        return _json({"access_token": token, "token_type": "bearer", "expires_in": seconds})

    def _op_importDataCsv(self, request: Request, account: OrgAccount) -> Response:  # noqa: N802 - ChartHop's operationId
        for flag in REQUIRED_IMPORT_FLAGS:
            value = request.args.get(flag)
            if value is None:
                return _error(400, f"missing required query parameter {flag}")
            if value not in ("true", "false"):
                return _error(400, f"query parameter {flag} must be true or false")
        if not (request.mimetype or "").startswith("multipart/form-data"):
            return _error(400, "expected multipart/form-data")
        upload = request.files.get("file")
        if upload is None:
            return _error(400, "missing multipart part 'file'")
        parent_id = request.args.get("parentProcessId")
        with self._lock:
            parent = self.processes.get(parent_id) if parent_id else None
            if parent_id and (parent is None or parent["orgId"] != account.org_id):
                return _error(400, f"parentProcessId {parent_id} does not exist")
        after_dry_run = request.args.get("importAfterDryRun")
        if after_dry_run is not None and after_dry_run not in ("true", "false"):
            return _error(400, "query parameter importAfterDryRun must be true or false")
        read = _read_csv(upload.stream, self.config.required_columns, self.config.listed_good_rows)
        size, rows, keys = read.size, read.rows, read.keys
        if read.problem:
            return _error(400, read.problem)
        options = {key: request.args[key] for key in request.args}
        dry_run = options["importDryRun"] == "true"
        validates_only = dry_run and after_dry_run != "true"
        # importAfterDryRun imports only when the dry run succeeds: no bad rows, or bad rows are skipped
        applies = not validates_only and (not dry_run or not read.errors or options["skipErrors"] == "true")
        with self._lock:
            roster = self.rosters.setdefault(account.org_id, set())
            created = len(keys - roster)
            listed = [(row, key not in roster) for row, key in read.good_rows]
            if applies:
                roster |= keys
            process = self._new_process(
                label=f"Import {upload.filename}",
                process_type=self.config.import_process_type,
                run_user_id=account.app_user_id,
                options=options,
                parent_process_id=parent_id,
                file_path=upload.filename,
                org_id=account.org_id,
            )
            self._imports[process["id"]] = _ImportRun(
                behaviour=ImportBehaviour(**vars(self.import_behaviour)),
                started=self.clock(),
                rows=rows,
                bad_rows=len(read.errors),
                created=created,
                updated=len(keys) - created,
                row_errors=read.errors,
                good_rows=listed,
                validates_only=validates_only,
            )
            self.uploads.append(
                RecordedUpload(process["id"], upload.filename or "", size, rows, options, org_id=account.org_id)
            )
        self._echo(process)
        return _json(process)

    def _op_getProcess(self, request: Request, account: OrgAccount, process_id: str) -> Response:  # noqa: N802
        with self._lock:
            self._get(process_id, account.org_id)
            run = self._imports.get(process_id)
            if run is not None:
                run.polls += 1
            return _json(self._refresh(process_id))

    def _op_updateProcess(self, request: Request, account: OrgAccount, process_id: str) -> Response:  # noqa: N802
        body = _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "body must be an UpdateProcess object")
        status = body.get("status")
        if status is not None and status not in PROCESS_STATUSES:
            return _error(400, f"invalid status {status!r}")
        progress = body.get("progress")
        if progress is not None and (
            isinstance(progress, bool)
            or not isinstance(progress, int | float)
            or not assumed.CHARTHOP_PROGRESS_MIN <= progress <= assumed.CHARTHOP_PROGRESS_MAX
        ):
            return _error(400, f"invalid progress {progress!r}")
        with self._lock:
            process = self._get(process_id, account.org_id)
            self.updates.append(RecordedUpdate(process_id, body, self.clock()))
            for key in ("status", "message", "progress", "results", "summary", "state", "logDataList"):
                if key in body:
                    process[key] = body[key]
            process["updateAt"] = _now_iso()
            if status == "RUNNING" and not process.get("startAt"):
                process["startAt"] = _now_iso()
            if status in ("DONE", "ERROR"):
                process["endAt"] = _now_iso()
            return _json(process)

    def _op_getProcessEvents(self, request: Request, account: OrgAccount, process_id: str) -> Response:  # noqa: N802
        """ProcessEventResponse: a finished import's per-row events (HIRE/UPDATE for the first good rows, ERROR
        for every bad one, in row order; the error shape is api_assumptions.row_error_event)."""
        with self._lock:
            self._get(process_id, account.org_id)
            process = self._refresh(process_id)
            run = self._imports.get(process_id)
            if run is None or process["status"] not in ("DONE", "ERROR"):
                return _json({"events": []})
            at = process.get("endAt") or _now_iso()
            events: list[tuple[int, dict[str, Any]]] = [
                (
                    row,
                    {
                        "id": f"{process_id}-r{row}",
                        "type": "HIRE" if created else "UPDATE",
                        "entityData": {assumed.CHARTHOP_EVENT_ROW_KEY: row},
                        "updates": [],
                        "at": at,
                    },
                )
                for row, created in run.good_rows
            ]
            events += [
                (
                    row,
                    assumed.row_error_event(
                        event_id=f"{process_id}-e{row}", row=row, column=column, message=text, at=at
                    ),
                )
                for row, column, text in run.row_errors
            ]
        events.sort(key=lambda pair: pair[0])
        return _json({"events": [event for _, event in events]})

    def _op_appendToProcessLogFile(self, request: Request, account: OrgAccount, process_id: str) -> Response:  # noqa: N802
        body = _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("log"), list):
            return _error(400, "body must be an AppendLogRequest object with a log array")
        for entry in body["log"]:
            problem = _log_data_problem(entry)
            if problem:
                return _error(400, problem)
        with self._lock:
            self._get(process_id, account.org_id)
            self.process_logs.setdefault(process_id, []).extend(body["log"])
        return Response(status=200)

    def _op_getProcessLogFile(self, request: Request, account: OrgAccount, process_id: str) -> Response:  # noqa: N802
        """The log as newline-delimited JSON."""
        with self._lock:
            self._get(process_id, account.org_id)
            lines = [json.dumps(entry) for entry in self.process_logs.get(process_id, [])]
        return Response("".join(f"{line}\n" for line in lines), mimetype="application/x-ndjson")

    def _op_createProcess(self, request: Request, account: OrgAccount) -> Response:  # noqa: N802
        body = _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "body must be a CreateProcess object")
        missing = [key for key in CREATE_PROCESS_REQUIRED if body.get(key) in (None, "")]
        if missing:
            return _error(400, f"missing required fields: {', '.join(missing)}")
        if body["status"] not in PROCESS_STATUSES:
            return _error(400, f"invalid status {body['status']!r}")
        with self._lock:
            process = self._new_process(
                label=body["label"],
                process_type=body["type"],
                run_user_id=body["runUserId"],
                options=body["options"],
                parent_process_id=body.get("parentProcessId"),
                app_id=body.get("appId") or self.config.app_id,
                status=body["status"],
                message=body.get("message"),
                org_id=account.org_id,
            )
        self._echo(process)
        return _json(process, status=201)

    def _op_findProcesses(self, request: Request, account: OrgAccount) -> Response:  # noqa: N802
        """One page of processes, as the spec pages them: at most `limit`, `next` names where the next page
        starts (assumed: the id of its first process), and `from` asks for the page starting there."""
        parent = request.args.get("parentProcessId")
        statuses = {s for s in (request.args.get("statuses") or "").split(",") if s}
        app_id = request.args.get("appId")
        page_size = self.config.process_page_size
        try:
            limit = min(page_size, int(request.args.get("limit") or page_size))
        except ValueError:
            return _error(400, f"invalid limit {request.args.get('limit')!r}")
        if limit < 1:
            return _error(400, f"invalid limit {limit}")
        with self._lock:
            found = [self._refresh(pid) for pid, p in list(self.processes.items()) if p["orgId"] == account.org_id]
        if parent:
            found = [p for p in found if p.get("parentProcessId") == parent]
        if app_id:
            found = [p for p in found if p.get("appId") == app_id]
        if statuses:
            found = [p for p in found if p["status"] in statuses]
        newest_first = self.config.newest_first
        found.sort(key=_listing_key, reverse=newest_first)
        start = 0
        cursor = request.args.get(assumed.CHARTHOP_PAGE_FROM_PARAM)
        if cursor:
            with self._lock:
                origin = self.processes.get(cursor)
            if origin is None or origin["orgId"] != account.org_id:
                return _error(400, f"{assumed.CHARTHOP_PAGE_FROM_PARAM} {cursor!r} is not a process")
            # by position, not membership: the cursor may have left the filter (e.g. changed status) meanwhile
            mark = _listing_key(origin)
            start = next(
                (
                    i
                    for i, p in enumerate(found)
                    if (_listing_key(p) <= mark if newest_first else _listing_key(p) >= mark)
                ),
                len(found),
            )
        page = found[start : start + limit]
        rest = found[start + limit :]
        body: dict[str, Any] = {"data": page}
        if rest:
            body[assumed.CHARTHOP_NEXT_FIELD] = rest[0]["id"]
        return _json(body)

    # --- process store ---------------------------------------------------------------------------

    def _new_process(
        self,
        *,
        label: str,
        process_type: str,
        run_user_id: str,
        options: dict[str, Any],
        parent_process_id: str | None = None,
        app_id: str | None = None,
        status: str = "PENDING",
        message: str | None = None,
        file_path: str | None = None,
        org_id: str | None = None,
    ) -> dict[str, Any]:
        process: dict[str, Any] = {
            "id": secrets.token_hex(12),  # unique across orgs, as ChartHop's ids are (an assumption)
            "orgId": org_id or self.config.org_id,
            "label": label,
            "type": process_type,
            "status": status,
            "runUserId": run_user_id,
            "createId": run_user_id,
            "createAt": _now_iso(),
            "options": options,
            "progress": 0.0,
        }
        for key, value in (
            ("parentProcessId", parent_process_id),
            ("appId", app_id),
            ("message", message),
            ("filePath", file_path),
        ):
            if value is not None:
                process[key] = value
        with self._lock:
            self.processes[process["id"]] = process
        return dict(process)

    def _get(self, process_id: str, org_id: str | None = None) -> dict[str, Any]:
        """The process; NotFound when it does not exist, or (with `org_id`) is another org's."""
        process = self.processes.get(process_id)
        if process is None or (org_id is not None and process["orgId"] != org_id):
            raise NotFound()
        return process

    def _refresh(self, process_id: str) -> dict[str, Any]:
        """Advances a simulated import to where its clock (or poll count) says it is."""
        process = self._get(process_id)
        run = self._imports.get(process_id)
        if run is None or process["status"] in ("DONE", "ERROR"):
            return dict(process)
        behaviour = run.behaviour
        if behaviour.polls is not None:
            fraction = min(1.0, run.polls / max(1, behaviour.polls))
        else:
            fraction = min(1.0, (self.clock() - run.started) / behaviour.duration_s) if behaviour.duration_s else 1.0
        if fraction >= 1.0:
            self._complete(process, run)
        elif fraction >= 0.1:
            verb = "Validated" if run.validates_only else "Imported"
            process.update(
                status="RUNNING",
                progress=round(fraction, 2),
                message=f"{verb} {int(run.rows * fraction)} of {run.rows} rows",
            )
            process.setdefault("startAt", _now_iso())
        return dict(process)

    def _complete(self, process: dict[str, Any], run: _ImportRun) -> None:
        process["endAt"] = _now_iso()
        if run.behaviour.fail_with:
            process.update(
                status="ERROR",
                message=run.behaviour.fail_with,
                progress=1.0,
                results={"rows": run.rows, "errors": run.rows},
            )
            return
        skip_errors = process["options"].get("skipErrors") == "true"
        if run.bad_rows and not skip_errors:
            process.update(
                status="ERROR",
                progress=1.0,
                message=f"{run.bad_rows} rows could not be imported",
                results={"rows": run.rows, "errors": run.bad_rows},
            )
            return
        good = run.rows - run.bad_rows
        verb = "Validated" if run.validates_only else "Imported"
        process.update(
            status="DONE",
            progress=1.0,
            message=f"{verb} {good} of {run.rows} rows",
            results={
                "rows": run.rows,
                "created": min(run.created, good),
                "updated": max(0, good - min(run.created, good)),
                "errors": run.bad_rows,
            },
        )


def _listing_key(process: dict[str, Any]) -> tuple[str, str]:
    """findProcesses' order: by createAt, ties broken by id (ids are unique)."""
    return (process["createAt"], process["id"])


@dataclass
class _ReadCsv:
    size: int = 0
    rows: int = 0
    keys: set[str] = field(default_factory=set)
    #: (data row, column or None, message) of each bad row.
    errors: list[tuple[int, str | None, str]] = field(default_factory=list)
    #: (data row, key) of the first good rows.
    good_rows: list[tuple[int, str]] = field(default_factory=list)
    problem: str | None = None


def _read_csv(stream: Any, required: tuple[str, ...] = (), listed_good_rows: int = 0) -> _ReadCsv:
    """Size, data rows, bad rows (ragged, or empty in a required column) and first-column keys of an
    uploaded CSV, read as a stream. Rows are numbered from 1, the header not counted."""
    counter = _CountingReader(stream)
    text = io.TextIOWrapper(io.BufferedReader(counter), encoding="utf-8-sig", newline="")
    read = _ReadCsv()
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if not header:
            read.problem = "the uploaded file is empty"
        else:
            _read_rows(reader, header, required, listed_good_rows, read)
    except UnicodeDecodeError:
        read.problem = "the uploaded file is not UTF-8 text"
    except csv.Error as error:
        read.problem = f"the uploaded file is not a valid CSV: {error}"
    read.size = counter.size
    return read


def _read_rows(
    reader: Iterable[list[str]], header: list[str], required: tuple[str, ...], listed: int, read: _ReadCsv
) -> None:
    required_at = [(header.index(name), name) for name in required if name in header]
    for row in reader:
        if not row:
            continue
        read.rows += 1
        if len(row) != len(header):
            read.errors.append((read.rows, None, f"the row has {len(row)} fields, the header {len(header)}"))
            continue
        empty = next((name for index, name in required_at if not row[index].strip()), None)
        if empty is not None:
            read.errors.append((read.rows, empty, f"{empty} is required"))
            continue
        if row[0]:
            read.keys.add(row[0])
            if len(read.good_rows) < listed:
                read.good_rows.append((read.rows, row[0]))


class _CountingReader(io.RawIOBase):
    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        self.size += len(data)
        return len(data)


def _log_data_problem(entry: Any) -> str | None:
    """What is wrong with a LogData entry (required level, at and data; level in its enum), None if nothing."""
    if not isinstance(entry, dict):
        return "each log entry must be a LogData object"
    missing = [key for key in ("level", "at", "data") if key not in entry]
    if missing:
        return f"log entry misses required fields: {', '.join(missing)}"
    if entry["level"] not in LOG_LEVELS:
        return f"invalid log level {entry['level']!r}"
    if not isinstance(entry["at"], str) or not isinstance(entry["data"], dict):
        return "log entry's at must be a string and data an object"
    if "message" in entry and not isinstance(entry["message"], str):
        return "log entry's message must be a string"
    return None


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.get_data() or b"null")
    except ValueError:
        return None


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _unsupported_media_type(request: Request, content_type: str) -> str | None:
    """Why a request's body is of no media type its operation takes (None: it is, or it has no body). The spec's
    JSON bodies are `application/json` only: a body without a Content-Type is not taken as JSON."""
    operation = contract().find(request.method, request.path)
    if operation is None:
        return None
    has_body = bool(request.content_length) or "chunked" in (request.headers.get("Transfer-Encoding") or "").lower()
    accepted = list((operation.definition.get("requestBody") or {}).get("content") or {})
    if not has_body or not accepted:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in accepted:
        return None
    sent = f"Content-Type {media_type!r}" if media_type else "no Content-Type"
    return f"{operation.operation_id} takes a body of {', '.join(accepted)}; the request sent {sent}"


def _error(status: int, message: str) -> Response:
    return _json({"status": status, "message": message}, status=status)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--token", default=EmulatorConfig.token)
    parser.add_argument("--import-seconds", type=float, default=ImportBehaviour.duration_s)
    args = parser.parse_args()
    emulator = ChartHopEmulator(EmulatorConfig(token=args.token), port=args.port)
    emulator.import_behaviour.duration_s = args.import_seconds
    print(f"ChartHop emulator on {emulator.base_url} (org {emulator.config.org_id}, token {args.token})")
    emulator.serve_forever()


if __name__ == "__main__":
    main()
