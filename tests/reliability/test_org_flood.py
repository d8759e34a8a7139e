"""One org's flood of hundreds of files, as deployed (issue 13, "Fairness and limits").

Files of one target are imported one at a time, in staging order; each waits for its turn in its status loop. At
hundreds of files for one org that wait is hours long, so these tests run the real domain code on a simulated
clock (offline/queue_sim.py: the state machine as statemachine/sync_status.asl.json defines it, its 6-hour
`TimeoutSeconds` included, and the EventBridge watchdog). What they hold the app to:

* each file of the flood is imported once, in staging order, or, if its turn does not come in time, its sync
  ends ERROR saying so and the file stays staged; no status loop reaches the state machine's time limit, no
  import is cut off there while it runs (and none of the org's imports overlap), every sync closes;
* the turn passes as soon as an import is closed (the next file is woken), not when its next poll comes round;
* a waiting file costs a few import-starter invocations an hour, spread out, not a poll every few seconds in
  step with the rest of the flood;
* other orgs' imports start at once, whatever the flood's size.
"""

from __future__ import annotations

import statistics

import pytest

from offline.queue_sim import SimSync, Simulation, peak_invocations

FLOOD = 300
ORG = "org-flood"
OTHERS = [f"org-{n}" for n in range(1, 6)]


def _flood(sim: Simulation, files: int, *, window: float, name: str = "flood") -> list[SimSync]:
    """`files` files staged for ORG, spread evenly over `window` seconds from now."""
    start = sim.clock()
    return [sim.stage(ORG, f"{name}-{n:03d}.csv", start + window * n / files) for n in range(files)]


def _imports_of(sim: Simulation, org: str) -> list[str]:
    return [started.name for started in sorted(sim.imports, key=lambda i: i.started_at) if started.org == org]


def test_a_flood_longer_than_any_limit_is_imported_in_order_or_given_up_in_time_never_cut_off() -> None:
    """300 files of 5-minute imports (25 hours of work) and, 30 minutes later, one more file of the same org."""
    sim = Simulation(import_seconds=300)
    start = sim.clock()
    flood = _flood(sim, FLOOD, window=60)
    late = sim.stage(ORG, "late.csv", start + 1800)
    sim.run()
    syncs = [*flood, late]

    # every sync closed, within its status loop's time limit; none left to the state machine's limit (where an
    # import that had started would be cut off, still running, while the next file's import starts)
    assert all(sync.status in ("DONE", "ERROR") for sync in syncs), [s.name for s in syncs if s.status is None]
    assert [sync.name for sync in syncs if sync.timed_out] == []
    assert all(sync.closed_at is not None and sync.closed_at - sync.staged_at < sim.time_limit for sync in syncs)
    assert sim.overlaps == [], [(earlier.name, later.name) for earlier, later in sim.overlaps]

    # what was imported was imported once, in staging order, and ran to its end before its sync was closed DONE
    done = [sync for sync in syncs if sync.status == "DONE"]
    assert _imports_of(sim, ORG) == [sync.name for sync in done]
    ends = {started.sync_id: started.ends_at for started in sim.imports}
    assert all(sync.closed_at is not None and sync.closed_at >= ends[sync.sync_id] for sync in done)
    assert len(done) >= 40  # hours of imports happened: the limit is the loop's, not the queue's

    # what was not imported says why, and stays staged
    given_up = [sync for sync in syncs if sync.status == "ERROR"]
    assert given_up, "25 hours of imports cannot all fit"
    for sync in given_up:
        assert sync.import_started_at is None, sync.name
        assert f"{sync.name} was not imported: its turn did not come within" in sync.message, sync.message
        assert "the file stays staged" in sync.message, sync.message
    assert sim.deleted_objects == []


