"""The ChartHop client against the emulator: auth, payloads, retries and the import POST's safety."""

from __future__ import annotations

import io
from typing import IO, Any

import pytest

from offline.charthop_emulator import ChartHopEmulator, Fault
from people_sync.charthop_client import ChartHopClient, default_retry
from people_sync.errors import ChartHopRejected, ChartHopUnavailable
from people_sync.models import ImportOptions, Process, ProcessStatus

CSV = b"Employee ID,First Name,Last Name\nE1,Ada,Lovelace\nE2,Grace,Hopper\nE3,Alan,Turing\n"


class Source:
    """Re-openable CSV source that counts how often the import had to re-read it."""

    def __init__(self, body: bytes = CSV) -> None:
        self.body = body
        self.opened = 0

    def __call__(self) -> tuple[IO[bytes], int]:
        self.opened += 1
        return io.BytesIO(self.body), len(self.body)


def import_roster(client: ChartHopClient, emulator: ChartHopEmulator, source: Source, parent_id: str) -> Process:
    """importDataCsv of the source under a parent process, without real sleeps between retries."""
    return client.import_csv(
        emulator.config.org_id,
        source,
        file_name="roster.csv",
        options=ImportOptions(),
        parent_process_id=parent_id,
        sleep=lambda _: None,
    )


