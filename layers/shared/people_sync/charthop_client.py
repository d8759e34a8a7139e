"""ChartHop REST client: requests + urllib3 retries, bearer auth, streaming CSV upload."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from people_sync import api_assumptions as assumed
from people_sync.errors import ChartHopRejected, ChartHopUnavailable
from people_sync.models import ImportOptions, Process, ProcessStatus

if TYPE_CHECKING:
    from requests_toolbelt import MultipartEncoder

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.charthop.com"
#: (connect, read) seconds; an import upload's read timeout covers ChartHop's answer after the body.
DEFAULT_TIMEOUT = (5.0, 60.0)
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: A Retry-After longer than this is cut short: a Lambda must not sleep out its timeout.
RETRY_AFTER_MAX = 30.0


class ChartHopRetry(Retry):
    """urllib3's Retry, plus: a 429 is safe to repeat for any method, POST included.

    A 429 means ChartHop refused the request before acting on it, so even a non-idempotent call
    may be repeated (after Retry-After); a 5xx or a read timeout on a POST stays unrepeated.
    """

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == assumed.CHARTHOP_RATE_LIMIT_STATUS and self.total:
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def parse_retry_after(self, retry_after: str) -> float:
        return min(RETRY_AFTER_MAX, super().parse_retry_after(retry_after))


def default_retry(total: int = 5, backoff_factor: float = 0.5, backoff_max: float = 20.0) -> Retry:
    """Capped exponential backoff with jitter; honours Retry-After; idempotent methods only."""
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
    )


class _SizedStream:
    """Lets MultipartEncoder stream a body whose length is known (an S3 object) without reading it."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self._raw = raw
        self.len = size

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size) if size != -1 else self._raw.read()
        self.len -= len(chunk)
        return chunk


class ChartHopClient:
    """The ChartHop calls this app makes; every method raises ChartHopUnavailable or ChartHopRejected."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: Retry | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or default_retry()
        self.session = session or requests.Session()
        self.session.mount("https://", HTTPAdapter(max_retries=self.retry))
        self.session.mount("http://", HTTPAdapter(max_retries=self.retry))
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

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
        try:
            return Process.model_validate(self._json("POST", path, json=body, what=what))
        except ChartHopUnavailable:
            # A POST is not repeated blindly: ChartHop may have created the process before failing.
            existing = self._process_created_since(org_id, body, started)
            if existing is not None:
                return existing
            return Process.model_validate(self._json("POST", path, json=body, what=what))

    def _process_created_since(self, org_id: str, body: dict[str, Any], since: float) -> Process | None:
        for process in self.find_processes(org_id, statuses=[body["status"]]):
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
        limit: int = 50,
    ) -> list[Process]:
        params: dict[str, Any] = {"limit": limit}
        if parent_process_id:
            params["parentProcessId"] = parent_process_id
        if app_id:
            params["appId"] = app_id
        if statuses:
            params["statuses"] = ",".join(statuses)
        data = self._json("GET", f"/v1/org/{org_id}/process", params=params, what="list processes")
        return [Process.model_validate(item) for item in data.get("data", [])]

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
        `open_body` re-opens the source, because a streamed body cannot be sent twice.
        """
        from requests_toolbelt import MultipartEncoder  # only the import starter uploads: keep others' cold start lean

        path = f"/v1/org/{org_id}/import/csv/data"
        query = options.to_query(parent_process_id)
        started = time.time()
        last_error: ChartHopUnavailable | None = None
        for attempt in range(attempts):
            if attempt and last_error is not None and parent_process_id:
                in_flight = self._import_started_since(org_id, parent_process_id, started)
                if in_flight is not None:
                    logger.warning(
                        "import POST failed ambiguously but ChartHop started it",
                        extra={"import_process_id": in_flight.id},
                    )
                    return in_flight
            raw, size = open_body()
            encoder = MultipartEncoder(fields={"file": (file_name, _SizedStream(raw, size), "text/csv")})
            try:
                response = self._post_once(path, query, encoder)
            finally:
                close = getattr(raw, "close", None)
                if close:
                    close()
            if response is not None and response.ok:
                return Process.model_validate(response.json())
            if response is not None and response.status_code not in RETRYABLE_STATUSES:
                raise _rejected(response, "start the import")
            last_error = _unavailable(response, "start the import")
            delay = _retry_after(response) if response is not None else None
            sleep(min(RETRY_AFTER_MAX, delay if delay is not None else 0.5 * 2**attempt))
        assert last_error is not None
        raise last_error

    def _post_once(self, path: str, query: dict[str, str], encoder: MultipartEncoder) -> requests.Response | None:
        try:
            return requests.post(  # a bare request: the session's retrying adapter must not replay it
                f"{self.base_url}{path}",
                params=query,
                data=encoder,
                headers={**self.session.headers, "Content-Type": encoder.content_type},
                timeout=self.timeout,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            logger.warning("import POST failed without an answer", extra={"error": type(exc).__name__})
            return None

    def _import_started_since(self, org_id: str, parent_process_id: str, since: float) -> Process | None:
        for process in self.find_processes(org_id, parent_process_id=parent_process_id):
            if process.type == assumed.CHARTHOP_IMPORT_PROCESS_TYPE and created_at(process) >= since - 5:
                return process
        return None

    # --- plumbing --------------------------------------------------------------------------------

    def _json(self, method: str, path: str, *, what: str, **kwargs: Any) -> dict[str, Any]:
        response = self._send(method, path, what=what, **kwargs)
        data: dict[str, Any] = response.json()
        return data

    def _send(self, method: str, path: str, *, what: str, **kwargs: Any) -> requests.Response:
        with _translate_transport_errors(what):
            response = self.session.request(method, f"{self.base_url}{path}", timeout=self.timeout, **kwargs)
        if response.ok:
            return response
        if response.status_code in RETRYABLE_STATUSES:
            raise _unavailable(response, what)
        raise _rejected(response, what)


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
