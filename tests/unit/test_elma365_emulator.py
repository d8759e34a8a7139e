"""The ELMA365 emulator must refuse what ELMA365 refuses and keep its rules (one import per app, files that
expire), or tests of the ELMA365 target against it prove nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from offline.elma365_emulator import (
    DEFAULT_DIRECTORY_ID,
    DIRECTORY_UPLOAD,
    IMPORT_STATUS,
    START_IMPORT,
    UPLOAD,
    Elma365Emulator,
    Elma365EmulatorConfig,
    Fault,
    ImportBehaviour,
)
from tests.fakes import FakeClock

REPO_ROOT = Path(__file__).resolve().parents[2]
CSV = b'Employee ID,Name,Notes\nE1,Ada,\nE2,Grace,"two\nlines"\nE3,Alan,\n'


@pytest.fixture
def elma(clock: FakeClock) -> Iterator[Elma365Emulator]:
    config = Elma365EmulatorConfig(apps=(("hr", "employees"), ("hr", "contracts")))
    with Elma365Emulator(config, clock=clock) as running:
        yield running


def _auth(elma: Elma365Emulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {elma.config.token}"}


def _upload(elma: Elma365Emulator, body: bytes = CSV, file_hash: str | None = None) -> tuple[str, requests.Response]:
    file_hash = file_hash or str(uuid.uuid4())
    response = requests.post(
        f"{elma.base_url}/pub/v1/disk/file/upload",
        params={"hash": file_hash},
        data=body,
        headers={**_auth(elma), "Content-Type": "text/csv"},
        timeout=5,
    )
    return file_hash, response


def _upload_to_directory(
    elma: Elma365Emulator,
    body: bytes = CSV,
    *,
    directory: str = DEFAULT_DIRECTORY_ID,
    params: dict[str, str] | None = None,
) -> tuple[str, requests.Response]:
    file_hash = str(uuid.uuid4())
    response = requests.post(
        f"{elma.base_url}/pub/v1/disk/directory/{directory}/upload",
        params=params if params is not None else {"hash": file_hash, "name": "roster.csv"},
        data=body,
        headers={**_auth(elma), "Content-Type": "text/csv"},
        timeout=5,
    )
    return file_hash, response


def _import_body(file_hash: str) -> dict[str, Any]:
    return {"hash": file_hash, "format": "csv", "withEventHandlers": False}


def _start(elma: Elma365Emulator, body: Any, app: str = "hr/employees") -> requests.Response:
    return requests.post(f"{elma.base_url}/pub/v1/app/{app}/import", json=body, headers=_auth(elma), timeout=5)


def _status(elma: Elma365Emulator, import_id: str, app: str = "hr/employees") -> requests.Response:
    url = f"{elma.base_url}/pub/v1/app/{app}/import/{import_id}"
    return requests.post(url, json={}, headers=_auth(elma), timeout=5)


def _started(elma: Elma365Emulator, body: bytes = CSV, app: str = "hr/employees") -> dict[str, Any]:
    file_hash, uploaded = _upload(elma, body)
    assert uploaded.status_code == 200
    response = _start(elma, {"hash": file_hash, "format": "csv", "withEventHandlers": False}, app)
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


def test_missing_token_is_401_and_wrong_token_403(elma: Elma365Emulator) -> None:
    url = f"{elma.base_url}/pub/v1/app/hr/employees/import"
    body = {"hash": str(uuid.uuid4()), "format": "csv", "withEventHandlers": False}
    assert requests.post(url, json=body, timeout=5).status_code == 401
    assert requests.post(url, json=body, headers={"Authorization": "Token x"}, timeout=5).status_code == 401
    wrong = requests.post(url, json=body, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 403
    assert wrong.json()["success"] is False


def test_unknown_paths_apps_and_imports_are_404(elma: Elma365Emulator) -> None:
    assert requests.post(f"{elma.base_url}/pub/v1/nothing", headers=_auth(elma), timeout=5).status_code == 404
    body = {"hash": str(uuid.uuid4()), "format": "csv", "withEventHandlers": False}
    assert _start(elma, body, app="hr/unknown").status_code == 404
    assert _status(elma, str(uuid.uuid4())).status_code == 404
    answer = _started(elma)
    assert _status(elma, answer["id"], app="hr/contracts").status_code == 404  # an import belongs to its app


def test_upload_needs_a_hash_and_does_not_return_it(elma: Elma365Emulator) -> None:
    response = requests.post(f"{elma.base_url}/pub/v1/disk/file/upload", data=CSV, headers=_auth(elma), timeout=5)
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "query parameter hash is required"}
    file_hash, response = _upload(elma)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert file_hash not in response.text
    assert _upload(elma, file_hash=file_hash)[1].status_code == 400  # a hash names one file
    assert _upload(elma, file_hash="not-a-uuid")[1].status_code == 400
    assert [(upload.hash, upload.rows) for upload in elma.uploads] == [(file_hash, 3)]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"format": "csv", "withEventHandlers": False}, "hash is required"),
        ({"hash": "HASH", "format": "xls", "withEventHandlers": False}, "unknown format"),
        ({"hash": "HASH", "withEventHandlers": False}, "unknown format"),
        ({"hash": "HASH", "format": "csv"}, "withEventHandlers"),
        ({"hash": "HASH", "format": "csv", "withEventHandlers": "no"}, "withEventHandlers"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_bad_start_bodies_are_400_with_a_reason(elma: Elma365Emulator, body: Any, reason: str) -> None:
    file_hash, _ = _upload(elma)
    if isinstance(body, dict) and body.get("hash") == "HASH":
        body["hash"] = file_hash
    response = _start(elma, body)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert reason in response.json()["error"]
    assert elma.imports == []


def test_unknown_or_expired_hash_cannot_be_imported(elma: Elma365Emulator, clock: FakeClock) -> None:
    unknown = _start(elma, {"hash": str(uuid.uuid4()), "format": "csv", "withEventHandlers": False})
    assert unknown.status_code == 400
    assert "not found or expired" in unknown.json()["error"]
    file_hash, _ = _upload(elma)
    clock.advance(60 * 60)
    expired = _start(elma, {"hash": file_hash, "format": "csv", "withEventHandlers": False})
    assert expired.status_code == 400
    fresh_hash, _ = _upload(elma)
    clock.advance(59 * 60)
    assert _start(elma, {"hash": fresh_hash, "format": "csv", "withEventHandlers": False}).status_code == 200


def test_import_completes_on_the_emulator_clock(elma: Elma365Emulator, clock: FakeClock) -> None:
    elma.import_behaviour = ImportBehaviour(duration_s=10)
    answer = _started(elma, b"id\n" + b"".join(b"E%d\n" % i for i in range(100)))
    assert answer["status"] == "in_progress"
    assert answer["total"] == 100
    clock.advance(4)
    running = _status(elma, answer["id"]).json()
    assert (running["status"], running["imported"]) == ("in_progress", 40)
    assert elma.imported_rows() == 0
    clock.advance(6)
    done = _status(elma, answer["id"]).json()
    assert (done["success"], done["status"], done["imported"]) == (True, "done", 100)
    assert elma.imported_rows() == 100
    assert elma.imported_rows("hr", "contracts") == 0


def test_import_completes_after_a_number_of_polls(elma: Elma365Emulator, clock: FakeClock) -> None:
    elma.import_behaviour = ImportBehaviour(polls=3)
    answer = _started(elma)
    states = []
    for _ in range(3):
        states.append(_status(elma, answer["id"]).json()["status"])
        clock.advance(1.0)
    assert states == ["in_progress", "in_progress", "done"]
    assert elma.import_(answer["id"]).imported == 3


def test_a_status_poll_sooner_than_a_second_after_the_last_is_refused_and_does_not_count(
    elma: Elma365Emulator, clock: FakeClock
) -> None:
    """ELMA365: "poll it no more than once a second". A poll 0.4 s after the last answered one gets the
    rate-limit answer with Retry-After and leaves the import as it was; one a second after the last
    *answered* poll (the refused one does not restart the second) is answered."""
    elma.import_behaviour = ImportBehaviour(polls=2)
    answer = _started(elma)
    assert _status(elma, answer["id"]).json()["status"] == "in_progress"
    clock.advance(0.4)
    refused = _status(elma, answer["id"])
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["success"] is False
    clock.advance(0.6)
    assert _status(elma, answer["id"]).json()["status"] == "done"
    run = elma.import_(answer["id"])
    assert (run.polls, run.polls_refused) == (2, 1)


def test_the_poll_limit_is_per_import(elma: Elma365Emulator) -> None:
    first = _started(elma)
    second = _started(elma, app="hr/contracts")
    assert _status(elma, first["id"]).status_code == 200
    assert _status(elma, second["id"], app="hr/contracts").status_code == 200
    assert _status(elma, first["id"]).status_code == 429


def test_failing_import_ends_in_error_with_the_reason(elma: Elma365Emulator) -> None:
    elma.import_behaviour = ImportBehaviour(polls=1, fail_with="Field 'Email' is required")
    answer = _started(elma)
    failed = _status(elma, answer["id"]).json()
    assert failed["status"] == "error"
    assert failed["error"] == "Field 'Email' is required"
    assert elma.imported_rows() == 0


def test_one_import_per_app_a_second_start_is_blocked(elma: Elma365Emulator, clock: FakeClock) -> None:
    elma.import_behaviour = ImportBehaviour(duration_s=5)
    first = _started(elma)
    second = _started(elma)
    assert second == {"success": True, "status": "blocked"}
    assert _started(elma, app="hr/contracts")["status"] == "in_progress"  # another app is free
    clock.advance(5)
    third = _started(elma)
    assert third["status"] == "in_progress"
    assert third["id"] != first["id"]
    assert [start.outcome for start in elma.starts] == ["started", "blocked", "started", "started"]


def test_forced_blocks_and_foreign_imports_keep_the_app_busy(elma: Elma365Emulator, clock: FakeClock) -> None:
    elma.import_behaviour = ImportBehaviour(duration_s=1)
    elma.block_next_starts(2)
    assert _started(elma)["status"] == "blocked"
    assert _started(elma)["status"] == "blocked"
    assert _started(elma)["status"] == "in_progress"
    clock.advance(1)
    elma.start_foreign_import("hr", "employees", behaviour=ImportBehaviour(duration_s=30))
    assert _started(elma)["status"] == "blocked"
    clock.advance(30)
    assert _started(elma)["status"] == "in_progress"
    assert len(elma.own_imports()) == 2


def test_queued_behaviours_apply_to_the_next_imports_in_order(elma: Elma365Emulator) -> None:
    elma.queue_behaviours(ImportBehaviour(polls=1), ImportBehaviour(polls=1, fail_with="bad row 7"))
    first = _started(elma)
    assert _status(elma, first["id"]).json()["status"] == "done"
    second = _started(elma)
    assert _status(elma, second["id"]).json()["error"] == "bad row 7"


def test_rows_are_counted_as_csv_records_and_fast(elma: Elma365Emulator) -> None:
    body = b"Employee ID,Name,Email\n" + b"".join(b"E%d,Name %d,e%d@example.com\n" % (i, i, i) for i in range(50_000))
    started = time.perf_counter()
    _, response = _upload(elma, body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elma.uploads[-1].rows == 50_000
    assert elapsed < 1.0
    _upload(elma, CSV)
    assert elma.uploads[-1].rows == 3  # a quoted field with a newline is one record


def test_a_file_that_is_not_csv_cannot_be_imported_as_csv(elma: Elma365Emulator) -> None:
    file_hash, _ = _upload(elma, b"PK\x03\x04\xff\xfe binary")
    response = _start(elma, {"hash": file_hash, "format": "csv", "withEventHandlers": False})
    assert response.status_code == 400
    assert "UTF-8" in response.json()["error"]


def test_calls_are_recorded_with_the_clock(elma: Elma365Emulator, clock: FakeClock) -> None:
    answer = _started(elma)
    clock.advance(1.5)
    _status(elma, answer["id"])
    assert [(call.operation, call.status, call.at) for call in elma.calls] == [
        (UPLOAD, 200, 1000.0),
        (START_IMPORT, 200, 1000.0),
        (IMPORT_STATUS, 200, 1001.5),
    ]


def test_injected_faults_answer_once_each(elma: Elma365Emulator) -> None:
    elma.inject(START_IMPORT, Fault.http(429, retry_after=7), Fault.http(503))
    file_hash, _ = _upload(elma)
    body = {"hash": file_hash, "format": "csv", "withEventHandlers": False}
    limited = _start(elma, body)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert _start(elma, body).status_code == 503
    assert _start(elma, body).status_code == 200
    assert elma.pending_faults(START_IMPORT) == 0


def test_connection_reset_and_slow_answers(elma: Elma365Emulator) -> None:
    elma.inject(UPLOAD, Fault.connection_reset())
    with pytest.raises(requests.ConnectionError):
        _upload(elma)
    assert elma.uploads == []
    elma.inject(UPLOAD, Fault.slow(0.5))
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{elma.base_url}/pub/v1/disk/file/upload",
            params={"hash": str(uuid.uuid4())},
            data=CSV,
            headers=_auth(elma),
            timeout=(2, 0.2),
        )
    assert len(elma.uploads) == 1  # the slow upload was done; only the answer came late


def test_runs_alone_from_the_command_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)])}
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "offline.elma365_emulator", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                response = requests.post(f"http://127.0.0.1:{port}/pub/v1/app/hr/employees/import", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.05)
        assert response.status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_directory_upload_needs_a_known_directory_a_hash_and_a_name(elma: Elma365Emulator) -> None:
    assert _upload_to_directory(elma, directory="no-such-directory")[1].status_code == 404
    assert _upload_to_directory(elma, params={"name": "roster.csv"})[1].json()["error"] == (
        "query parameter hash is required"
    )
    assert _upload_to_directory(elma, params={"hash": str(uuid.uuid4())})[1].status_code == 400
    file_hash, response = _upload_to_directory(elma)
    assert (response.status_code, response.json()) == (200, {"success": True})  # the hash is not returned
    assert [(u.hash, u.rows, u.directory, u.name) for u in elma.uploads] == [
        (file_hash, 3, DEFAULT_DIRECTORY_ID, "roster.csv")
    ]
    assert [call.status for call in elma.calls_of(DIRECTORY_UPLOAD)] == [404, 400, 400, 200]


def test_a_directory_file_does_not_expire(elma: Elma365Emulator, clock: FakeClock) -> None:
    file_hash, _ = _upload_to_directory(elma)
    clock.advance(6 * 60 * 60)  # a temporary file would be gone after 60 minutes
    response = _start(elma, _import_body(file_hash))
    assert response.status_code == 200
    assert response.json()["total"] == 3


def test_temporary_file_row_limit_is_enforced_only_when_configured(clock: FakeClock) -> None:
    big = b"id\n" + b"".join(b"E%d\n" % i for i in range(11))
    with Elma365Emulator(Elma365EmulatorConfig(), clock=clock) as unlimited:
        file_hash, _ = _upload(unlimited, big)
        assert _start(unlimited, _import_body(file_hash)).status_code == 200  # the seed only recommends
    with Elma365Emulator(Elma365EmulatorConfig(temp_file_max_rows=10), clock=clock) as limited:
        file_hash, _ = _upload(limited, big)
        refused = _start(limited, _import_body(file_hash))
        assert refused.status_code == 400
        assert "upload it to a directory" in refused.json()["error"]
        small_hash, _ = _upload(limited, big[: big.index(b"E10")])
        assert _start(limited, _import_body(small_hash)).status_code == 200
        directory_hash, _ = _upload_to_directory(limited, big)
        clock.advance(5)  # the first import has ended: the app is free again
        assert _start(limited, _import_body(directory_hash)).status_code == 200
        assert [start.outcome for start in limited.starts] == ["refused", "started", "started"]


@pytest.mark.parametrize("http_status", [409, 423, 400, 503])
def test_blocked_can_come_with_a_non_2xx_status(elma: Elma365Emulator, clock: FakeClock, http_status: int) -> None:
    elma.import_behaviour = ImportBehaviour(polls=5)
    elma.blocked_http_status = http_status
    answer = _started(elma)
    blocked = _start(elma, _import_body(_upload(elma)[0]))
    assert blocked.status_code == http_status
    assert blocked.json()["status"] == "blocked"
    elma.block_next_status_checks(1)
    status = _status(elma, answer["id"])
    assert (status.status_code, status.json()["status"], status.json()["id"]) == (http_status, "blocked", answer["id"])
    clock.advance(1.0)
    assert _status(elma, answer["id"]).json()["status"] == "in_progress"
    assert elma.import_(answer["id"]).polls == 1  # the blocked answer did not advance the import
