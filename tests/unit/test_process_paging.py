"""findProcesses pages: the client must follow `next` to the last page, or a running sync, or an import that
already started, is missed and a file can be imported twice."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline.charthop_emulator import ChartHopEmulator, EmulatorConfig, Fault
from people_sync import api_assumptions as assumed
from people_sync.charthop_client import ChartHopClient, default_retry
from people_sync.models import ImportOptions, ProcessStatus

CSV = b"Employee ID,First Name\nE1,Ada\nE2,Grace\n"


def _client(emulator: ChartHopEmulator, **kwargs: object) -> ChartHopClient:
    return ChartHopClient(
        emulator.config.token,
        base_url=emulator.base_url,
        timeout=(2.0, 1.0),
        retry=default_retry(total=3, backoff_factor=0.01),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def small_pages() -> Iterator[ChartHopEmulator]:
    """An emulator whose findProcesses pages hold 3 processes."""
    with ChartHopEmulator(EmulatorConfig(process_page_size=3)) as running:
        yield running


def _source() -> tuple[IO[bytes], int]:
    return io.BytesIO(CSV), len(CSV)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(min_value=0, max_value=25), page_size=st.integers(min_value=1, max_value=7))
def test_every_process_is_listed_once_whatever_the_page_size(count: int, page_size: int) -> None:
    with ChartHopEmulator(EmulatorConfig(process_page_size=page_size)) as emulator:
        made = {emulator.create_sync_process()["id"] for _ in range(count)}
        listed = [process.id for process in _client(emulator).find_processes(emulator.config.org_id)]
        assert sorted(listed) == sorted(made)
        pages = len(emulator.calls_of("findProcesses"))
        assert pages == max(1, -(-count // page_size))


def test_a_running_sync_on_the_last_page_is_found(small_pages: ChartHopEmulator) -> None:
    """The call site's loop (running syncs of the app, imports skipped): the sync is the oldest, on the last page."""
    org = small_pages.config.org_id
    sync = small_pages.create_sync_process()
    small_pages.processes[sync["id"]]["status"] = ProcessStatus.RUNNING.value
    for _ in range(10):  # newer running children (imports) of other syncs: listed first
        child = small_pages.create_sync_process()
        small_pages.processes[child["id"]].update(status="RUNNING", parentProcessId=sync["id"])
    found = [
        process.id
        for process in _client(small_pages).find_processes(
            org, statuses=[ProcessStatus.RUNNING.value], app_id=small_pages.config.app_id
        )
        if not process.parent_process_id
    ]
    assert found == [sync["id"]]
    assert len(small_pages.calls_of("findProcesses")) == 4


def test_an_import_already_started_on_the_last_page_is_found_not_repeated() -> None:
    """After an ambiguous import POST, the started import is listed after older children of the same parent."""
    with ChartHopEmulator(EmulatorConfig(process_page_size=3, newest_first=False)) as emulator:
        parent = emulator.create_sync_process()
        long_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for _ in range(7):  # earlier children of the same parent: oldest first, so before the new import
            old = emulator.create_sync_process()
            emulator.processes[old["id"]].update(parentProcessId=parent["id"], createAt=long_ago, status="DONE")
        emulator.inject("importDataCsv", Fault.slow(1.5))  # ChartHop starts the import but answers too late
        opened: list[int] = []

        def source() -> tuple[IO[bytes], int]:
            opened.append(1)
            return _source()

        process = _client(emulator).import_csv(
            emulator.config.org_id,
            source,
            file_name="roster.csv",
            options=ImportOptions(),
            parent_process_id=parent["id"],
            sleep=lambda _: None,
        )
        assert len(emulator.uploads) == 1
        assert process.id == emulator.uploads[0].import_process_id
        assert len(opened) == 1


def test_the_started_import_is_found_whatever_its_type() -> None:
    """The spec leaves a process's `type` free text: the import is found by its parent alone."""
    with ChartHopEmulator(EmulatorConfig(import_process_type="CSV_DATA_IMPORT")) as emulator:
        parent = emulator.create_sync_process()
        emulator.inject("importDataCsv", Fault.slow(1.5))
        process = _client(emulator).import_csv(
            emulator.config.org_id,
            _source,
            file_name="roster.csv",
            options=ImportOptions(),
            parent_process_id=parent["id"],
            sleep=lambda _: None,
        )
        assert len(emulator.uploads) == 1
        assert process.id == emulator.uploads[0].import_process_id
        assert process.type == "CSV_DATA_IMPORT" != assumed.CHARTHOP_IMPORT_PROCESS_TYPE


def test_a_created_process_found_after_an_ambiguous_create_is_not_created_twice(
    small_pages: ChartHopEmulator,
) -> None:
    org = small_pages.config.org_id
    small_pages.inject("createProcess", Fault.slow(1.5))
    process = _client(small_pages).create_process(
        org, label="people-sync: roster.csv", process_type="sync", run_user_id="u1", options={"source": "s3://b/k"}
    )
    assert [p["id"] for p in small_pages.processes.values() if p["label"] == "people-sync: roster.csv"] == [process.id]


def test_paging_stops_at_the_page_limit_and_says_so(
    small_pages: ChartHopEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(10):
        small_pages.create_sync_process()
    with caplog.at_level(logging.WARNING, logger="people_sync.charthop_client"):
        listed = list(_client(small_pages, max_process_pages=2).find_processes(small_pages.config.org_id))
    assert len(listed) == 6
    assert len(small_pages.calls_of("findProcesses")) == 2
    assert any("pages" in record.getMessage() for record in caplog.records)


def test_the_client_sends_the_spec_paging_parameters(small_pages: ChartHopEmulator) -> None:
    for _ in range(4):
        small_pages.create_sync_process()
    list(_client(small_pages).find_processes(small_pages.config.org_id))
    first, second = small_pages.calls_of("findProcesses")
    assert "limit" in first.query
    assert "from" not in first.query
    assert second.query["from"] in small_pages.processes
    assert second.query["limit"] == first.query["limit"]


def test_create_process_sends_the_app_id(emulator: ChartHopEmulator) -> None:
    """createProcess carries `appId` when the caller knows it (the emulator would otherwise fill in its own)."""
    process = _client(emulator).create_process(
        emulator.config.org_id, label="l", process_type="sync", run_user_id="u1", app_id="another-app"
    )
    assert process.app_id == "another-app"
