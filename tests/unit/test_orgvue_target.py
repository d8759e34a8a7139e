"""The Orgvue target against the emulator: the upload, the import call, status by polling or callback, errors."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO, cast

import pytest

from offline.orgvue_emulator import Fault, OrgvueEmulator, OrgvueEmulatorConfig
from people_sync import api_assumptions as assumed
from people_sync.charthop_client import default_retry
from people_sync.csv_checks import CsvProblem, CsvRejected
from people_sync.errors import TargetRejected, TargetUnavailable
from people_sync.models import ImportJob, StagedFile
from people_sync.targets import orgvue as orgvue_module
from people_sync.targets.orgvue import OrgvueClient, OrgvueTarget, callback_template
from tests.fakes import CallbackRecorder, FakeClock

WITH_ACTION = b"_action,employeeID,fullName\ncreate,E1,Ada Lovelace\ncreate,E2,Grace Hopper\n"
WITHOUT_ACTION = (
    b'\xef\xbb\xbfemployeeID,fullName,note\r\nE1,"Lovelace, Ada","says ""hi"""\r\nE2,Grace Hopper,"two\nlines"\r\n'
)
STAGED = StagedFile(bucket="staging", key="acme/roster.csv", org_id="acme")


class Source:
    """Re-openable staged file that records every read, and can fail a check after `fail_after` bytes."""

    def __init__(self, body: bytes, fail_after: int | None = None) -> None:
        self.body = body
        self.fail_after = fail_after
        self.opened = 0
        self.reads: list[int] = []

    def __call__(self) -> tuple[IO[bytes], int]:
        self.opened += 1
        return cast(IO[bytes], _Recording(self)), len(self.body)


class _Recording(io.RawIOBase):
    def __init__(self, source: Source) -> None:
        super().__init__()
        self._source = source
        self._data = io.BytesIO(source.body)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        self._source.reads.append(-1 if size is None else size)
        fail_after = self._source.fail_after
        if fail_after is not None and self._data.tell() >= fail_after:
            raise CsvRejected(CsvProblem("ragged-rows", "roster.csv has rows of the wrong width (lines 7)."))
        return self._data.read(size)


@pytest.fixture
def orgvue(clock: FakeClock, recorder: CallbackRecorder) -> Iterator[OrgvueEmulator]:
    with OrgvueEmulator(OrgvueEmulatorConfig(), clock=clock) as running:
        running.import_behaviour.duration_s = 0
        yield running


def make_client(orgvue: OrgvueEmulator, token: str | None = None, dataset_id: str | None = None) -> OrgvueClient:
    """A client with the production retry policy, only with millisecond backoff and no upload sleeps."""
    return OrgvueClient(
        token or orgvue.config.token,
        base_url=orgvue.base_url,
        tenant_id=orgvue.config.tenant_id,
        dataset_id=dataset_id or orgvue.config.dataset_id,
        timeout=(2.0, 1.0),
        retry=default_retry(total=3, backoff_factor=0.01),
        sleep=lambda _: None,
    )


