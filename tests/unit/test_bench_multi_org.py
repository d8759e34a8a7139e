"""The multi-org bench (bench/multi_org.py, `make bench`) in its quick mode, so that its code cannot rot: five
orgs staged at once through the offline stack, each sync DONE, no cross-org request, and every figure the
bench prints measured from the stack's records (nothing left at zero). The same five orgs on the simulated
clock (bench/simulated_clock.py, the 200-org line) must do what the offline stack does: the same
invocations, state transitions and ChartHop requests, only at other times."""

from __future__ import annotations

import pytest

from bench.multi_org import MultiOrgResult, org_ids, percentile, report, run
from bench.simulated_clock import run_simulated
from offline.aws_stack import load_template

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wall() -> MultiOrgResult:
    return run(5, window=0.0, import_seconds=0.3, timeout=120.0)


@pytest.fixture(scope="module")
def simulated() -> MultiOrgResult:
    return run_simulated(5, window=0.0, import_seconds=0.3)


def test_percentile_is_nearest_rank() -> None:
    values = [float(value) for value in range(1, 201)]
    assert percentile(values, 0.99) == 198.0
    assert percentile(values, 0.5) == 100.0
    assert percentile([3.0], 0.99) == 3.0


def test_five_orgs_each_sync_done_without_cross_org_requests(
    wall: MultiOrgResult, capsys: pytest.CaptureFixture[str]
) -> None:
    result = wall
    assert result.statuses == dict.fromkeys(org_ids(5), "DONE")
    assert result.cross_org_requests == 0
    assert sorted(result.to_import_started) == org_ids(5)
    assert all(seconds > 0 for seconds in result.to_import_started.values())
    # each sync: a trigger and the loop's first task at least, one finalizer run, its own states and writes
    assert result.invocations["ImportStarterFunction"] >= 2 * 5
    assert result.invocations["SyncFinalizerFunction"] >= 5
    assert result.transitions >= 4 * 5
    assert result.ddb_writes >= 5
    assert result.ddb_reads >= 5
    assert result.charthop_requests >= 3 * 5
    report(result)
    printed = capsys.readouterr().out
    assert "syncs DONE 5/5, cross-org requests 0" in printed
    assert "through the offline stack" in printed
    assert "per sync" in printed


def test_five_orgs_on_the_simulated_clock(simulated: MultiOrgResult, capsys: pytest.CaptureFixture[str]) -> None:
    result = simulated
    assert result.clock == "simulated"
    assert result.statuses == dict.fromkeys(org_ids(5), "DONE")
    assert result.cross_org_requests == 0
    # a fresh file waits out the settle time (QueueSettleSeconds, 2 s by default) before its import starts
    settle = float(load_template()["Parameters"]["QueueSettleSeconds"]["Default"])
    assert all(settle <= seconds < settle + 2.0 for seconds in result.to_import_started.values())
    # an import of 0.3 s is found finished by the check after the first poll wait (5 s, the template's default)
    assert settle + 5.0 < result.elapsed < settle + 10.0
    assert result.peak_concurrency["ImportStarterFunction"] >= 5  # five triggers at once on the clock
    report(result)
    printed = capsys.readouterr().out
    assert "on a SIMULATED clock" in printed
    assert "syncs DONE 5/5, cross-org requests 0" in printed


def test_the_simulated_clock_changes_when_things_happen_not_what_happens(
    wall: MultiOrgResult, simulated: MultiOrgResult
) -> None:
    assert simulated.invocations == wall.invocations
    assert simulated.transitions == wall.transitions
    # what differs by timing alone: a start that comes later than the settle time after its upload (the wall
    # clock, on a loaded machine) shows no "starts in a few seconds", one ChartHop request fewer
    assert 0 <= simulated.charthop_requests - wall.charthop_requests <= 5
    assert set(simulated.aws_calls) == set(wall.aws_calls)
