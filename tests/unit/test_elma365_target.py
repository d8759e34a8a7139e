"""The ELMA365 target against the emulator: chunks, waiting for a busy app, slots, failures and retries.

Time is the emulator's and the target's shared fake clock; each check of the status loop moves it one
second (ELMA365 wants no more than one status request a second). Between checks the job goes through
JSON and a fresh target, as it does in the state machine's data between two Lambda invocations.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from typing import IO, Any

import pytest

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
from people_sync.charthop_client import default_retry
from people_sync.csv_checks import CheckedUpload, CsvRejected, CsvRules
from people_sync.errors import TargetRejected, TargetUnavailable
from people_sync.models import ImportJob, ImportStatus, StagedFile
from people_sync.slots import InMemorySlots
from people_sync.targets.base import ImportTarget
from people_sync.targets.elma365 import Elma365Client, Elma365Target
from tests.fakes import FakeClock

STAGED = StagedFile(bucket="staging", key="acme/roster.csv", org_id="acme")
SMALL = b'Employee ID,Name,Notes\nE1,Ada,\nE2,Grace,"two\nlines"\nE3,Alan,\n'


def slot(elma: Elma365Emulator, code: str = "employees") -> str:
    """The app's import slot: per ELMA365 instance (its host) and app, never shared with a look-alike app
    (hr/employees) of another company's ELMA365."""
    return f"slot#elma365#{elma.base_url.removeprefix('http://')}/hr/{code}"


