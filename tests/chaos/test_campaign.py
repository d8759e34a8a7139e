"""Issue 11's fault campaign: seeded random schedules over the whole offline stack, I1-I5 after each."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.chaos.campaign import run_schedule
from tests.chaos.conftest import RESULT_PROPERTY
from tests.chaos.schedule import generate

#: Step Functions' Retry waits cut to at most a second (their order and number unchanged), so a schedule
#: with faults ends in seconds.
pytestmark = pytest.mark.usefixtures("quick_state_machine_retries")


def test_schedule_keeps_the_invariants(seed: int, record_property: Callable[[str, object], None]) -> None:
    schedule = generate(seed)
    result = run_schedule(schedule)
    # Carried on the test's report, so the summary also counts schedules run by pytest-xdist's workers.
    record_property(RESULT_PROPERTY, result.to_json())
    if result.violations:
        found = "\n".join(f"  {violation.invariant}: {violation.message}" for violation in result.violations)
        pytest.fail(
            f"seed {seed} broke an invariant (replay: make chaos SEED={seed}):\n{found}\n"
            f"schedule:\n{schedule.describe()}",
            pytrace=False,
        )
