"""The multi-org bench (bench/multi_org.py, `make bench`) in its quick mode, so that its code cannot rot: five
orgs staged at once through the offline stack, each sync DONE, no cross-org request, and every figure the
bench prints measured from the stack's records (nothing left at zero)."""

from __future__ import annotations

import pytest

from bench.multi_org import org_ids, percentile, report, run

pytestmark = pytest.mark.integration


def test_percentile_is_nearest_rank() -> None:
    values = [float(value) for value in range(1, 201)]
    assert percentile(values, 0.99) == 198.0
    assert percentile(values, 0.5) == 100.0
    assert percentile([3.0], 0.99) == 3.0


def test_five_orgs_each_sync_done_without_cross_org_requests(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(5, window=0.0, import_seconds=0.3, timeout=120.0)
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
    assert "per sync" in printed
