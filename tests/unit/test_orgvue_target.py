"""The Orgvue target against the emulator: Content-Length uploads, the import PUT (never repeated blindly), its
job ticket, the callback, query parameters, temporary-file expiry, and Orgvue's error messages."""

from __future__ import annotations

import csv
import io
import tracemalloc
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline.orgvue_emulator import Fault, OrgvueEmulator, OrgvueEmulatorConfig
from people_sync import api_assumptions as assumed
from people_sync.charthop_client import default_retry
from people_sync.csv_checks import CsvProblem, CsvRejected
from people_sync.errors import TargetRejected, TargetUnavailable
from people_sync.models import ImportJob, StagedFile
from people_sync.targets import orgvue as orgvue_module
from people_sync.targets.orgvue import (
    ImportMayHaveStarted,
    OrgvueClient,
    OrgvueTarget,
    TemporaryFileExpired,
    callback_template,
)
from tests.fakes import CallbackRecorder, FakeClock

WITH_ACTION = b"_action,employeeID,fullName\ncreate,E1,Ada Lovelace\ncreate,E2,Grace Hopper\n"
WITHOUT_ACTION = (
    b'\xef\xbb\xbfemployeeID,fullName,note\r\nE1,"Lovelace, Ada","says ""hi"""\r\nE2,Grace Hopper,"two\nlines"\r\n'
)
STAGED = StagedFile(bucket="staging", key="acme/roster.csv", org_id="acme")


class Source:
    """Re-openable staged file that records every read, and can fail a check after `fail_after` bytes."""

    def __init__(
        self,
        body: bytes,
        fail_after: int | None = None,
        on_read: Callable[[int], None] | None = None,
        on_open: Callable[[int], None] | None = None,
    ) -> None:
        self.body = body
        self.fail_after = fail_after
        self.on_read = on_read
        self.on_open = on_open
        self.opened = 0
        self.reads: list[int] = []

    def __call__(self) -> tuple[IO[bytes], int]:
        self.opened += 1
        if self.on_open is not None:
            self.on_open(self.opened)
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
        if self._source.on_read is not None:
            self._source.on_read(self._source.opened)
        fail_after = self._source.fail_after
        if fail_after is not None and self._data.tell() >= fail_after:
            raise CsvRejected(CsvProblem("ragged-rows", "roster.csv has rows of the wrong width (lines 7)."))
        return self._data.read(size)


@pytest.fixture
def orgvue(clock: FakeClock, recorder: CallbackRecorder) -> Iterator[OrgvueEmulator]:
    with OrgvueEmulator(OrgvueEmulatorConfig(), clock=clock) as running:
        running.import_behaviour.duration_s = 0
        yield running


def make_client(
    orgvue: OrgvueEmulator, token: str | None = None, dataset_id: str | None = None, clock: Any = None
) -> OrgvueClient:
    """A client with the production retry policy, only with millisecond backoff and no upload sleeps; it shares
    the emulator's clock (temporary files' age)."""
    return OrgvueClient(
        token or orgvue.config.token,
        base_url=orgvue.base_url,
        tenant_id=orgvue.config.tenant_id,
        dataset_id=dataset_id or orgvue.config.dataset_id,
        timeout=(2.0, 1.0),
        retry=default_retry(total=3, backoff_factor=0.01),
        sleep=lambda _: None,
        clock=clock or orgvue.clock,
    )


@pytest.fixture
def target(orgvue: OrgvueEmulator) -> OrgvueTarget:
    return OrgvueTarget(make_client(orgvue))


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def _status_after_processing(orgvue: OrgvueEmulator, target: OrgvueTarget, job: ImportJob) -> Any:
    orgvue.wait_until_processed()
    return target.import_status(job, Source(WITH_ACTION))[0]


# --- uploads: always Content-Length -------------------------------------------------------------------