def test_the_turn_passes_when_an_import_closes_so_a_flood_of_short_imports_is_all_imported() -> None:
    """300 files of 20-second imports: 100 minutes of work, well inside the loop's limit. The next file is woken
    when its predecessor closes; polling alone left the target idle up to a minute between two imports."""
    sim = Simulation(import_seconds=20)
    flood = _flood(sim, FLOOD, window=60)
    sim.run()

    assert {sync.status for sync in flood} == {"DONE"}, [(s.name, s.message) for s in flood if s.status != "DONE"]
    assert _imports_of(sim, ORG) == [sync.name for sync in flood]
    closed = sorted(sync.closed_at for sync in flood if sync.closed_at is not None)
    started = sorted(sync.import_started_at for sync in flood if sync.import_started_at is not None)
    idle = [next_start - close for close, next_start in zip(closed, started[1:], strict=False)]
    assert max(idle) < 2, f"the target stood idle for up to {max(idle):.0f} s (median {statistics.median(idle):.0f} s)"


def test_waiting_files_ask_for_their_turn_rarely_and_not_all_at_once() -> None:
    """300 files staged within 5 seconds, behind one hour-long import: from their first minutes to the end of that
    import, how often the waiting files invoke the import starter. Each invocation holds one of the import
    starter's reserved concurrency (20 by default), which other orgs' starts need too."""
    sim = Simulation(import_seconds=lambda name: 3600 if name == "flood-000.csv" else 20)
    start = sim.clock()
    _flood(sim, FLOOD, window=5)
    sim.run(until=start + 3500)

    window = (start + 120, start + 3500)
    invoked = [(at, kind) for at, org, _sync, kind in sim.invocations if org == ORG and window[0] <= at < window[1]]
    hours = (window[1] - window[0]) / 3600
    per_file_hour = len(invoked) / (FLOOD - 1) / hours
    assert per_file_hour <= 35, f"{per_file_hour:.0f} import-starter invocations per waiting file and hour"
    # files staged together do not ask together: a few files in any one second, not the whole flood
    asks = [at for at, kind in invoked if kind == "start"]
    assert peak_invocations(asks, 1.0) <= 12, f"{peak_invocations(asks, 1.0)} files asked within one second"


@pytest.mark.parametrize("flood", [10, FLOOD])
def test_other_orgs_imports_start_at_once_whatever_the_size_of_one_orgs_flood(flood: int) -> None:
    """Five other orgs each stage a file in the same second as ORG's flood, two minutes in and three hours in. The
    import starter has its default reserved concurrency (20): the uploads' triggers and every status loop's
    StartImport and WaitForTurn share it, so a task throttled in the flood's burst must be retried until it gets
    through, not closed ERROR after the state machine's few quick retries."""
    sim = Simulation(import_seconds=60, concurrency=20)
    start = sim.clock()
    flood_syncs = _flood(sim, flood, window=1)
    together = [sim.stage(org, "roster.csv", start + 0.2 + 0.1 * n) for n, org in enumerate(OTHERS)]
    later = [
        sim.stage(org, f"roster-{at}.csv", start + at + n) for at in (120, 3 * 3600) for n, org in enumerate(OTHERS)
    ]
    sim.run()

    for sync in [*together, *later]:
        assert sync.status == "DONE", (sync.org, sync.name, sync.message)
    # in the same second as the flood, the uploads' triggers staged before theirs go first (half a second each
    # here, 20 at a time): that is all the flood's size costs them, beyond the settle time every file waits out
    settle = sim.context(OTHERS[0]).settings.queue_settle_seconds  # QueueSettleSeconds, test-sized (1 s)
    burst = flood * sim.trigger_seconds / 20
    for sync in together:
        assert sync.import_started_at is not None
        waited = sync.import_started_at - sync.staged_at
        assert waited < settle + 1 + burst, (sync.org, waited)
    # once the flood's uploads are in, nothing of the flood delays them: the settle time, the trigger and two
    # state transitions
    for sync in later:
        assert sync.import_started_at is not None
        waited = sync.import_started_at - sync.staged_at
        assert waited < settle + 1, (sync.name, waited)
    # and the flood's own files were never closed for a throttle either
    assert [sync.name for sync in flood_syncs if "TooManyRequests" in sync.message] == []
