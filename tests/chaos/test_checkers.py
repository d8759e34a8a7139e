"""The checkers are honest: they pass a clean run and catch each kind of violation.

Synthetic snapshots check each invariant's checker alone (fast); through the stack, a fault-free schedule
must give 0 violations and records tampered with after a clean run must be caught.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
import requests

from tests.chaos.campaign import run_schedule
from tests.chaos.invariants import Observed, PressRecord, StagedVersion, Violation, check_all
from tests.chaos.schedule import Action, HttpFault, Schedule

APP_USER = "app-user"

#: Step Functions' Retry waits cut to at most a second (their order and number unchanged), so a schedule
#: with faults ends in seconds.
pytestmark = pytest.mark.usefixtures("quick_state_machine_retries")


def clean() -> Observed:
    """One upload imported once and DONE, one press refused with ERROR: nothing wrong."""
    version = StagedVersion("charthop", "staging/org/s1u0.csv", "v1", "S1u0", 2, bad=False)
    processes: dict[str, dict[str, Any]] = {
        "sync": {"id": "sync", "status": "DONE", "runUserId": APP_USER, "options": {"versionId": "v1"}},
        "imp": {"id": "imp", "status": "DONE", "runUserId": APP_USER, "parentProcessId": "sync"},
        "press": {"id": "press", "status": "ERROR", "runUserId": "admin", "options": {}},
    }
    updates: list[tuple[str, dict[str, Any]]] = [
        ("sync", {"status": "RUNNING", "progress": 0.02}),
        ("sync", {"status": "RUNNING", "progress": 0.05}),
        ("sync", {"status": "DONE", "progress": 1.0}),
        ("sync", {"status": "DONE", "progress": 1.0}),  # the same final PATCH retried: not a write
        ("press", {"status": "ERROR", "message": "Another sync is already running"}),
    ]
    return Observed(
        versions=[version],
        presses=[PressRecord("press", {}, handed=True)],
        processes=processes,
        updates=updates,
        charthop_imports=[(2, "sync")],
        orgvue_imports=[],
        elma_imports=[],
        log_events=[],
        failed_objects={},
        staged_current={version.key: "v1"},
        locks=[],
        app_user_id=APP_USER,
        settled=True,
        faulty=False,
    )


def invariants(found: list[Violation]) -> list[str]:
    return sorted({violation.invariant for violation in found})


def test_a_clean_snapshot_has_no_violation() -> None:
    assert check_all(clean()) == []


def test_each_checker_catches_its_violation() -> None:
    double = clean()
    double.charthop_imports.append((2, "sync"))
    assert invariants(check_all(double)) == ["I1"]

    never_imported = clean()
    never_imported.charthop_imports.clear()
    assert "I1" in invariants(check_all(never_imported))  # no fault: exactly once

    still_open = clean()
    still_open.processes["press"]["status"] = "RUNNING"
    assert invariants(check_all(still_open)) == ["I2"]

    backwards = clean()
    backwards.updates.insert(2, ("sync", {"status": "RUNNING", "progress": 0.03}))
    assert invariants(check_all(backwards)) == ["I3"]

    after_done = clean()
    after_done.updates.append(("sync", {"status": "RUNNING", "progress": 0.5}))
    assert invariants(check_all(after_done)) == ["I3"]

    lost = clean()
    lost.charthop_imports.clear()
    lost.faulty = True
    lost.staged_current.clear()
    assert invariants(check_all(lost)) == ["I4"]

    unexplained = clean()
    unexplained.charthop_imports.clear()
    unexplained.faulty = True
    assert invariants(check_all(unexplained)) == ["I4"]  # still staged, but its sync says DONE

    held = clean()
    held.locks.append({"id": "sync-now#org", "owner": "press"})
    assert invariants(check_all(held)) == ["I5"]


def further_targets_schedule(seed: int) -> Schedule:
    return Schedule(
        seed,
        actions=[
            Action(0.0, "upload", "charthop"),
            Action(0.1, "upload", "orgvue"),
            Action(0.2, "upload", "elma365"),
            Action(0.3, "upload", "charthop", bad=True),
            Action(0.4, "replay_s3", ref=0),
            Action(4.0, "sync_now"),
            Action(4.5, "replay_webhook", ref=0),
        ],
    )


def test_a_fault_free_schedule_through_the_stack_has_no_violation() -> None:
    result = run_schedule(further_targets_schedule(900_001))
    assert result.violations == []
    assert not result.faults
    assert not result.crashes


def test_a_refusal_whose_update_keeps_failing_still_frees_the_slot() -> None:
    """Seed 8 of the campaign's first run, now a regression test: a "Sync Now" pressed while an upload's sync
    runs is refused, but ChartHop fails the refusal's updateProcess answers (500 after the update took effect,
    past the client's tries). The org's Sync Now slot used to stay held, so every later press was refused
    (I5; the checkers reported it on that code). The slot is freed even when the final write fails."""
    schedule = Schedule(
        900_002,
        actions=[Action(0.0, "upload", "charthop"), Action(0.6, "sync_now")],
        http_faults=[HttpFault("charthop", "updateProcess", 2, "500", burst=7, after_effect=True)],
    )
    result = run_schedule(schedule)
    assert invariants(result.violations) == [], result.violations


def test_tampered_records_are_caught_through_the_stack(monkeypatch: Any) -> None:
    """After a clean run: a late PATCH moving a finished bar back, and a slot nobody frees."""
    import tests.chaos.campaign as campaign

    real_observe = campaign.observe

    def tampering_observe(offline: Any, runner: Any, lines: Any, settled: bool) -> Observed:
        sync = next(p for p in offline.sync_processes() if p["status"] == "DONE")
        url = f"{offline.emulator.base_url}/v1/org/{offline.org_id}/process/{sync['id']}"
        token = {"Authorization": f"Bearer {offline.emulator.config.token}"}
        requests.patch(url, json={"progress": 0.5}, headers=token, timeout=5)
        boto3.client("dynamodb", region_name=offline.stack.region).put_item(
            TableName=offline.stack.physical["SyncTable"],
            Item={
                "id": {"S": "slot#elma365#hr/employees"},
                "owner": {"S": "someone"},
                "expiration": {"N": str(int(time.time()) + 600)},
            },
        )
        return real_observe(offline, runner, lines, settled)

    monkeypatch.setattr(campaign, "observe", tampering_observe)
    result = run_schedule(Schedule(900_003, actions=[Action(0.0, "upload", "charthop")]), probe_after=False)
    assert invariants(result.violations) == ["I3", "I5"]
