"""What the three emulators share: one `Fault`, and an injected connection reset that really drops the connection."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from offline import charthop_emulator, elma365_emulator, orgvue_emulator
from offline.emulator_base import Fault, FaultInjectingServer

#: Each emulator, an operation of it, and a request that is routed to that operation.
CASES: dict[str, tuple[Callable[[], FaultInjectingServer], str, str, str]] = {
    "charthop": (charthop_emulator.ChartHopEmulator, "getProcess", "GET", "/v1/org/acme/process/p-1"),
    "orgvue": (orgvue_emulator.OrgvueEmulator, "tempGet", "GET", "/temp-files/f-1"),
    "elma365": (
        elma365_emulator.Elma365Emulator,
        elma365_emulator.IMPORT_STATUS,
        "GET",
        "/pub/v1/app/hr/employees/import/i-1",
    ),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[tuple[FaultInjectingServer, str, str, str]]:
    make, operation, method, path = CASES[request.param]
    with make() as running:
        yield running, operation, method, f"{running.base_url}{path}"


def test_every_emulator_exports_the_same_fault() -> None:
    assert charthop_emulator.Fault is orgvue_emulator.Fault is elma365_emulator.Fault is Fault
    assert "Fault" in orgvue_emulator.__all__
    assert "Fault" in elma365_emulator.__all__
    assert "Fault" in charthop_emulator.__all__


def test_injected_reset_drops_the_connection_instead_of_answering(
    case: tuple[FaultInjectingServer, str, str, str],
) -> None:
    emulator, operation, method, url = case
    emulator.inject(operation, Fault.connection_reset())
    assert emulator.pending_faults(operation) == 1

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.request(method, url, timeout=5)

    assert emulator.pending_faults(operation) == 0
    answer = requests.request(method, url, timeout=5)  # the fault is spent: the next call is answered
    assert answer.status_code != 500
