"""ChartHop REST client: requests + urllib3 retries within a time budget, bearer auth, streaming CSV upload."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Protocol, Self, cast

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout

from people_sync import api_assumptions as assumed
from people_sync.errors import ChartHopRejected, ChartHopTokenRefused, ChartHopUnavailable
from people_sync.models import ImportOptions, Process, ProcessStatus

if TYPE_CHECKING:
    from requests_toolbelt import MultipartEncoder
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.charthop.com"
#: (connect, read) seconds; an import upload's read timeout covers ChartHop's answer after the body.
DEFAULT_TIMEOUT = (5.0, 60.0)
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: A Retry-After longer than this is cut short: a Lambda must not sleep out its timeout.
RETRY_AFTER_MAX = 30.0
#: Seconds one call may take with all its retries and backoffs: well under the status checker's 60 s
#: Lambda timeout, so a slow (not down) service fails the check instead of outliving the Lambda.
DEFAULT_CALL_BUDGET = 20.0
#: Seconds importDataCsv may take with its retries: an upload of a large file is slow, and the import
#: starter's Lambda has 900 s.
DEFAULT_IMPORT_BUDGET = 300.0
#: No attempt is started with less time than this left: it could not get an answer anyway.
MIN_ATTEMPT_SECONDS = 0.1
#: findProcesses is read this many pages deep at most (a warning is logged when there would be more).
MAX_PROCESS_PAGES = 50
PROCESS_PAGE_LIMIT = 100

#: Budgets are measured on this clock (tests move a fake one).
_clock: Callable[[], float] = time.monotonic
#: The monotonic time by which the call in progress must end (None: unbounded). Set by `time_budget`.
_DEADLINE: ContextVar[float | None] = ContextVar("people_sync_call_deadline", default=None)


@contextmanager
def time_budget(seconds: float | None) -> Iterator[float | None]:
    """Every client call inside must end within `seconds` (e.g. a Lambda's remaining time less a margin).

    Budgets nest and the tighter one wins, so a handler can cap what its clients allow themselves. Yields
    the deadline (monotonic seconds), None when neither this nor an outer budget bounds the time.
    """
    deadline = _deadline_after(seconds)
    token = _DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


def _deadline_after(seconds: float | None) -> float | None:
    """The deadline `seconds` from now, or the current one if that is sooner (None: no bound at all)."""
    outer = _DEADLINE.get()
    if seconds is None:
        return outer
    own = _clock() + max(0.0, seconds)
    return own if outer is None else min(outer, own)


def time_left() -> float | None:
    """Seconds left of the innermost time budget, None when there is none."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - _clock()


class CallBudgetSpent(requests.exceptions.Timeout):
    """The call's time budget ran out before a request could be sent (clients treat it as a timeout)."""


class ChartHopRetry(Retry):
    """urllib3's Retry, plus: a 429 is safe to repeat for any method, POST included; and no retry outlives
    the call's time budget.

    A 429 means ChartHop refused the request before acting on it, so even a non-idempotent call
    may be repeated (after Retry-After); a 5xx or a read timeout on a POST stays unrepeated.
    `budget_seconds` is the time a call through a `BudgetAdapter` may take in all; a retry whose wait
    would not leave MIN_ATTEMPT_SECONDS for its attempt is refused (urllib3 then hands back the last
    answer, or raises for a timeout or a reset), and every wait is cut to the time left.
    """

    def __init__(self, *args: Any, budget_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget_seconds = budget_seconds

    def new(self, **kw: Any) -> Self:
        kw.setdefault("budget_seconds", self.budget_seconds)
        return super().new(**kw)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == assumed.CHARTHOP_RATE_LIMIT_STATUS and self.total:
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def parse_retry_after(self, retry_after: str) -> float:
        return min(RETRY_AFTER_MAX, super().parse_retry_after(retry_after))

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: Any = None,
    ) -> Self:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        left = time_left()
        if left is not None and left - retry._wait(response) < MIN_ATTEMPT_SECONDS:
            reason = error or ResponseError(f"time budget spent ({max(0.0, left):.1f} s left)")
            raise MaxRetryError(cast("ConnectionPool", _pool), url or "", reason)
        return retry

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        wait = self._wait(response)
        left = time_left()
        if left is not None:
            wait = min(wait, max(0.0, left - MIN_ATTEMPT_SECONDS))
        if wait > 0:
            time.sleep(wait)

    def _wait(self, response: BaseHTTPResponse | None) -> float:
        """What the next sleep waits: Retry-After when honoured and given, else the backoff."""
        if self.respect_retry_after_header and response is not None:
            retry_after = self.get_retry_after(response)
            if retry_after:
                return retry_after
        return self.get_backoff_time()


def default_retry(
    total: int = 5,
    backoff_factor: float = 0.5,
    backoff_max: float = 20.0,
    budget_seconds: float | None = DEFAULT_CALL_BUDGET,
) -> ChartHopRetry:
    """Capped exponential backoff with jitter; honours Retry-After; idempotent methods only; every call
    through a `BudgetAdapter` ends within `budget_seconds`."""
    return ChartHopRetry(
        total=total,
        connect=total,
        read=total,
        status=total,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        backoff_jitter=backoff_factor,
        status_forcelist=RETRYABLE_STATUSES,
        allowed_methods=frozenset({"GET", "PATCH", "PUT", "DELETE", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
        budget_seconds=budget_seconds,
    )


class _DeadlineTimeout(Timeout):
    """A (connect, read) timeout that each attempt cuts to the time left before the deadline.

    urllib3 clones the timeout for every attempt, retries included, so the cut happens per attempt.
    """

    def __init__(self, connect: float | None, read: float | None, deadline: float) -> None:
        super().__init__(connect=connect, read=read)
        self.deadline = deadline

    def clone(self) -> Timeout:
        left = max(MIN_ATTEMPT_SECONDS / 10, self.deadline - _clock())
        connect, read = self._connect, self._read
        return Timeout(
            connect=min(connect, left) if isinstance(connect, int | float) else left,
            read=min(read, left) if isinstance(read, int | float) else left,
        )


class BudgetAdapter(HTTPAdapter):
    """An HTTPAdapter whose every request, retries and backoffs included, ends within a time budget.

    The budget is the retry policy's `budget_seconds` (a ChartHopRetry), tightened by any `time_budget`
    around the call; each attempt's timeouts are cut to the time left.
    """

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        with time_budget(getattr(self.max_retries, "budget_seconds", None)) as deadline:
            if deadline is None:
                return super().send(request, stream, timeout, verify, cert, proxies)
            if deadline - _clock() < MIN_ATTEMPT_SECONDS:
                raise CallBudgetSpent(f"no time left to send {request.method} {request.url}", request=request)
            connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
            bounded = _DeadlineTimeout(connect, read, deadline)
            return super().send(request, stream, cast(Any, bounded), verify, cert, proxies)


class _SizedStream:
    """Lets MultipartEncoder stream a body whose length is known (an S3 object) without reading it."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self._raw = raw
        self.len = size

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size) if size != -1 else self._raw.read()
        self.len -= len(chunk)
        return chunk


#: ChartHop's answer to a token it does not take (found: 401 "not authorized"); an expired token too (assumption).
TOKEN_REFUSED_STATUS = 401


class TokenSource(Protocol):
    """Where a client's bearer token comes from. `token()` is the token to send now (a source may refresh it
    before it expires); `refused(token)` is told that ChartHop answered 401 to `token` and returns a fresh
    token to try once more, or None when it has none (the 401 then stands)."""

    def token(self) -> str: ...

    def refused(self, token: str) -> str | None: ...


class StaticToken:
    """A token that never changes (a test's, or the operator tool's): a 401 stands."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def refused(self, token: str) -> str | None:
        return None


class ChartHopClient:
    """The ChartHop calls this app makes; every method raises ChartHopUnavailable or ChartHopRejected
    (ChartHopTokenRefused when ChartHop refuses the token and its source has no fresh one).

    The token comes from a TokenSource (a plain string is a StaticToken) and is read for every request, so a
    refreshed token is used at once without a new client (its connections stay warm). A 401 is answered once
    per call: the source is told, and a fresh token it hands back is tried once more; never a loop.

    Every call ends within a time budget, retries and backoffs included: `call_budget_seconds` (default:
    the retry policy's, 20 s), `import_budget_seconds` for importDataCsv, each tightened by any
    `time_budget` around the call (a handler's remaining time).
    """

    def __init__(
        self,
        token: str | TokenSource,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: Retry | None = None,
        session: requests.Session | None = None,
        call_budget_seconds: float | None = None,
        import_budget_seconds: float = DEFAULT_IMPORT_BUDGET,
        max_process_pages: int = MAX_PROCESS_PAGES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        retry = retry or default_retry()
        if call_budget_seconds is None:
            call_budget_seconds = getattr(retry, "budget_seconds", None) or DEFAULT_CALL_BUDGET
        if isinstance(retry, ChartHopRetry):
            retry = retry.new(budget_seconds=call_budget_seconds)
        self.retry = retry
        self.call_budget_seconds = call_budget_seconds
        self.import_budget_seconds = import_budget_seconds
        self.max_process_pages = max(1, max_process_pages)
        self.session = session or requests.Session()
        self.session.mount("https://", BudgetAdapter(max_retries=self.retry))
        self.session.mount("http://", BudgetAdapter(max_retries=self.retry))
        self.session.headers.update({"Accept": "application/json"})
        self.tokens: TokenSource = StaticToken(token) if isinstance(token, str) else token

    # --- processes -------------------------------------------------------------------------------

    def get_process(self, org_id: str, process_id: str) -> Process:
        data = self._json("GET", f"/v1/org/{org_id}/process/{process_id}", what="read the process")
        return Process.model_validate(data)

    def update_process(
        self,
        org_id: str,
        process_id: str,
        *,
        status: ProcessStatus | None = None,
        progress: float | None = None,
        message: str | None = None,
        results: dict[str, Any] | None = None,
        summary: str | None = None,
    ) -> None:
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status.value
        if progress is not None:
            body["progress"] = min(assumed.CHARTHOP_PROGRESS_MAX, max(assumed.CHARTHOP_PROGRESS_MIN, progress))
        if message is not None:
            body["message"] = message
        if results is not None:
            body["results"] = results
        if summary is not None:
            body["summary"] = summary
        self._send("PATCH", f"/v1/org/{org_id}/process/{process_id}", json=body, what="update the sync process")

    def create_process(
        self,
        org_id: str,
        *,
        label: str,
        process_type: str,
        run_user_id: str,
        options: dict[str, Any] | None = None,
        status: ProcessStatus = ProcessStatus.PENDING,
        message: str | None = None,
        app_id: str | None = None,
    ) -> Process:
        body: dict[str, Any] = {
            "orgId": org_id,
            "label": label,
            "type": process_type,
            "status": status.value,
            "runUserId": run_user_id,
            "options": options or {},
        }
        if message:
            body["message"] = message
        if app_id:
            body["appId"] = app_id
        path, what, started = f"/v1/org/{org_id}/process", "create a sync process", time.time()
        with time_budget(self.call_budget_seconds):
            try:
                return Process.model_validate(self._json("POST", path, json=body, what=what))
            except ChartHopUnavailable:
                # A POST is not repeated blindly: ChartHop may have created the process before failing.
                existing = self._process_created_since(org_id, body, started)
                if existing is not None:
                    return existing
                return Process.model_validate(self._json("POST", path, json=body, what=what))

    def _process_created_since(self, org_id: str, body: dict[str, Any], since: float) -> Process | None:
        for process in self.find_processes(org_id, statuses=[body["status"]], app_id=body.get("appId")):
            if (process.label, process.type, process.options) == (body["label"], body["type"], body["options"]) and (
                created_at(process) >= since - 5
            ):
                return process
        return None

    def find_processes(
        self,
        org_id: str,
        *,
        parent_process_id: str | None = None,
        statuses: list[str] | None = None,
        app_id: str | None = None,
        limit: int = PROCESS_PAGE_LIMIT,
    ) -> Iterator[Process]:
        """The processes that match, page after page (following `next`), as the caller reads them.

        A caller that stops early reads no further pages. All pages share one call budget; at most
        `max_process_pages` are read (a warning says so when more were left), and a cursor named a second time
        ends the listing (a warning says so) instead of reading the same pages again up to that cap.
        """
        params: dict[str, Any] = {assumed.CHARTHOP_PAGE_LIMIT_PARAM: limit}
        if parent_process_id:
            params["parentProcessId"] = parent_process_id
        if app_id:
            params["appId"] = app_id
        if statuses:
            params["statuses"] = ",".join(statuses)
        deadline = _deadline_after(self.call_budget_seconds)  # one budget for all pages, from the first
        followed: set[str] = set()
        for _ in range(self.max_process_pages):
            with time_budget(None if deadline is None else deadline - _clock()):
                data = self._json("GET", f"/v1/org/{org_id}/process", params=params, what="list processes")
            for item in data.get("data") or []:
                yield Process.model_validate(item)
            cursor = data.get(assumed.CHARTHOP_NEXT_FIELD)
            if not cursor:
                return
            if str(cursor) in followed:  # the same pages again (and again, up to the cap): stop here
                logger.warning(
                    "findProcesses named a cursor it had named before; the listing stops there",
                    extra={"cursor": str(cursor)[:100], "pages": len(followed) + 1},
                )
                return
            followed.add(str(cursor))
            params[assumed.CHARTHOP_PAGE_FROM_PARAM] = cursor
        logger.warning(
            "findProcesses has more pages than the client reads; the rest is not looked at",
            extra={"pages": self.max_process_pages, "filters": {k: v for k, v in params.items() if k != "from"}},
        )

    def get_process_events(self, org_id: str, process_id: str, *, max_bytes: int) -> list[dict[str, Any]]:
        """getProcessEvents: every event ChartHop lists for a process (not paged in the spec), read only up to
        `max_bytes` of answer; a larger answer raises ProcessEventsTooLarge instead of filling the memory."""
        path = f"/v1/org/{org_id}/process/{process_id}/events"
        what = "read the import's events"
        response = self._send("GET", path, what=what, stream=True)
        with response, _translate_transport_errors(what):
            body = bytearray()
            for chunk in response.iter_content(chunk_size=65536):
                body += chunk
                if len(body) > max_bytes:
                    raise ProcessEventsTooLarge(
                        f"ChartHop's event list of process {process_id} is larger than {max_bytes // 1_000_000} MB."
                    )
        try:
            data = json.loads(bytes(body))
        except ValueError as exc:
            raise ChartHopUnavailable(f"ChartHop's answer when trying to {what} was not JSON.") from exc
        events = data.get("events") if isinstance(data, dict) else None
        return [event for event in events or [] if isinstance(event, dict)]

    def append_process_log(self, org_id: str, process_id: str, entries: list[dict[str, Any]]) -> None:
        """appendToProcessLogFile: one POST of AppendLogRequest `{"log": [LogData]}` (callers keep batches small).

        A POST is repeated only after a 429 (refused before acting): ChartHop has no idempotency key for it."""
        self._send(
            "POST",
            f"/v1/org/{org_id}/process/{process_id}/log",
            json={"log": entries},
            what="append to the sync process's log",
        )

    # --- import ----------------------------------------------------------------------------------

    def import_csv(
        self,
        org_id: str,
        open_body: Callable[[], tuple[IO[bytes], int]],
        *,
        file_name: str,
        options: ImportOptions,
        parent_process_id: str | None,
        attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Process:
        """Streams a CSV to importDataCsv and returns the import Process.

        The POST starts a non-idempotent import, so it is never repeated blindly: a 429 (refused
        before acting) is repeated after Retry-After; after an ambiguous failure (5xx, timeout,
        reset) we first look for an import ChartHop already started under the same parent.
        `open_body` re-opens the source, because a streamed body cannot be sent twice. All of it ends
        within `import_budget_seconds` (or a tighter `time_budget`): no attempt or wait is started
        that the budget cannot hold, and each POST waits for its answer at most the time left.
        """
        from requests_toolbelt import MultipartEncoder  # only the import starter uploads: keep others' cold start lean

        path = f"/v1/org/{org_id}/import/csv/data"
        query = options.to_query(parent_process_id)
        started = time.time()
        last_error: ChartHopUnavailable | None = None
        refreshed = False  # a fresh token is asked for once per call, never in a loop
        with time_budget(self.import_budget_seconds):
            for attempt in range(attempts):
                if attempt and last_error is not None and parent_process_id:
                    in_flight = self._import_started_since(org_id, parent_process_id, started)
                    if in_flight is not None:
                        logger.warning(
                            "import POST failed ambiguously but ChartHop started it",
                            extra={"import_process_id": in_flight.id},
                        )
                        return in_flight
                left = time_left()
                if left is not None and left < MIN_ATTEMPT_SECONDS:
                    break
                token = self.tokens.token()
                response = self._post_file(path, query, open_body, file_name, MultipartEncoder, token)
                if response is not None and response.status_code == TOKEN_REFUSED_STATUS and not refreshed:
                    # refused before ChartHop acted on it (no import started): sent once more with a fresh token
                    refreshed = True
                    fresh = self._fresh_token(token)
                    if fresh is not None:
                        response = self._post_file(path, query, open_body, file_name, MultipartEncoder, fresh)
                if response is not None and response.ok:
                    return Process.model_validate(response.json())
                if response is not None and response.status_code not in RETRYABLE_STATUSES:
                    raise _rejected(response, "start the import")
                last_error = _unavailable(response, "start the import")
                if attempt + 1 == attempts:
                    break
                delay = _retry_after(response) if response is not None else None
                wait = min(RETRY_AFTER_MAX, delay if delay is not None else 0.5 * 2**attempt)
                left = time_left()
                if left is not None and left - wait < MIN_ATTEMPT_SECONDS:
                    logger.warning("import POST not retried: its time budget is spent", extra={"wait": wait})
                    break
                sleep(wait)
        if last_error is None:
            raise ChartHopUnavailable("ChartHop's time budget was spent before the import could be sent.")
        raise last_error

    def _post_file(
        self,
        path: str,
        query: dict[str, str],
        open_body: Callable[[], tuple[IO[bytes], int]],
        file_name: str,
        encoder_class: type[MultipartEncoder],
        token: str,
    ) -> requests.Response | None:
        """One POST of the file, opened afresh (a streamed body cannot be sent twice)."""
        raw, size = open_body()
        encoder = encoder_class(fields={"file": (file_name, _SizedStream(raw, size), "text/csv")})
        try:
            return self._post_once(path, query, encoder, token)
        finally:
            close = getattr(raw, "close", None)
            if close:
                close()

    def _post_once(
        self, path: str, query: dict[str, str], encoder: MultipartEncoder, token: str
    ) -> requests.Response | None:
        left = time_left()
        connect, read = self.timeout
        timeout = self.timeout if left is None else (min(connect, left), min(read, left))
        headers = {**self.session.headers, "Authorization": f"Bearer {token}", "Content-Type": encoder.content_type}
        try:
            return requests.post(  # a bare request: the session's retrying adapter must not replay it
                f"{self.base_url}{path}",
                params=query,
                data=encoder,
                headers=headers,
                timeout=timeout,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            logger.warning("import POST failed without an answer", extra={"error": type(exc).__name__})
            return None

    def _import_started_since(self, org_id: str, parent_process_id: str, since: float) -> Process | None:
        """A child of the parent created since the POST: the spec leaves `type` free text, so it is not read."""
        for process in self.find_processes(org_id, parent_process_id=parent_process_id):
            if created_at(process) >= since - 5:
                return process
        return None

    # --- plumbing --------------------------------------------------------------------------------

    def _json(self, method: str, path: str, *, what: str, **kwargs: Any) -> dict[str, Any]:
        response = self._send(method, path, what=what, **kwargs)
        data: dict[str, Any] = response.json()
        return data

    def _send(self, method: str, path: str, *, what: str, **kwargs: Any) -> requests.Response:
        # the client's budget holds even with a retry policy that carries none (a plain urllib3 Retry)
        with _translate_transport_errors(what), time_budget(self.call_budget_seconds):
            token = self.tokens.token()
            response = self._request(method, path, token, **kwargs)
            if response.status_code == TOKEN_REFUSED_STATUS:
                fresh = self._fresh_token(token)
                if fresh is not None:  # once: a fresh token that is refused too stands refused
                    response.close()
                    response = self._request(method, path, fresh, **kwargs)
        if response.ok:
            return response
        if response.status_code in RETRYABLE_STATUSES:
            raise _unavailable(response, what)
        raise _rejected(response, what)

    def _request(self, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}
        return self.session.request(method, f"{self.base_url}{path}", timeout=self.timeout, headers=headers, **kwargs)

    def _fresh_token(self, refused: str) -> str | None:
        """The token source's fresh token after ChartHop refused `refused`; None: none (or the same one)."""
        fresh = self.tokens.refused(refused)
        return fresh if fresh and fresh != refused else None


@contextmanager
def _translate_transport_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ChartHopUnavailable(
            f"ChartHop did not answer when trying to {what}; will retry.", detail=type(exc).__name__
        ) from exc


def _unavailable(response: requests.Response | None, what: str) -> ChartHopUnavailable:
    if response is None:
        return ChartHopUnavailable(f"ChartHop did not answer when trying to {what}.")
    return ChartHopUnavailable(
        f"ChartHop is unavailable (HTTP {response.status_code}) when trying to {what}.",
        detail=response.text[:500],
    )


def _rejected(response: requests.Response, what: str) -> ChartHopRejected:
    reason = _error_text(response)
    if response.status_code == TOKEN_REFUSED_STATUS:
        return ChartHopTokenRefused(
            f"ChartHop refused to {what} (HTTP 401: {reason}); check the API token stored in Secrets Manager "
            "(orgs set-token).",
            operation=what,
            detail=response.text[:500],
        )
    hints = {
        401: "check the API token stored in Secrets Manager",
        403: "the app needs Primary Editor permission in ChartHop",
        404: "the org or process does not exist",
    }
    hint = hints.get(response.status_code)
    text = f"ChartHop refused to {what} (HTTP {response.status_code}: {reason})"
    return ChartHopRejected(
        f"{text}; {hint}." if hint else f"{text}.", status=response.status_code, detail=response.text[:500]
    )


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no detail"
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or response.reason)
    return response.reason or "no detail"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def created_at(process: Process) -> float:
    """A process's createAt as epoch seconds; unknown or unreadable counts as "just now"."""
    if process.create_at:
        try:
            return datetime.fromisoformat(process.create_at.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


class ProcessEventsTooLarge(ChartHopRejected):
    """getProcessEvents answered more than the client reads: the details stay in ChartHop."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message, status=200)