def test_get_process_sends_bearer_token_and_parses_process(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    created = emulator.create_sync_process()
    process = client.get_process(emulator.config.org_id, created["id"])
    assert process.id == created["id"]
    assert process.status == "PENDING"


def test_wrong_token_is_rejected_with_a_hint(emulator: ChartHopEmulator) -> None:
    created = emulator.create_sync_process()
    bad = ChartHopClient("wrong", base_url=emulator.base_url, retry=default_retry(total=2, backoff_factor=0.01))
    with pytest.raises(ChartHopRejected, match="API token") as raised:
        bad.get_process(emulator.config.org_id, created["id"])
    assert raised.value.status == 401
    assert len(emulator.calls_of("getProcess")) == 1  # a 401 is not retried


def test_update_process_sends_update_process_fields(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    created = emulator.create_sync_process()
    client.update_process(
        emulator.config.org_id,
        created["id"],
        status=ProcessStatus.RUNNING,
        progress=1.7,
        message="halfway",
        results={"rows": 3},
    )
    assert emulator.updates_for(created["id"]) == [
        {"status": "RUNNING", "progress": 1.0, "message": "halfway", "results": {"rows": 3}}
    ]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_then_recovery_is_retried(emulator: ChartHopEmulator, client: ChartHopClient, status: int) -> None:
    created = emulator.create_sync_process()
    emulator.inject("getProcess", Fault.http(status), Fault.http(status))
    assert client.get_process(emulator.config.org_id, created["id"]).id == created["id"]
    assert [call.status for call in emulator.calls_of("getProcess")] == [status, status, 200]


def test_persistent_5xx_raises_unavailable(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    created = emulator.create_sync_process()
    emulator.inject("updateProcess", *[Fault.http(503)] * 10)
    with pytest.raises(ChartHopUnavailable, match="HTTP 503"):
        client.update_process(emulator.config.org_id, created["id"], progress=0.5)
    assert len(emulator.calls_of("updateProcess")) == 4  # first try + 3 retries


def test_429_honours_retry_after(
    emulator: ChartHopEmulator, client: ChartHopClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr("urllib3.util.retry.time.sleep", slept.append)
    created = emulator.create_sync_process()
    emulator.inject("getProcess", Fault.http(429, retry_after=7))
    client.get_process(emulator.config.org_id, created["id"])
    assert 7 in slept


def test_huge_retry_after_is_capped(emulator: ChartHopEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Capped at 30 s; a budget of 60 s leaves room for that wait (a smaller one gives up: test_call_budget)."""
    slept: list[float] = []
    monkeypatch.setattr("urllib3.util.retry.time.sleep", slept.append)
    created = emulator.create_sync_process()
    emulator.inject("getProcess", Fault.http(429, retry_after=3600))
    client = ChartHopClient(
        emulator.config.token,
        base_url=emulator.base_url,
        timeout=(2.0, 1.0),
        retry=default_retry(total=3, backoff_factor=0.01),
        call_budget_seconds=60.0,
    )
    client.get_process(emulator.config.org_id, created["id"])
    assert slept
    assert max(slept) <= 30


def test_read_timeout_is_retried(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    created = emulator.create_sync_process()
    emulator.inject("getProcess", Fault.slow(1.5))  # client read timeout is 1 s
    assert client.get_process(emulator.config.org_id, created["id"]).id == created["id"]
    assert len(emulator.calls_of("getProcess")) == 2


def test_connection_reset_is_retried(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    created = emulator.create_sync_process()
    emulator.inject("getProcess", Fault.connection_reset())
    assert client.get_process(emulator.config.org_id, created["id"]).id == created["id"]
    assert len(emulator.calls_of("getProcess")) == 2


def test_import_streams_the_csv_with_spec_query(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    parent = emulator.create_sync_process()
    options = ImportOptions.model_validate(
        {"upsert": True, "createGroups": True, "notifyUserIds": "u1, u2", "notifyAppName": "people-sync"}
    )
    process = client.import_csv(
        emulator.config.org_id, Source(), file_name="roster.csv", options=options, parent_process_id=parent["id"]
    )
    [upload] = emulator.uploads
    assert upload.import_process_id == process.id
    assert (upload.file_name, upload.rows, upload.size) == ("roster.csv", 3, len(CSV))
    assert upload.query["createGroups"] == "true"
    assert upload.query["notifyUserIds"] == "u1,u2"
    assert upload.query["parentProcessId"] == parent["id"]
    assert process.parent_process_id == parent["id"]


def test_import_429_reopens_the_source_and_retries(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    parent = emulator.create_sync_process()
    source = Source()
    emulator.inject("importDataCsv", Fault.http(429, retry_after=0))
    slept: list[float] = []
    client.import_csv(
        emulator.config.org_id,
        source,
        file_name="roster.csv",
        options=ImportOptions(),
        parent_process_id=parent["id"],
        sleep=slept.append,
    )
    assert source.opened == 2
    assert slept == [0.0]
    assert len(emulator.uploads) == 1


def test_import_after_ambiguous_timeout_is_not_repeated(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    """ChartHop got the file but answered too late: we must find that import, not send a second one."""
    parent = emulator.create_sync_process()
    source = Source()
    emulator.inject("importDataCsv", Fault.slow(1.5))
    process = import_roster(client, emulator, source, parent["id"])
    assert source.opened == 1
    assert len(emulator.uploads) == 1
    assert process.id == emulator.uploads[0].import_process_id


def test_import_after_5xx_without_an_import_is_retried(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    parent = emulator.create_sync_process()
    source = Source()
    emulator.inject("importDataCsv", Fault.http(502))
    import_roster(client, emulator, source, parent["id"])
    assert source.opened == 2
    assert len(emulator.uploads) == 1
    assert len(emulator.calls_of("findProcesses")) == 1  # looked for an in-flight import first


def test_import_rejected_file_is_not_retried(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    parent = emulator.create_sync_process()
    source = Source(b"")
    with pytest.raises(ChartHopRejected, match="empty"):
        client.import_csv(
            emulator.config.org_id,
            source,
            file_name="roster.csv",
            options=ImportOptions(),
            parent_process_id=parent["id"],
            sleep=lambda _: None,
        )
    assert source.opened == 1


def test_import_gives_up_after_repeated_429(emulator: ChartHopEmulator, client: ChartHopClient) -> None:
    parent = emulator.create_sync_process()
    emulator.inject("importDataCsv", *[Fault.http(429)] * 4)
    with pytest.raises(ChartHopUnavailable, match="429"):
        client.import_csv(
            emulator.config.org_id,
            Source(),
            file_name="roster.csv",
            options=ImportOptions(),
            parent_process_id=parent["id"],
            sleep=lambda _: None,
        )
    assert emulator.uploads == []


# --- a token source: a refused token is replaced once per call (issue 13) ---------------------------------------


class Tokens:
    """A token source that hands out `fresh` (once) when ChartHop refuses the first token."""

    def __init__(self, first: str, fresh: str | None) -> None:
        self.current = first
        self.fresh = fresh
        self.refusals: list[str] = []

    def token(self) -> str:
        return self.current

    def refused(self, token: str) -> str | None:
        self.refusals.append(token)
        if self.fresh is None:
            return None
        self.current = self.fresh
        return self.fresh


def test_a_refused_token_is_replaced_once_and_the_call_goes_on(emulator: ChartHopEmulator) -> None:
    created = emulator.create_sync_process()
    tokens = Tokens("stale-token", emulator.config.token)
    client = ChartHopClient(tokens, base_url=emulator.base_url, retry=default_retry(total=2, backoff_factor=0.01))
    assert client.get_process(emulator.config.org_id, created["id"]).id == created["id"]
    assert [call.status for call in emulator.calls_of("getProcess")] == [401, 200]
    assert tokens.refusals == ["stale-token"]
    client.get_process(emulator.config.org_id, created["id"])  # the fresh token from now on, nothing refused
    assert tokens.refusals == ["stale-token"]


def test_a_fresh_token_that_is_refused_too_stands_refused_without_a_loop(emulator: ChartHopEmulator) -> None:
    from people_sync.errors import ChartHopTokenRefused

    created = emulator.create_sync_process()
    tokens = Tokens("stale-token", "also-refused")
    client = ChartHopClient(tokens, base_url=emulator.base_url, retry=default_retry(total=2, backoff_factor=0.01))
    with pytest.raises(ChartHopTokenRefused) as refused:
        client.get_process(emulator.config.org_id, created["id"])
    assert refused.value.operation == "read the process"
    assert "also-refused" not in str(refused.value)
    assert "stale-token" not in str(refused.value)
    assert [call.status for call in emulator.calls_of("getProcess")] == [401, 401]
    assert tokens.refusals == ["stale-token"]  # asked once per call, never again for the fresh one


def test_no_fresh_token_means_one_request_and_a_token_refused_error(emulator: ChartHopEmulator) -> None:
    from people_sync.errors import ChartHopTokenRefused

    created = emulator.create_sync_process()
    tokens = Tokens("stale-token", None)
    client = ChartHopClient(tokens, base_url=emulator.base_url, retry=default_retry(total=2, backoff_factor=0.01))
    with pytest.raises(ChartHopTokenRefused):
        client.get_process(emulator.config.org_id, created["id"])
    assert len(emulator.calls_of("getProcess")) == 1


def test_an_import_refused_for_its_token_is_sent_once_more_with_a_fresh_one(emulator: ChartHopEmulator) -> None:
    """A 401 comes before ChartHop acts on the POST: sending it again with a fresh token imports the file once."""
    parent = emulator.create_sync_process()
    tokens = Tokens("stale-token", emulator.config.token)
    client = ChartHopClient(tokens, base_url=emulator.base_url, retry=default_retry(total=2, backoff_factor=0.01))
    source = Source()
    imported = import_roster(client, emulator, source, parent["id"])
    assert [call.status for call in emulator.calls_of("importDataCsv")] == [401, 200]
    assert [upload.import_process_id for upload in emulator.uploads] == [imported.id]
    assert source.opened == 2
    assert tokens.refusals == ["stale-token"]


def test_an_import_whose_fresh_token_is_refused_too_is_not_sent_a_third_time(emulator: ChartHopEmulator) -> None:
    from people_sync.errors import ChartHopTokenRefused

    parent = emulator.create_sync_process()
    tokens = Tokens("stale-token", "also-refused")
    client = ChartHopClient(tokens, base_url=emulator.base_url, retry=default_retry(total=2, backoff_factor=0.01))
    with pytest.raises(ChartHopTokenRefused):
        import_roster(client, emulator, Source(), parent["id"])
    assert [call.status for call in emulator.calls_of("importDataCsv")] == [401, 401]
    assert emulator.uploads == []


def test_find_processes_stops_at_a_cursor_it_was_given_before(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ChartHop answering a page with a `next` it named before would have the listing read the same pages again
    and again up to `max_process_pages` (50), yielding each process every time: it stops at the repeat, says so,
    and yields each process once."""
    pages = [
        {"data": [_process("p1")], "next": "c1"},
        {"data": [_process("p2")], "next": "c2"},
        {"data": [_process("p3")], "next": "c1"},  # a cursor already followed
    ]
    asked: list[dict[str, Any]] = []

    def answer(method: str, path: str, *, what: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append(dict(params))
        return pages[min(len(asked), len(pages)) - 1]

    client = ChartHopClient("t", base_url="http://unused")
    monkeypatch.setattr(client, "_json", answer)
    found = [process.id for process in client.find_processes("org")]
    assert found == ["p1", "p2", "p3"], f"{len(asked)} pages read for 3 processes"
    assert [params.get("from") for params in asked] == [None, "c1", "c2"]
    assert "named a cursor it had named before" in caplog.text


def _process(process_id: str) -> dict[str, Any]:
    return {"id": process_id, "orgId": "org", "type": "IMPORT", "label": process_id, "status": "RUNNING"}
