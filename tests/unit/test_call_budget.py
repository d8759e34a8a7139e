"""Every client call ends within its time budget: a slow (not down) service must fail the call in bounded
time, or retries (6 attempts x 60 s read timeout) outlast the status checker's 60 s Lambda.

Elapsed times are bound checks with generous slack, not benchmarks: budgets of about 1 s keep them fast.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import IO, Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.exceptions import MaxRetryError, ReadTimeoutError

from offline.charthop_emulator import ChartHopEmulator, Fault
from offline.elma365_emulator import IMPORT_STATUS, Elma365Emulator, Elma365EmulatorConfig
from offline.orgvue_emulator import OrgvueEmulator, OrgvueEmulatorConfig
from people_sync.charthop_client import (
    MIN_ATTEMPT_SECONDS,
    ChartHopClient,
    ChartHopRetry,
    default_retry,
    time_budget,
)
from people_sync.errors import ChartHopUnavailable, TargetUnavailable
from people_sync.models import ImportOptions
from people_sync.targets.elma365 import Elma365Client
from people_sync.targets.orgvue import OrgvueClient

BUDGET = 1.0
#: Generous: a loaded 2-core machine, server threads, connection set-up.
SLACK = 1.0
CSV = b"Employee ID,First Name\nE1,Ada\n"


def _slow_client(emulator: ChartHopEmulator, *, read_timeout: float = 0.4, **kwargs: Any) -> ChartHopClient:
    """Many quick retries: without a budget they would take 9 x read_timeout."""
    return ChartHopClient(
        emulator.config.token,
        base_url=emulator.base_url,
        timeout=(2.0, read_timeout),
        retry=default_retry(total=8, backoff_factor=0.01),
        **kwargs,
    )


def _timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    with pytest.raises((ChartHopUnavailable, TargetUnavailable)):
        call()
    return time.monotonic() - started


def test_a_charthop_slower_than_the_read_timeout_fails_the_call_within_budget(emulator: ChartHopEmulator) -> None:
    created = emulator.create_sync_process()
    emulator.inject("getProcess", *[Fault.slow(1.0)] * 20)
    client = _slow_client(emulator, call_budget_seconds=BUDGET)
    elapsed = _timed(lambda: client.get_process(emulator.config.org_id, created["id"]))
    assert elapsed < BUDGET + SLACK
    assert len(emulator.calls_of("getProcess")) >= 2  # it did retry while the budget lasted


def test_each_attempt_waits_at_most_the_time_left(emulator: ChartHopEmulator) -> None:
    """A read timeout longer than the budget is cut to the time left."""
    created = emulator.create_sync_process()
    emulator.inject("getProcess", Fault.slow(3.0))
    client = _slow_client(emulator, read_timeout=10.0, call_budget_seconds=BUDGET)
    elapsed = _timed(lambda: client.get_process(emulator.config.org_id, created["id"]))
    assert elapsed < BUDGET + SLACK


def test_a_retry_after_beyond_the_budget_gives_up_at_once(emulator: ChartHopEmulator) -> None:
    created = emulator.create_sync_process()
    emulator.inject("getProcess", Fault.http(429, retry_after=5))
    client = _slow_client(emulator, call_budget_seconds=BUDGET)
    elapsed = _timed(lambda: client.get_process(emulator.config.org_id, created["id"]))
    assert elapsed < BUDGET
    assert len(emulator.calls_of("getProcess")) == 1


def test_a_handler_caps_every_call_by_its_own_time_left(emulator: ChartHopEmulator) -> None:
    """`time_budget` (e.g. a Lambda's remaining time) tightens the client's own budget, never loosens it."""
    created = emulator.create_sync_process()
    emulator.inject("updateProcess", *[Fault.slow(1.0)] * 20)
    client = _slow_client(emulator, call_budget_seconds=30.0)
    with time_budget(BUDGET):
        elapsed = _timed(lambda: client.update_process(emulator.config.org_id, created["id"], progress=0.5))
    assert elapsed < BUDGET + SLACK


def test_a_spent_budget_makes_no_call(emulator: ChartHopEmulator) -> None:
    created = emulator.create_sync_process()
    with time_budget(0.0), pytest.raises(ChartHopUnavailable):
        _slow_client(emulator).get_process(emulator.config.org_id, created["id"])
    assert emulator.calls_of("getProcess") == []


def test_paging_through_a_slow_listing_shares_one_budget(emulator: ChartHopEmulator) -> None:
    for _ in range(6 * emulator.config.process_page_size):
        emulator.create_sync_process()
    emulator.inject("findProcesses", *[Fault.slow(0.3)] * 10)  # each of 6 pages answers in time, but slowly
    client = _slow_client(emulator, read_timeout=1.0, call_budget_seconds=BUDGET)
    elapsed = _timed(lambda: list(client.find_processes(emulator.config.org_id)))
    assert elapsed < BUDGET + SLACK


def test_the_import_post_loop_respects_the_budget(emulator: ChartHopEmulator) -> None:
    """importDataCsv's own retries (0.5, 1, 2 s backoff after a 503) stop when the budget would be exceeded."""
    parent = emulator.create_sync_process()
    emulator.inject("importDataCsv", *[Fault.http(503)] * 10)
    client = _slow_client(emulator, import_budget_seconds=BUDGET)

    def source() -> tuple[IO[bytes], int]:
        return io.BytesIO(CSV), len(CSV)

    elapsed = _timed(
        lambda: client.import_csv(
            emulator.config.org_id, source, file_name="r.csv", options=ImportOptions(), parent_process_id=parent["id"]
        )
    )
    assert elapsed < BUDGET + SLACK
    assert emulator.uploads == []


def test_a_slow_import_answer_is_cut_to_the_budget(emulator: ChartHopEmulator) -> None:
    """The POST's read timeout is the time left, and no retry is started without time for it."""
    parent = emulator.create_sync_process()
    emulator.inject("importDataCsv", *[Fault.http(503)] * 2)
    emulator.inject("findProcesses", *[Fault.slow(2.0)] * 5)
    client = _slow_client(emulator, read_timeout=10.0, import_budget_seconds=BUDGET)
    elapsed = _timed(
        lambda: client.import_csv(
            emulator.config.org_id,
            lambda: (io.BytesIO(CSV), len(CSV)),
            file_name="r.csv",
            options=ImportOptions(),
            parent_process_id=parent["id"],
            sleep=lambda _: None,
        )
    )
    assert elapsed < BUDGET + SLACK


@pytest.fixture
def orgvue() -> Iterator[OrgvueEmulator]:
    with OrgvueEmulator(OrgvueEmulatorConfig()) as running:
        yield running


def test_orgvue_calls_share_the_budget(orgvue: OrgvueEmulator) -> None:
    orgvue.inject("generate", *[Fault.slow(1.0)] * 20)
    client = OrgvueClient(
        orgvue.config.token,
        base_url=orgvue.base_url,
        tenant_id=orgvue.config.tenant_id,
        dataset_id=orgvue.config.dataset_id,
        timeout=(2.0, 0.4),
        retry=default_retry(total=8, backoff_factor=0.01, budget_seconds=BUDGET),
    )
    elapsed = _timed(lambda: client.generate_file("csv"))
    assert elapsed < BUDGET + SLACK


def test_elma365_calls_share_the_budget() -> None:
    with Elma365Emulator(Elma365EmulatorConfig()) as elma:
        elma.inject(IMPORT_STATUS, *[Fault.slow(1.0)] * 20)
        client = Elma365Client(
            elma.config.token,
            base_url=elma.base_url,
            namespace="hr",
            code="employees",
            timeout=(2.0, 0.4),
            retry=default_retry(total=8, backoff_factor=0.01, budget_seconds=BUDGET),
        )
        elapsed = _timed(lambda: client.import_status("no-such-import"))
        assert elapsed < BUDGET + SLACK


# --- the retry policy alone, on a clock moved by hand --------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    left=st.floats(min_value=0.0, max_value=30.0),
    backoff=st.floats(min_value=0.0, max_value=5.0),
    retry_after=st.one_of(st.none(), st.integers(min_value=0, max_value=3600)),
)
def test_a_retry_is_granted_only_with_time_left_for_the_wait_and_an_attempt(
    left: float, backoff: float, retry_after: int | None
) -> None:
    now = [100.0]
    slept: list[float] = []
    retry = ChartHopRetry(total=5, backoff_factor=backoff, backoff_jitter=0.0, status_forcelist={503, 429})
    response = _response(429 if retry_after is not None else 503, retry_after)
    with (
        mock.patch("people_sync.charthop_client._clock", side_effect=lambda: now[0]),
        mock.patch("time.sleep", side_effect=slept.append),
        time_budget(left),
    ):
        try:
            granted = retry.increment("GET", "/x", response=response)
        except MaxRetryError:
            return  # given up: nothing slept, nothing more sent
        granted.sleep(response)
    assert sum(slept) + MIN_ATTEMPT_SECONDS <= left + 1e-9


def test_a_read_timeout_with_no_time_left_is_not_retried() -> None:
    retry = ChartHopRetry(total=5, read=5)
    with time_budget(0.0), pytest.raises(MaxRetryError):
        retry.increment("GET", "/x", error=ReadTimeoutError(None, "/x", "slow"))  # type: ignore[arg-type]


def _response(status: int, retry_after: int | None) -> Any:
    from urllib3 import HTTPResponse

    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return HTTPResponse(body=b"", status=status, headers=headers)