def test_file_with_action_column_is_sent_as_is_with_its_length(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    upload = orgvue.uploads[-1]
    assert upload.body == WITH_ACTION
    assert (upload.chunked, upload.content_length) == (False, len(WITH_ACTION))
    assert job.import_id == orgvue.imports[-1].trace_id
    assert _status_after_processing(orgvue, target, job).state == "done"
    assert set(orgvue.items) == {"E1", "E2"}
    assert orgvue.chunked_requests() == []


def test_default_action_is_added_first_and_sent_with_content_length(orgvue: OrgvueEmulator) -> None:
    target = OrgvueTarget(make_client(orgvue), default_action="Create")
    source = Source(WITHOUT_ACTION)
    job = target.start_import(STAGED, source, sync_id="s-1")
    upload = orgvue.uploads[-1]
    assert not upload.chunked  # counted first, then sent with Content-Length
    assert upload.content_length == len(upload.body)
    assert orgvue.chunked_requests() == []
    assert source.opened == 3  # the header check, the length pass, the upload
    assert _rows(upload.body) == [
        ["_action", "employeeID", "fullName", "note"],
        ["create", "E1", "Lovelace, Ada", 'says "hi"'],
        ["create", "E2", "Grace Hopper", "two\nlines"],
    ]
    assert _status_after_processing(orgvue, target, job).state == "done"
    assert orgvue.items["E1"] == {"employeeID": "E1", "fullName": "Lovelace, Ada", "note": 'says "hi"'}
    assert orgvue.items["E2"]["note"] == "two\nlines"


# a bare CR in an unquoted field is not CSV (the reader refuses it in both passes alike): left out
csv_cells = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\r"), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(csv_cells, min_size=1, max_size=4), min_size=1, max_size=25),
    bom=st.booleans(),
    crlf=st.booleans(),
    chunk=st.sampled_from([7, 64, 4096]),
)
def test_counted_length_equals_the_bytes_sent(rows: list[list[str]], bom: bool, crlf: bool, chunk: int) -> None:
    """For any CSV, the length counted in the first pass is exactly what the counted body then sends."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n" if crlf else "\n").writerows([["employeeID", "x"][: len(rows[0])], *rows])
    data = (b"\xef\xbb\xbf" if bom else b"") + text.getvalue().encode()
    source = Source(data)
    length = orgvue_module._transformed_length(source, "r.csv", "update")
    stream, _ = source()
    body = orgvue_module._CountedBody(orgvue_module._with_action_column(stream, "r.csv", "update"), length)
    sent = b""
    while block := body.read(chunk):
        sent += block
    assert len(sent) == length == body.len
    # and the body's content is the file with `_action` first
    assert _rows(sent)[0][0] == "_action"


@settings(max_examples=25, deadline=None)
@given(body=st.binary(min_size=0, max_size=3000))
def test_a_file_with_action_is_sent_with_its_own_length(body: bytes) -> None:
    sized = orgvue_module._SizedBody(io.BytesIO(body), len(body))
    sent = b""
    while block := sized.read(100):
        sent += block
    assert sized.len == len(sent) == len(body)


def test_counted_body_refuses_to_send_other_than_it_declared() -> None:
    short = orgvue_module._CountedBody(iter([b"abc"]), 5)
    assert short.read(2) + short.read(2) == b"abc"
    with pytest.raises(TargetUnavailable, match="changed while it was uploaded"):
        short.read(2)
    with pytest.raises(TargetUnavailable, match="changed while it was uploaded"):
        orgvue_module._CountedBody(iter([b"abcdef"]), 4).read(10)


def test_length_pass_holds_one_block_not_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orgvue_module, "CHUNK", 64 * 1024)
    body = b"employeeID,fullName\n" + b"".join(b"E%07d,Person number %d\n" % (n, n) for n in range(300_000))
    assert len(body) > 8_000_000
    source = Source(body)
    tracemalloc.start()
    try:
        length = orgvue_module._transformed_length(source, "roster.csv", "update")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert length == len(body) + len(b"_action,") + 300_000 * len(b"update,") + 300_001  # CRLF endings
    assert peak < 2_000_000  # a few blocks, whatever the file's size
    assert -1 not in source.reads


def test_default_action_must_be_an_orgvue_action(orgvue: OrgvueEmulator) -> None:
    with pytest.raises(ValueError, match="OrgvueDefaultAction"):
        OrgvueTarget(make_client(orgvue), default_action="upsert")
    with pytest.raises(ValueError, match="OrgvueDateFormat"):
        OrgvueTarget(make_client(orgvue), date_format="DD.MM.YYYY")


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


def test_csv_rejected_in_the_length_pass_sends_nothing(orgvue: OrgvueEmulator) -> None:
    target = OrgvueTarget(make_client(orgvue), default_action="update")
    body = b"employeeID,fullName\n" + b"".join(b"E%d,Person %d\n" % (n, n) for n in range(20000))
    with pytest.raises(CsvRejected, match="wrong width"):
        target.start_import(STAGED, Source(body, fail_after=100_000), sync_id="s-1")
    assert orgvue.calls == []  # not even a temporary file


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


# --- temporary files live 15 minutes --------------------------------------------------------------------


def test_temporary_file_expired_before_the_upload_is_a_clear_message(orgvue: OrgvueEmulator, clock: FakeClock) -> None:
    """Orgvue's clock says the file is gone although ours does not (a shorter lifetime than published, or a
    clock that differs): its "Request has expired" answer becomes a clear message and the file stays staged."""
    ours = FakeClock()
    target = OrgvueTarget(make_client(orgvue, clock=ours))

    def orgvue_time_passes(opened: int) -> None:
        if opened == 2:  # the upload's stream is opened right after the temporary file was generated
            clock.now = max(clock.now, 1000.0 + 16 * 60)

    with pytest.raises(TemporaryFileExpired) as raised:
        target.start_import(STAGED, Source(WITH_ACTION, on_open=orgvue_time_passes), sync_id="s-1")
    assert "temporary file expired" in raised.value.user_message
    assert "15 minutes" in raised.value.user_message
    assert "Request has expired" in raised.value.user_message
    assert [call.status for call in orgvue.calls_of("tempPut")] == [403]  # not repeated: it cannot help
    assert orgvue.calls_of("import") == []


def test_an_upload_that_took_too_long_does_not_start_the_import(
    orgvue: OrgvueEmulator, target: OrgvueTarget, clock: FakeClock
) -> None:
    moved: list[bool] = []

    def slow_upload(opened: int) -> None:
        if opened == 2 and not moved:
            clock.advance(11 * 60)  # within the file's 15 minutes, past the start deadline
            moved.append(True)

    with pytest.raises(TemporaryFileExpired, match="took 11 minutes"):
        target.start_import(STAGED, Source(WITH_ACTION, on_read=slow_upload), sync_id="s-1")
    assert len(orgvue.uploads) == 1
    assert orgvue.calls_of("import") == []


def test_the_import_starts_from_a_fresh_file_with_a_fresh_result_location(
    orgvue: OrgvueEmulator, target: OrgvueTarget
) -> None:
    target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    generated = [call.at for call in orgvue.calls_of("generate")]
    started = orgvue.calls_of("import")[0].at
    assert len(generated) == 2
    assert started - generated[0] < assumed.ORGVUE_IMPORT_START_DEADLINE_SECONDS


# --- the import: a PUT with explicit query parameters, never repeated blindly --------------------------------


def test_import_is_a_put_with_implicit_delete_false_by_default(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    [call] = orgvue.calls_of("import")
    assert call.method == "PUT"
    assert call.query == {"implicitDelete": "false", "dateFormat": "YYYY-MM-DD", "autoId": "true"}


def test_implicit_delete_id_key_and_date_format_are_sent_as_configured(orgvue: OrgvueEmulator) -> None:
    orgvue.items = {"E9": {"employeeID": "E9", "fullName": "Gone"}}
    target = OrgvueTarget(make_client(orgvue), implicit_delete=True, id_key="employeeID", date_format="DD/MM/YYYY")
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    [call] = orgvue.calls_of("import")
    assert call.query == {"implicitDelete": "true", "dateFormat": "DD/MM/YYYY", "idKey": "employeeID"}
    assert job.detail["implicitDelete"] is True
    status = _status_after_processing(orgvue, target, job)
    assert status.results["deleted"] == 1
    assert set(orgvue.items) == {"E1", "E2"}


def test_api_calls_carry_the_json_content_type_the_recipe_names(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    api_calls = orgvue.calls_of("generate") + orgvue.calls_of("import")
    assert len(api_calls) == 3
    assert {call.content_type for call in api_calls} == {"application/json; charset=UTF-8"}


@pytest.mark.parametrize("id_key", [None, "employeeID"])
@pytest.mark.parametrize("implicit_delete", [False, True])
def test_implicit_delete_is_always_sent_explicitly(
    orgvue: OrgvueEmulator, implicit_delete: bool, id_key: str | None
) -> None:
    """Without `implicitDelete` Orgvue's async import is a refresh that deletes the items missing from the file
    (the recipe): the client never leaves the parameter out, so the choice is always OrgvueImplicitDelete's."""
    query = OrgvueTarget(make_client(orgvue), implicit_delete=implicit_delete, id_key=id_key).query()
    assert query["implicitDelete"] == ("true" if implicit_delete else "false")