@pytest.fixture
def target(orgvue: OrgvueEmulator) -> OrgvueTarget:
    return OrgvueTarget(make_client(orgvue))


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def test_file_with_action_column_is_sent_as_is_with_its_length(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    upload = orgvue.uploads[-1]
    assert upload.body == WITH_ACTION
    assert (upload.chunked, upload.content_length) == (False, len(WITH_ACTION))
    assert job.import_id == orgvue.imports[-1].job_id
    orgvue.wait_until_processed(job.import_id)
    assert set(orgvue.items) == {"E1", "E2"}


def test_default_action_is_added_first_with_csv_quoting(orgvue: OrgvueEmulator) -> None:
    target = OrgvueTarget(make_client(orgvue), default_action="Create")
    job = target.start_import(STAGED, Source(WITHOUT_ACTION), sync_id="s-1")
    upload = orgvue.uploads[-1]
    assert upload.chunked  # the size changed: sent chunked, nothing counted up-front
    assert _rows(upload.body) == [
        ["_action", "employeeID", "fullName", "note"],
        ["create", "E1", "Lovelace, Ada", 'says "hi"'],
        ["create", "E2", "Grace Hopper", "two\nlines"],
    ]
    orgvue.wait_until_processed(job.import_id)
    assert orgvue.items["E1"] == {"employeeID": "E1", "fullName": "Lovelace, Ada", "note": 'says "hi"'}
    assert orgvue.items["E2"]["note"] == "two\nlines"


def test_default_action_must_be_an_orgvue_action(orgvue: OrgvueEmulator) -> None:
    with pytest.raises(ValueError, match="OrgvueDefaultAction"):
        OrgvueTarget(make_client(orgvue), default_action="upsert")


def test_missing_action_is_refused_before_anything_is_sent(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    with pytest.raises(CsvRejected) as raised:
        target.start_import(STAGED, Source(WITHOUT_ACTION), sync_id="s-1")
    assert raised.value.problem.code == "missing-action"
    assert "roster.csv has no _action column" in raised.value.problem.message
    assert "OrgvueDefaultAction" in raised.value.problem.message
    assert orgvue.calls == []


def test_csv_rejected_while_uploading_propagates_and_no_import_starts(
    orgvue: OrgvueEmulator, target: OrgvueTarget
) -> None:
    body = WITH_ACTION + b"".join(b"create,E%d,Person %d\n" % (n, n) for n in range(3, 20000))
    with pytest.raises(CsvRejected, match="wrong width"):
        target.start_import(STAGED, Source(body, fail_after=100_000), sync_id="s-1")
    assert orgvue.calls_of("import") == []
    assert orgvue.uploads == []


def test_upload_is_streamed_in_blocks_not_read_whole(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    body = WITH_ACTION + b"".join(b"create,E%d,Person %d\n" % (n, n) for n in range(3, 20000))
    source = Source(body)
    target.start_import(STAGED, source, sync_id="s-1")
    assert orgvue.uploads[-1].body == body
    assert -1 not in source.reads  # never "read everything"
    assert max(source.reads) < len(body)
    assert len(source.reads) > 3


def test_added_action_column_is_produced_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orgvue_module, "CHUNK", 4096)
    body = b"employeeID,fullName\n" + b"".join(b"E%d,Person %d\n" % (n, n) for n in range(50_000))
    stream = io.BytesIO(body)
    pieces = orgvue_module._with_action_column(stream, "roster.csv", "update")
    first = next(pieces)
    assert stream.tell() < len(body) // 10  # only a little was read for the first piece
    rest = b"".join(pieces)
    rows = _rows(first + rest)
    assert rows[0] == ["_action", "employeeID", "fullName"]
    assert len(rows) == 50_001
    assert rows[-1] == ["update", "E49999", "Person 49999"]


def test_callback_template_carries_the_placeholders(
    orgvue: OrgvueEmulator, target: OrgvueTarget, recorder: CallbackRecorder
) -> None:
    placeholders = "status={{jobStatus}}&traceId={{traceId}}&tenantId={{tenantId}}"
    assert callback_template("https://x.example/cb") == f"https://x.example/cb?{placeholders}"
    assert callback_template("https://x.example/cb?a=1") == f"https://x.example/cb?a=1&{placeholders}"
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1", callback_url=recorder.url)
    assert orgvue.imports[-1].body["callback"] == {"method": "GET", "urlTemplate": f"{recorder.url}&{placeholders}"}
    orgvue.wait_until_processed(job.import_id)
    assert recorder.received == [
        {"sync": "s-1", "status": "completed", "traceId": job.detail["traceId"], "tenantId": orgvue.config.tenant_id}
    ]


def test_no_callback_url_means_no_callback_in_the_body(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert "callback" not in orgvue.imports[-1].body
    assert orgvue.imports[-1].body["resultLocation"]["method"] == "PUT"


def test_temp_urls_get_no_token_and_api_calls_do(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    target.import_status(job, Source(WITH_ACTION))
    for operation in ("tempPut", "tempGet"):  # ours and the emulator's own reads/writes of temporary files
        calls = orgvue.calls_of(operation)
        assert calls
        assert {call.authorization for call in calls} == {None}
    for operation in ("generate", "import"):
        assert {call.authorization for call in orgvue.calls_of(operation)} == {f"Bearer {orgvue.config.token}"}


def test_status_by_polling_the_result_location(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.import_behaviour.reads = 2
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    status, carried = target.import_status(job, Source(WITH_ACTION))
    assert status.state == "running"
    assert carried == job
    target.import_status(job, Source(WITH_ACTION))  # the second read lets the emulator process it
    orgvue.wait_until_processed(job.import_id)
    status, _ = target.import_status(job, Source(WITH_ACTION))
    assert status.state == "done"
    assert status.results == {"rows": 2, "created": 2, "updated": 0, "deleted": 0, "errors": 0}
    assert "2 created" in (status.message or "")


def test_row_errors_are_reported_with_their_rows(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    body = b"_action,employeeID\ncreate,E1\nupdate,E404\nfrobnicate,E2\n"
    job = target.start_import(STAGED, Source(body), sync_id="s-1")
    orgvue.wait_until_processed(job.import_id)
    status, _ = target.import_status(job, Source(body))
    assert status.state == "done"
    assert status.results["errors"] == 2
    assert "row 2: E404 does not exist" in (status.message or "")
    assert "frobnicate" in (status.message or "")


def test_import_failure_carries_orgvues_reason(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.import_behaviour.fail_with = "Property 'grade' does not exist in dataset People"
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    orgvue.wait_until_processed(job.import_id)
    status, _ = target.import_status(job, Source(WITH_ACTION))
    assert status.state == "failed"
    assert "Property 'grade' does not exist in dataset People" in (status.message or "")


def test_status_from_callback_detail_reads_the_counts(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.import_behaviour.send_callback = False
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    record = orgvue.wait_until_processed(job.import_id)
    called = {"status": "completed", "traceId": record.trace_id, "tenantId": orgvue.config.tenant_id}
    status, _ = target.import_status(
        ImportJob(import_id=job.import_id, detail={**job.detail, "callback": called}), Source(WITH_ACTION)
    )
    assert (status.state, status.results["created"]) == ("done", 2)


def test_callback_status_decides_when_no_result_was_written(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.import_behaviour.duration_s = 3600  # Orgvue has not written the result yet
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")

    def with_callback(status: str, trace_id: str | None = None) -> ImportJob:
        called = {"status": status, "traceId": trace_id or job.detail["traceId"], "tenantId": "ACME_PEOPLE"}
        return ImportJob(import_id=job.import_id, detail={**job.detail, "callback": called})

    assert target.import_status(with_callback("Completed"), Source(WITH_ACTION))[0].state == "done"
    failed, _ = target.import_status(with_callback("failed"), Source(WITH_ACTION))
    assert failed.state == "failed"
    assert "failed" in (failed.message or "")
    assert target.import_status(with_callback("weird"), Source(WITH_ACTION))[0].state == "running"
    # a callback for another job is not trusted: the result location decides (not written: running)
    assert target.import_status(with_callback("completed", "other"), Source(WITH_ACTION))[0].state == "running"


def test_429_on_the_import_post_is_retried(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.inject("import", Fault.http(429), Fault.http(429, retry_after=0))
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert [call.status for call in orgvue.calls_of("import")] == [429, 429, 202]
    assert len(orgvue.imports) == 1
    assert job.import_id == orgvue.imports[0].job_id


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_on_the_import_post_is_not_repeated(orgvue: OrgvueEmulator, target: OrgvueTarget, status: int) -> None:
    orgvue.inject("import", Fault.http(status))
    with pytest.raises(TargetUnavailable, match=f"HTTP {status}"):
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert [call.status for call in orgvue.calls_of("import")] == [status]


def test_timeout_on_the_import_post_is_not_repeated(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.inject("import", Fault.slow(0.3))
    target.client.timeout = (2.0, 0.1)
    with pytest.raises(TargetUnavailable, match="did not answer"):
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert len(orgvue.calls_of("import")) == 1


def test_generate_5xx_is_repeated_because_it_is_harmless(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.inject("generate", Fault.http(503))
    target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert [call.status for call in orgvue.calls_of("generate")] == [503, 200, 200]


def test_upload_failures_are_repeated_with_a_fresh_stream(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.inject("tempPut", Fault.http(503), Fault.connection_reset())
    source = Source(WITH_ACTION)
    target.start_import(STAGED, source, sync_id="s-1")
    assert [call.status for call in orgvue.calls_of("tempPut")] == [503, 0, 200]
    assert source.opened == 4  # the header check, then one per attempt
    assert orgvue.uploads[-1].body == WITH_ACTION


def test_persistent_upload_failure_is_unavailable(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.inject("tempPut", *[Fault.http(503)] * 10)
    with pytest.raises(TargetUnavailable, match="HTTP 503"):
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert len(orgvue.calls_of("tempPut")) == target.client.upload_attempts
    assert orgvue.calls_of("import") == []


def test_wrong_token_is_rejected_with_a_hint(orgvue: OrgvueEmulator) -> None:
    target = OrgvueTarget(make_client(orgvue, token="expired"))
    with pytest.raises(TargetRejected, match="Orgvue refused the API token") as raised:
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert raised.value.status == 401
    assert len(orgvue.calls_of("generate")) == 1  # a 401 is not retried


def test_unknown_dataset_is_rejected_naming_it(orgvue: OrgvueEmulator) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    target = OrgvueTarget(make_client(orgvue, dataset_id=missing))
    with pytest.raises(TargetRejected, match=missing) as raised:
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert raised.value.status == assumed.ORGVUE_UNKNOWN_DATASET_STATUS


def test_result_location_outage_is_unavailable(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.import_behaviour.duration_s = 3600
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    orgvue.inject("tempGet", *[Fault.http(503)] * 10)
    with pytest.raises(TargetUnavailable, match="HTTP 503"):
        target.import_status(job, Source(WITH_ACTION))
    assert len(orgvue.calls_of("tempGet")) == 4  # first try + 3 retries