class Source:
    """A re-openable staged file that counts how often it was opened."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.opened = 0

    def __call__(self) -> tuple[IO[bytes], int]:
        self.opened += 1
        return io.BytesIO(self.body), len(self.body)


class CheckedSource(Source):
    """The staged file as the sync service opens it: read through the pre-flight CSV checks."""

    def __call__(self) -> tuple[IO[bytes], int]:
        self.opened += 1
        stream = CheckedUpload(io.BytesIO(self.body), len(self.body), STAGED.name, CsvRules())
        return stream, len(self.body)  # type: ignore[return-value]


def roster(rows: int) -> bytes:
    return b"id,name\n" + b"".join(b"E%d,N%d\n" % (i, i) for i in range(rows))


@pytest.fixture
def clock() -> FakeClock:
    """Epoch seconds, as slot expiry times are (the shared fixture starts at 1000.0)."""
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def elma(clock: FakeClock) -> Iterator[Elma365Emulator]:
    with Elma365Emulator(Elma365EmulatorConfig(), clock=clock) as running:
        running.import_behaviour = ImportBehaviour(polls=2)
        yield running


@pytest.fixture
def slots(clock: FakeClock) -> InMemorySlots:
    return InMemorySlots(clock)


def make_client(
    elma: Elma365Emulator, token: str | None = None, code: str = "employees", read_timeout: float = 1.0
) -> Elma365Client:
    return Elma365Client(
        token or elma.config.token,
        base_url=elma.base_url,
        namespace="hr",
        code=code,
        timeout=(2.0, read_timeout),
        retry=default_retry(total=3, backoff_factor=0.01),
        sleep=lambda _: None,
    )


def make_target(
    elma: Elma365Emulator,
    slots: InMemorySlots,
    clock: FakeClock,
    *,
    chunk_rows: int = 50_000,
    directory_id: str | None = None,
    read_timeout: float = 1.0,
) -> Elma365Target:
    client = make_client(elma, read_timeout=read_timeout)
    return Elma365Target(client, slots=slots, chunk_rows=chunk_rows, directory_id=directory_id, clock=clock)


def check(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock, job: ImportJob, source: Source, **kw: Any
) -> tuple[ImportStatus, ImportJob]:
    """One check of the status loop, one second after the last, by a fresh target on a JSON-carried job."""
    clock.advance(1)
    carried = ImportJob.model_validate(json.loads(json.dumps(job.to_json_dict())))
    return make_target(elma, slots, clock, **kw).import_status(carried, source)


def run_to_end(
    elma: Elma365Emulator,
    slots: InMemorySlots,
    clock: FakeClock,
    job: ImportJob,
    source: Source,
    *,
    limit: int = 100,
    **kw: Any,
) -> tuple[list[ImportStatus], ImportJob]:
    statuses: list[ImportStatus] = []
    for _ in range(limit):
        status, job = check(elma, slots, clock, job, source, **kw)
        statuses.append(status)
        if status.finished:
            return statuses, job
    raise AssertionError(f"the import did not finish in {limit} checks: {statuses[-1]}")


def test_is_an_import_target(elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock) -> None:
    target: ImportTarget = make_target(elma, slots, clock)
    assert (target.name, target.display_name, target.calls_back, target.min_check_interval_seconds) == (
        "elma365",
        "ELMA365",
        False,
        1,
    )


def test_small_file_is_imported(elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock) -> None:
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    assert job.import_id == elma.imports[0].id
    assert job.detail["hash"] == elma.uploads[0].hash  # ELMA365 does not return the hash: we keep ours
    assert elma.uploads[0].rows == 3
    assert slots.holder(slot(elma)) == "sync-1"
    statuses, job = run_to_end(elma, slots, clock, job, source)
    assert [status.state for status in statuses] == ["running", "done"]
    assert statuses[-1].progress == 1.0
    assert statuses[-1].results == {"imported": 3, "rows": 3, "chunks": 1, "chunksDone": 1}
    assert statuses[-1].message == "ELMA365 imported 3 of 3 rows into hr.employees"
    assert elma.imported_rows() == 3
    assert slots.holder(slot(elma)) is None
    assert source.opened == 1  # one chunk: the file was read once


def test_abandoning_an_import_frees_the_slot_for_the_next_sync(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    target = make_target(elma, slots, clock)
    job = target.start_import(STAGED, Source(SMALL), sync_id="sync-1")
    assert slots.holder(slot(elma)) == "sync-1"
    target.abandon(job)  # the loop timed out on it
    assert slots.holder(slot(elma)) is None
    assert slots.acquire(slot(elma), "sync-2", 60)


def test_import_error_is_reported_with_elma365s_reason(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.import_behaviour = ImportBehaviour(polls=1, fail_with="Field 'Email' is required")
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    statuses, _ = run_to_end(elma, slots, clock, job, source)
    assert statuses[-1].state == "failed"
    assert statuses[-1].message == "ELMA365 could not import the file: Field 'Email' is required."
    assert statuses[-1].results["error"] == "Field 'Email' is required"
    assert slots.holder(slot(elma)) is None


def test_blocked_start_waits_then_imports(elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock) -> None:
    elma.block_next_starts(2)
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    assert job.import_id == ""
    assert (job.detail["waiting"], job.detail["waitingFor"]) == (True, "blocked")
    status, job = check(elma, slots, clock, job, source)
    assert status.state == "pending"
    assert status.message == "ELMA365 is busy with another import into hr.employees; waiting to start the file"
    statuses, job = run_to_end(elma, slots, clock, job, source)
    assert [status.state for status in statuses] == ["running", "running", "done"]
    assert [start.outcome for start in elma.starts] == ["blocked", "blocked", "started"]
    assert len(elma.uploads) == 1  # the upload was still fresh: the same hash was started
    assert elma.imports[0].hash == elma.uploads[0].hash
    assert elma.imported_rows() == 3


def test_a_foreign_import_keeps_the_job_waiting_until_it_ends(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.start_foreign_import("hr", "employees", rows=5, behaviour=ImportBehaviour(duration_s=10))
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    statuses, _ = run_to_end(elma, slots, clock, job, source)
    outcomes = [start.outcome for start in elma.starts]
    assert outcomes == ["blocked"] * 10 + ["started"]
    assert statuses[-1].state == "done"
    assert elma.imported_rows() == 5 + 3


def test_120000_rows_are_imported_in_3_chunks_one_after_another(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.import_behaviour = ImportBehaviour(polls=3)
    source = Source(roster(120_000))
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    assert (job.detail["rows"], job.detail["chunks"]) == (120_000, 3)
    statuses, job = run_to_end(elma, slots, clock, job, source)
    imports = elma.own_imports()
    assert [run.rows for run in imports] == [50_000, 50_000, 20_000]
    assert [upload.rows for upload in elma.uploads] == [50_000, 50_000, 20_000]
    assert all(run.status == "done" for run in imports)
    for earlier, later in itertools.pairwise(imports):
        assert earlier.finished_at is not None
        assert later.started_at >= earlier.finished_at  # never two at once
    assert [start.outcome for start in elma.starts] == ["started"] * 3
    for upload, start in zip(elma.uploads, elma.starts, strict=True):
        assert upload.hash == start.hash
        assert start.at - upload.at < 60  # each chunk was uploaded right before its import started
    progress = [status.progress for status in statuses]
    assert all(a < b for a, b in itertools.pairwise(progress)), progress
    assert statuses[-1].state == "done"
    assert statuses[-1].results == {"imported": 120_000, "rows": 120_000, "chunks": 3, "chunksDone": 3}
    assert statuses[-1].message == "ELMA365 imported 120,000 of 120,000 rows into hr.employees in 3 chunks"
    assert any(status.message and "chunk 2 of 3" in status.message for status in statuses)
    assert elma.imported_rows() == 120_000
    polls = [call.at for call in elma.calls_of(IMPORT_STATUS)]
    assert all(b - a >= 1 for a, b in itertools.pairwise(polls))
    assert slots.holder(slot(elma)) is None


def test_chunks_keep_multiline_records_whole(elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock) -> None:
    body = b'id,notes\r\nE1,"a\nb"\r\nE2,x\r\n\r\nE3,"c\r\nd, e"\r\nE4,y\r\nE5,"f\n\ng"\r\nE6,z\r\nE7,"last"'
    source = Source(body)
    job = make_target(elma, slots, clock, chunk_rows=3).start_import(STAGED, source, sync_id="sync-1")
    assert (job.detail["rows"], job.detail["chunks"]) == (7, 3)
    statuses, _ = run_to_end(elma, slots, clock, job, source, chunk_rows=3)
    assert [upload.rows for upload in elma.uploads] == [3, 3, 1]
    assert statuses[-1].results["imported"] == 7


def test_failure_in_a_later_chunk_says_earlier_rows_stay(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.queue_behaviours(ImportBehaviour(polls=1), ImportBehaviour(polls=1, fail_with="Duplicate id E3"))
    source = Source(roster(5))
    job = make_target(elma, slots, clock, chunk_rows=2).start_import(STAGED, source, sync_id="sync-1")
    statuses, job = run_to_end(elma, slots, clock, job, source, chunk_rows=2)
    assert statuses[-1].state == "failed"
    assert statuses[-1].message == (
        "ELMA365 could not import chunk 2 of 3: Duplicate id E3. The 2 rows of chunk 1 stay imported."
    )
    assert statuses[-1].results["imported"] == 2
    assert statuses[-1].results["failedChunk"] == 2
    assert len(elma.own_imports()) == 2  # chunk 3 was never started
    assert slots.holder(slot(elma)) is None


def test_waiting_chunk_is_uploaded_again_before_its_upload_expires(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.block_next_starts(2)
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    first_hash = job.detail["hash"]
    clock.advance(10 * 60)
    _, job = check(elma, slots, clock, job, source)  # still blocked; the upload is only 10 minutes old
    assert job.detail["hash"] == first_hash
    assert len(elma.uploads) == 1
    clock.advance(35 * 60)
    _, job = check(elma, slots, clock, job, source)  # 45 minutes: a new upload under a new hash, then started
    assert job.detail["hash"] != first_hash
    assert [upload.hash for upload in elma.uploads] == [first_hash, job.detail["hash"]]
    assert elma.imports[0].hash == job.detail["hash"]
    statuses, _ = run_to_end(elma, slots, clock, job, source)
    assert statuses[-1].state == "done"


def test_slot_held_by_another_sync_keeps_the_job_waiting(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    assert slots.acquire(slot(elma), "other-sync", 600)
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    assert (job.detail["waiting"], job.detail["waitingFor"]) == (True, "slot")
    status, job = check(elma, slots, clock, job, source)
    assert status.state == "pending"
    assert status.message == "Another sync is importing into ELMA365 hr.employees; waiting to start the file"
    assert elma.uploads == []  # nothing is uploaded while the slot is taken (it would only expire)
    assert elma.starts == []
    slots.release(slot(elma), "other-sync")
    statuses, _ = run_to_end(elma, slots, clock, job, source)
    assert statuses[-1].state == "done"
    assert len(elma.uploads) == 1


def test_two_syncs_never_interleave_their_chunks(elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock) -> None:
    elma.import_behaviour = ImportBehaviour(polls=1)
    source_a, source_b = Source(roster(4)), Source(roster(2))
    job_a = make_target(elma, slots, clock, chunk_rows=2).start_import(STAGED, source_a, sync_id="sync-a")
    job_b = make_target(elma, slots, clock, chunk_rows=2).start_import(STAGED, source_b, sync_id="sync-b")
    assert job_b.detail["waitingFor"] == "slot"
    status_a, job_a = check(elma, slots, clock, job_a, source_a, chunk_rows=2)  # chunk 1 done, chunk 2 starts
    assert status_a.state == "running"
    status_b, job_b = check(elma, slots, clock, job_b, source_b, chunk_rows=2)  # ELMA365 is free, the slot is not
    assert status_b.state == "pending"
    statuses_a, _ = run_to_end(elma, slots, clock, job_a, source_a, chunk_rows=2)
    statuses_b, _ = run_to_end(elma, slots, clock, job_b, source_b, chunk_rows=2)
    assert (statuses_a[-1].state, statuses_b[-1].state) == ("done", "done")
    assert [upload.rows for upload in elma.uploads] == [2, 2, 2]
    assert [start.outcome for start in elma.starts] == ["started"] * 3


def test_rate_limited_calls_are_retried(elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock) -> None:
    elma.inject(UPLOAD, Fault.http(429))
    elma.inject(START_IMPORT, Fault.http(429, retry_after=0))
    elma.inject(IMPORT_STATUS, Fault.http(429, retry_after=0))
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    statuses, _ = run_to_end(elma, slots, clock, job, source)
    assert statuses[-1].state == "done"
    assert [call.status for call in elma.calls_of(UPLOAD)] == [429, 200]
    assert [call.status for call in elma.calls_of(START_IMPORT)] == [429, 200]
    assert [call.status for call in elma.calls_of(IMPORT_STATUS)][:2] == [429, 200]
    assert elma.uploads[0].rows == 3  # the repeated upload sent the whole body again


def test_5xx_on_the_start_is_not_repeated(elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock) -> None:
    elma.inject(START_IMPORT, Fault.http(503))
    with pytest.raises(TargetUnavailable):
        make_target(elma, slots, clock).start_import(STAGED, Source(SMALL), sync_id="sync-1")
    assert [call.status for call in elma.calls_of(START_IMPORT)] == [503]
    assert slots.holder(slot(elma)) is None


def test_read_timeout_on_the_start_is_not_repeated(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.inject(START_IMPORT, Fault.slow(0.3))
    target = Elma365Target(make_client(elma, read_timeout=0.15), slots=slots, clock=clock)
    with pytest.raises(TargetUnavailable):
        target.start_import(STAGED, Source(SMALL), sync_id="sync-1")
    assert len(elma.calls_of(START_IMPORT)) == 1
    assert len(elma.imports) == 1  # ELMA365 did start it: a blind repeat would have imported twice


def test_5xx_on_a_status_check_is_retried(elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock) -> None:
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    elma.inject(IMPORT_STATUS, Fault.http(503), Fault.http(502))
    status, _ = check(elma, slots, clock, job, source)
    assert status.state == "running"
    assert [call.status for call in elma.calls_of(IMPORT_STATUS)] == [503, 502, 200]


def test_a_status_poll_repeated_within_the_second_waits_out_elma365s_limit() -> None:
    """ELMA365 wants no more than one status request a second (the emulator answers a sooner one 429 with
    Retry-After). A status request whose answer was lost (past the read timeout: ELMA365 counted it) is
    repeated at once by the client's retry; that repeat is refused, and the client waits out Retry-After
    instead of failing the check. Real time: the retry sleeps for real (about a second)."""
    with Elma365Emulator(Elma365EmulatorConfig()) as elma:
        elma.import_behaviour = ImportBehaviour(polls=5)
        client = make_client(elma, read_timeout=0.2)
        file_hash = client.upload_file(io.BytesIO(SMALL), len(SMALL), file_format="csv")
        started = client.start_import(file_hash, file_format="csv")
        elma.inject(IMPORT_STATUS, Fault.slow(0.5))
        answer = client.import_status(str(started.id))
        assert answer.status == "in_progress"
        assert [call.status for call in elma.calls_of(IMPORT_STATUS)] == [200, 429, 200]
        assert elma.import_(str(started.id)).polls_refused == 1


def test_status_check_unavailable_after_retries(elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock) -> None:
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    elma.inject(IMPORT_STATUS, *[Fault.http(503)] * 4)
    with pytest.raises(TargetUnavailable):
        check(elma, slots, clock, job, source)
    assert slots.holder(slot(elma)) == "sync-1"  # a transient failure keeps the slot: the loop checks again


def test_failed_upload_is_repeated_under_a_new_hash(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.inject(UPLOAD, Fault.http(503), Fault.connection_reset())
    job = make_target(elma, slots, clock).start_import(STAGED, Source(SMALL), sync_id="sync-1")
    assert [call.status for call in elma.calls_of(UPLOAD)] == [503, 0, 200]
    assert [upload.hash for upload in elma.uploads] == [job.detail["hash"]]
    assert job.import_id == elma.imports[0].id


def test_refused_token_and_unknown_app_are_rejected(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    wrong = Elma365Target(make_client(elma, token="wrong"), slots=slots, clock=clock)
    with pytest.raises(TargetRejected, match="ELMA365 refused the token") as refused:
        wrong.start_import(STAGED, Source(SMALL), sync_id="sync-1")
    assert refused.value.status == 403
    assert len(elma.calls_of(UPLOAD)) == 1  # not retried
    missing = Elma365Target(make_client(elma, code="nothing"), slots=slots, clock=clock)
    with pytest.raises(TargetRejected, match=r"hr\.nothing") as not_found:
        missing.start_import(STAGED, Source(SMALL), sync_id="sync-1")
    assert not_found.value.status == 404
    assert slots.holder(slot(elma, "nothing")) is None


def test_expired_upload_is_rejected_with_elma365s_reason(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.block_next_starts(1)
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    job.detail["uploadedAt"] = clock.now + 3600  # a job that wrongly believes its upload is fresh
    clock.advance(3600)
    with pytest.raises(TargetRejected, match="not found or expired") as rejected:
        check(elma, slots, clock, job, source)
    assert rejected.value.status == 400
    assert slots.holder(slot(elma)) is None


def test_csv_rejected_by_the_checks_propagates_before_anything_is_sent(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    source = CheckedSource(roster(60_000) + b"E-extra,too,many,fields\n")
    with pytest.raises(CsvRejected, match="fields differs"):
        make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    assert elma.calls == []
    assert slots.holder(slot(elma)) is None


def test_a_valid_file_passes_through_the_checks_in_chunks(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    source = CheckedSource(roster(5))
    job = make_target(elma, slots, clock, chunk_rows=2).start_import(STAGED, source, sync_id="sync-1")
    statuses, _ = run_to_end(elma, slots, clock, job, source, chunk_rows=2)
    assert statuses[-1].results["imported"] == 5
    assert [upload.rows for upload in elma.uploads] == [2, 2, 1]


# --- a directory (seed 004: recommended above 50,000 entries) -----------------------------------------


class StreamingSource(Source):
    """A staged file that may only be read in blocks (never whole), recording the largest read."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body)
        self.largest_read = 0

    def __call__(self) -> tuple[IO[bytes], int]:
        self.opened += 1
        source = self

        class Stream(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                assert size is not None, "the upload must not read the whole file at once"
                assert size >= 0, "the upload must not read the whole file at once"
                source.largest_read = max(source.largest_read, size)
                return super().read(size)

        return Stream(self.body), len(self.body)


def test_directory_upload_is_one_upload_and_one_import_of_the_whole_file(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.import_behaviour = ImportBehaviour(polls=3)
    source = StreamingSource(roster(120_000))
    job = make_target(elma, slots, clock, directory_id=DEFAULT_DIRECTORY_ID).start_import(
        STAGED, source, sync_id="sync-1"
    )
    [upload] = elma.uploads
    assert (upload.directory, upload.name, upload.rows) == (DEFAULT_DIRECTORY_ID, "roster.csv", 120_000)
    assert elma.calls_of(UPLOAD) == []  # no temporary file
    assert job.detail["hash"] == upload.hash  # kept: ELMA365 does not return it
    assert (job.detail["directory"], job.detail["chunks"]) == (DEFAULT_DIRECTORY_ID, 1)
    assert job.import_id == elma.imports[0].id
    statuses, job = run_to_end(elma, slots, clock, job, source, directory_id=DEFAULT_DIRECTORY_ID)
    assert [run.rows for run in elma.own_imports()] == [120_000]  # no 50,000-row chunks
    assert [start.hash for start in elma.starts] == [upload.hash]
    assert statuses[-1].state == "done"
    assert statuses[-1].results == {"imported": 120_000, "chunks": 1, "chunksDone": 1}
    assert statuses[-1].message == "ELMA365 imported 120,000 rows into hr.employees"
    assert source.opened == 1  # uploaded once, never read again for a chunk
    assert 0 < source.largest_read <= 1024 * 1024  # streamed in blocks, never held whole
    assert slots.holder(slot(elma)) is None


def test_directory_upload_counts_rows_through_the_checks_and_keeps_its_hash_while_blocked(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.block_next_starts(2)
    source = CheckedSource(roster(5))
    job = make_target(elma, slots, clock, directory_id=DEFAULT_DIRECTORY_ID).start_import(
        STAGED, source, sync_id="sync-1"
    )
    assert (job.detail["rows"], job.detail["waiting"], job.detail["waitingFor"]) == (5, True, "blocked")
    first_hash = job.detail["hash"]
    clock.advance(2 * 60 * 60)  # long past a temporary file's 60 minutes: a directory file stays
    statuses, job = run_to_end(elma, slots, clock, job, source, directory_id=DEFAULT_DIRECTORY_ID)
    assert statuses[-1].state == "done"
    assert [(start.hash, start.outcome) for start in elma.starts] == [
        (first_hash, "blocked"),
        (first_hash, "blocked"),
        (first_hash, "started"),
    ]
    assert len(elma.uploads) == 1
    assert source.opened == 1
    assert elma.imported_rows() == 5


def test_without_a_directory_temporary_files_are_imported_in_chunks_within_the_limit(
    slots: InMemorySlots, clock: FakeClock
) -> None:
    config = Elma365EmulatorConfig(temp_file_max_rows=50_000)  # as if ELMA365 enforced the recommendation
    with Elma365Emulator(config, clock=clock) as elma:
        elma.import_behaviour = ImportBehaviour(polls=1)
        source = Source(roster(120_000))
        job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
        statuses, _ = run_to_end(elma, slots, clock, job, source)
        assert statuses[-1].state == "done"
        assert [(upload.directory, upload.rows) for upload in elma.uploads] == [
            (None, 50_000),
            (None, 50_000),
            (None, 20_000),
        ]
        assert [start.outcome for start in elma.starts] == ["started"] * 3
        assert elma.calls_of(DIRECTORY_UPLOAD) == []


def test_directory_upload_refused_by_the_checks_starts_nothing(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    source = CheckedSource(roster(60_000) + b"E-extra,too,many,fields\n")
    with pytest.raises(CsvRejected, match="fields differs"):
        make_target(elma, slots, clock, directory_id=DEFAULT_DIRECTORY_ID).start_import(
            STAGED, source, sync_id="sync-1"
        )
    assert elma.uploads == []  # cut off before its end: ELMA365 holds no file
    assert elma.calls_of(START_IMPORT) == []
    assert slots.holder(slot(elma)) is None


def test_rate_limited_directory_upload_reopens_the_file(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    elma.inject(DIRECTORY_UPLOAD, Fault.http(429, retry_after=0), Fault.http(503))
    source = Source(SMALL)
    job = make_target(elma, slots, clock, directory_id=DEFAULT_DIRECTORY_ID).start_import(
        STAGED, source, sync_id="sync-1"
    )
    # the 429 is repeated under the same hash (the file opened afresh), the 503 under a new hash
    assert [call.status for call in elma.calls_of(DIRECTORY_UPLOAD)] == [429, 503, 200]
    assert source.opened == 3
    assert [upload.hash for upload in elma.uploads] == [job.detail["hash"]]
    assert elma.uploads[0].rows == 3  # the repeated upload sent the whole file again
    assert job.import_id == elma.imports[0].id


@pytest.mark.parametrize("how", ["answer lost", "read timeout"])
def test_an_interrupted_directory_start_is_closed_not_repeated(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock, how: str
) -> None:
    """A check sends the start of a waiting import and dies before the loop records its answer (or its answer
    never comes): the next check, carrying the job as it was before, must not start the file a second time."""
    elma.block_next_starts(1)
    source = Source(SMALL)
    job = make_target(elma, slots, clock, directory_id=DEFAULT_DIRECTORY_ID).start_import(
        STAGED, source, sync_id="sync-1"
    )
    assert job.detail["waitingFor"] == "blocked"
    if how == "answer lost":
        status, _lost = check(elma, slots, clock, job, source, directory_id=DEFAULT_DIRECTORY_ID)
        assert status.state == "running"
    else:
        elma.inject(START_IMPORT, Fault.slow(0.3))
        with pytest.raises(TargetUnavailable):
            check(elma, slots, clock, job, source, directory_id=DEFAULT_DIRECTORY_ID, read_timeout=0.15)
    assert len(elma.imports) == 1  # ELMA365 did start it
    status, job = check(elma, slots, clock, job, source, directory_id=DEFAULT_DIRECTORY_ID)
    assert status.state == "failed"
    assert "cannot tell whether the import began" in (status.message or "")
    assert len(elma.imports) == 1
    assert [start.outcome for start in elma.starts] == ["blocked", "started"]
    assert slots.holder(slot(elma)) is None


# --- blocked with a non-2xx status ---------------------------------------------------------------------


@pytest.mark.parametrize("directory_id", [None, DEFAULT_DIRECTORY_ID])
@pytest.mark.parametrize("http_status", [409, 423, 400, 503])
def test_a_blocked_start_with_a_non_2xx_status_waits_and_retries(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock, http_status: int, directory_id: str | None
) -> None:
    elma.blocked_http_status = http_status
    elma.block_next_starts(2)
    source = Source(SMALL)
    job = make_target(elma, slots, clock, directory_id=directory_id).start_import(STAGED, source, sync_id="sync-1")
    assert (job.import_id, job.detail["waiting"], job.detail["waitingFor"]) == ("", True, "blocked")
    statuses, _ = run_to_end(elma, slots, clock, job, source, directory_id=directory_id)
    assert [status.state for status in statuses] == ["pending", "running", "running", "done"]
    assert statuses[0].message == "ELMA365 is busy with another import into hr.employees; waiting to start the file"
    assert [
        (call.status, start.outcome) for call, start in zip(elma.calls_of(START_IMPORT), elma.starts, strict=True)
    ] == [
        (http_status, "blocked"),
        (http_status, "blocked"),
        (200, "started"),
    ]
    assert elma.imported_rows() == 3


@pytest.mark.parametrize("http_status", [409, 423, 400])
def test_a_blocked_status_answer_with_a_non_2xx_status_keeps_polling(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock, http_status: int
) -> None:
    elma.blocked_http_status = http_status
    source = Source(SMALL)
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    elma.block_next_status_checks(2)
    statuses, _ = run_to_end(elma, slots, clock, job, source)
    assert [status.state for status in statuses] == ["running", "running", "running", "done"]
    assert [call.status for call in elma.calls_of(IMPORT_STATUS)] == [http_status, http_status, 200, 200]
    assert elma.imported_rows() == 3


def test_a_chunk_start_whose_check_died_is_closed_not_repeated(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    """The ELMA365 chunk-start crash window (issue 11): the check that finished chunk 1 started chunk 2 and died
    before the loop memory recorded it. The next check, carrying chunk 1's job, found chunk 1 done again,
    uploaded chunk 2 under a new hash and started it a second time: 25 rows in chunks of 10 imported 35."""
    source = Source(roster(25))
    job = make_target(elma, slots, clock, chunk_rows=10).start_import(STAGED, source, sync_id="sync-1")
    while True:  # follow chunk 1 until the check that starts chunk 2
        status, after = check(elma, slots, clock, job, source, chunk_rows=10)
        if after.detail["chunk"] == 1:
            break
        job = after
    assert len(elma.own_imports()) == 2  # chunk 2 started; this check "dies" before `after` is recorded

    status, job = check(elma, slots, clock, job, source, chunk_rows=10)
    assert status.state == "failed"
    assert "cannot tell whether the import began" in (status.message or "")
    assert (status.message or "").startswith("ELMA365 could not import chunk 2 of 3:")
    assert (status.message or "").endswith("The 10 rows of chunk 1 stay imported.")
    assert len(elma.own_imports()) == 2
    assert [start.outcome for start in elma.starts] == ["started", "started"]
    assert slots.holder(slot(elma)) is None


def test_a_first_chunk_start_repeated_by_a_retried_start_is_closed_not_repeated(
    elma: Elma365Emulator, slots: InMemorySlots, clock: FakeClock
) -> None:
    """A waiting (blocked) first chunk: the check that started it died before recording it; the next check,
    carrying the waiting job, must not start the chunk again (its temporary file may even be re-uploaded)."""
    elma.block_next_starts(1)
    source = Source(roster(5))
    job = make_target(elma, slots, clock).start_import(STAGED, source, sync_id="sync-1")
    assert job.detail["waitingFor"] == "blocked"
    status, _lost = check(elma, slots, clock, job, source)
    assert status.state == "running"
    clock.advance(3600)  # long enough that the waiting chunk's upload is renewed under a new hash
    status, _ = check(elma, slots, clock, job, source)
    assert status.state == "failed"
    assert [start.outcome for start in elma.starts] == ["blocked", "started"]
    assert elma.imported_rows() <= 5