def test_without_implicit_delete_items_missing_from_the_file_stay(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    """OrgvueImplicitDelete off sends implicitDelete=false, assumed to keep missing items (api_assumptions)."""
    orgvue.items = {"E9": {"employeeID": "E9", "fullName": "Kept"}}
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert _status_after_processing(orgvue, target, job).results["deleted"] == 0
    assert set(orgvue.items) == {"E1", "E2", "E9"}


def test_a_file_without_the_id_key_column_is_refused_before_anything_is_sent(orgvue: OrgvueEmulator) -> None:
    target = OrgvueTarget(make_client(orgvue), id_key="personID")
    with pytest.raises(CsvRejected) as raised:
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert raised.value.problem.code == "missing-id-key"
    assert "OrgvueIdKey" in raised.value.problem.message
    assert orgvue.calls == []


def test_429_on_the_import_put_is_retried(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.inject("import", Fault.http(429), Fault.http(429, retry_after=0))
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert [call.status for call in orgvue.calls_of("import")] == [429, 429, 202]
    assert len(orgvue.imports) == 1
    assert job.import_id == orgvue.imports[0].trace_id


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_on_the_import_put_is_not_repeated(orgvue: OrgvueEmulator, target: OrgvueTarget, status: int) -> None:
    orgvue.inject("import", Fault(status=status, after_effect=True))  # Orgvue started it, then failed to answer
    with pytest.raises(ImportMayHaveStarted, match=f"HTTP {status}") as raised:
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert [call.status for call in orgvue.calls_of("import")] == [202]  # one PUT reached Orgvue
    assert len(orgvue.imports) == 1
    assert "may have started" in raised.value.user_message
    assert "does not repeat" in raised.value.user_message


def test_timeout_on_the_import_put_is_not_repeated(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.inject("import", Fault.slow(0.3))
    target.client.timeout = (2.0, 0.1)
    with pytest.raises(ImportMayHaveStarted, match="may have started"):
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert len(orgvue.calls_of("import")) == 1
    assert len(orgvue.imports) == 1


def test_reset_on_the_import_put_is_not_repeated(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.inject("import", Fault(reset=True, after_effect=True))
    with pytest.raises(ImportMayHaveStarted, match="may have started"):
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert len(orgvue.calls_of("import")) == 1
    assert len(orgvue.imports) == 1


def test_orgvues_error_messages_are_shown(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    data = target.client.generate_file("csv")
    with pytest.raises(TargetRejected) as raised:
        target.client.start_import(data.get, None, None, {"implicitDelete": "false", "bogus": "1"})
    assert raised.value.status == 400
    assert "unknown query parameter(s): bogus" in raised.value.user_message


def test_an_accepted_import_without_a_ticket_is_not_reported_as_not_started(
    orgvue: OrgvueEmulator, target: OrgvueTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target.client, "start_import", lambda *args: {"jobStatus": "created"})
    with pytest.raises(ImportMayHaveStarted, match="has probably begun"):
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")


# --- following the job: its ticket, or the callback --------------------------------------------------------


def test_the_ticket_is_polled_from_created_through_running_to_completed(
    orgvue: OrgvueEmulator, target: OrgvueTarget, clock: FakeClock
) -> None:
    orgvue.import_behaviour.queued_s = 10
    orgvue.import_behaviour.duration_s = 60
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert job.detail["jobStatus"] == "created"
    assert job.detail["ticketUrl"] == orgvue.imports[-1].ticket_url
    assert target.import_status(job, Source(WITH_ACTION))[0].state == "pending"
    clock.advance(10)
    running, carried = target.import_status(job, Source(WITH_ACTION))
    assert (running.state, carried) == ("running", job)
    clock.advance(50)
    status = _status_after_processing(orgvue, target, job)
    assert status.state == "done"
    assert status.results == {"rows": 2, "created": 2, "updated": 0, "deleted": 0, "errors": 0}
    assert len(orgvue.calls_of("ticket")) == 3
    assert {call.authorization for call in orgvue.calls_of("ticket")} == {None}


def test_an_unknown_job_status_is_an_error_not_success(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.import_behaviour.reported_status = "archived"
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    status = _status_after_processing(orgvue, target, job)
    assert status.state == "failed"
    assert "'archived'" in (status.message or "")
    assert "created, running, completed, failed" in (status.message or "")
    assert "cannot tell" in (status.message or "")


def test_temp_urls_and_ticket_get_no_token_and_api_calls_do(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    _status_after_processing(orgvue, target, job)
    for operation in ("tempPut", "tempGet", "ticket"):  # ours and the emulator's own reads of temporary files
        calls = orgvue.calls_of(operation)
        assert calls
        assert {call.authorization for call in calls} == {None}
    for operation in ("generate", "import"):
        assert {call.authorization for call in orgvue.calls_of(operation)} == {f"Bearer {orgvue.config.token}"}


def test_row_errors_are_reported_with_their_rows(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    body = b"_action,employeeID\ncreate,E1\nupdate,E404\nfrobnicate,E2\n"
    job = target.start_import(STAGED, Source(body), sync_id="s-1")
    status = _status_after_processing(orgvue, target, job)
    assert status.state == "done"
    assert status.results["errors"] == 2
    assert "row 2: E404 does not exist" in (status.message or "")
    assert "frobnicate" in (status.message or "")


def test_import_failure_carries_orgvues_reason(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.import_behaviour.fail_with = "Property 'grade' does not exist in dataset People"
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    status = _status_after_processing(orgvue, target, job)
    assert status.state == "failed"
    assert "Property 'grade' does not exist in dataset People" in (status.message or "")


def test_failed_ticket_errors_are_shown_when_the_result_is_unreadable(
    orgvue: OrgvueEmulator, target: OrgvueTarget, clock: FakeClock
) -> None:
    orgvue.import_behaviour.fail_with = "Property 'grade' is read-only"
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    orgvue.wait_until_processed()
    clock.advance(16 * 60)  # the result location (a temporary file) is gone; the ticket still answers
    status, _ = target.import_status(job, Source(WITH_ACTION))
    assert status.state == "failed"
    assert "Property 'grade' is read-only" in (status.message or "")


def test_callback_template_carries_the_placeholders(
    orgvue: OrgvueEmulator, target: OrgvueTarget, recorder: CallbackRecorder
) -> None:
    placeholders = "status={{jobStatus}}&traceId={{traceId}}&tenantId={{tenantId}}"
    assert callback_template("https://x.example/cb") == f"https://x.example/cb?{placeholders}"
    assert callback_template("https://x.example/cb?a=1") == f"https://x.example/cb?a=1&{placeholders}"
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1", callback_url=recorder.url)
    assert orgvue.imports[-1].body["callback"] == {"method": "GET", "urlTemplate": f"{recorder.url}&{placeholders}"}
    orgvue.wait_until_processed()
    # the callback's traceId is the ticket's X-Amzn-Trace-Id, which is how the sync matches it
    assert recorder.received == [
        {"sync": "s-1", "status": "completed", "traceId": job.detail["traceId"], "tenantId": orgvue.config.tenant_id}
    ]
    assert job.detail["traceId"] == orgvue.imports[-1].trace_id


def test_no_callback_url_means_no_callback_in_the_body(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert "callback" not in orgvue.imports[-1].body
    assert orgvue.imports[-1].body["resultLocation"]["method"] == "PUT"


def test_a_callback_that_names_an_end_decides_without_polling_the_ticket(
    orgvue: OrgvueEmulator, target: OrgvueTarget
) -> None:
    orgvue.import_behaviour.send_callback = False
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    record = orgvue.wait_until_processed()
    called = {"status": "completed", "traceId": record.trace_id, "tenantId": orgvue.config.tenant_id}
    status, _ = target.import_status(
        ImportJob(import_id=job.import_id, detail={**job.detail, "callback": called}), Source(WITH_ACTION)
    )
    assert (status.state, status.results["created"]) == ("done", 2)
    assert orgvue.calls_of("ticket") == []


def test_callbacks_that_do_not_decide_fall_back_to_the_ticket(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.import_behaviour.duration_s = 3600  # Orgvue is still running the job
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")

    def with_callback(status: str, trace_id: str | None = None) -> ImportJob:
        called = {"status": status, "traceId": trace_id or job.detail["traceId"], "tenantId": "ACME_PEOPLE"}
        return ImportJob(import_id=job.import_id, detail={**job.detail, "callback": called})

    assert target.import_status(with_callback("Completed"), Source(WITH_ACTION))[0].state == "done"
    failed, _ = target.import_status(with_callback("failed"), Source(WITH_ACTION))
    assert failed.state == "failed"
    assert "failed" in (failed.message or "")
    assert orgvue.calls_of("ticket") == []
    # an undocumented status, or a callback for another job, is not trusted: the ticket decides (running)
    assert target.import_status(with_callback("weird"), Source(WITH_ACTION))[0].state == "running"
    assert target.import_status(with_callback("completed", "other"), Source(WITH_ACTION))[0].state == "running"
    assert len(orgvue.calls_of("ticket")) == 2


def test_ticket_outage_is_unavailable(orgvue: OrgvueEmulator, target: OrgvueTarget) -> None:
    orgvue.import_behaviour.duration_s = 3600
    job = target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    orgvue.inject("ticket", *[Fault.http(503)] * 10)
    with pytest.raises(TargetUnavailable, match="HTTP 503"):
        target.import_status(job, Source(WITH_ACTION))
    assert len(orgvue.calls_of("ticket")) == 4  # first try + 3 retries (a GET is safe to repeat)


# --- other calls -------------------------------------------------------------------------------------------


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
    assert "invalid or missing bearer token" in raised.value.user_message  # Orgvue's own message
    assert len(orgvue.calls_of("generate")) == 1  # a 401 is not retried


def test_unknown_dataset_is_rejected_naming_it(orgvue: OrgvueEmulator) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    target = OrgvueTarget(make_client(orgvue, dataset_id=missing))
    with pytest.raises(TargetRejected, match=missing) as raised:
        target.start_import(STAGED, Source(WITH_ACTION), sync_id="s-1")
    assert raised.value.status == assumed.ORGVUE_UNKNOWN_DATASET_STATUS
    assert f"dataset {missing} not found" in raised.value.user_message
