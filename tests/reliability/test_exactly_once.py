"""Duplicate and replayed deliveries: one import per (org, file version), one status loop per sync."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import boto3
import pytest
import requests

from offline.charthop_emulator import ImportBehaviour
from offline.harness import Offline, offline_environment
from tests.conftest import EVENTS

pytestmark = pytest.mark.integration
ROSTER = (EVENTS / "roster.csv").read_bytes()


@pytest.fixture
def offline() -> Iterator[Offline]:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3)) as running:
        yield running


def executions(offline: Offline) -> list[str]:
    """The status loops that followed an import (a refused or ignored start also has an execution, which
    ends at its first task)."""
    sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
    found = sfn.list_executions(stateMachineArn=offline.stack.state_machine_arn())["executions"]
    return sorted(
        execution["name"]
        for execution in found
        if any(
            event.get("stateEnteredEventDetails", {}).get("name") == "FollowImport"
            for event in sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
        )
    )


def replay(offline: Offline, event: dict[str, object]) -> None:
    boto3.client("lambda", region_name=offline.stack.region).invoke(
        FunctionName=offline.stack.function("ImportStarterFunction").name, Payload=json.dumps(event).encode()
    )


def first_s3_event(offline: Offline) -> dict[str, object]:
    return offline.runtime.invocations_of("ImportStarterFunction")[0].event


def test_replayed_s3_event_imports_once(offline: Offline) -> None:
    offline.stage("roster.csv", ROSTER)
    offline.wait_idle()
    sync = offline.wait_for_new_sync(set())
    offline.wait_for_process(sync["id"])
    for _ in range(3):
        replay(offline, first_s3_event(offline))
    offline.wait_idle()
    assert len(offline.emulator.uploads) == 1
    assert len(offline.sync_processes()) == 1
    assert executions(offline) == [f"sync-{sync['id']}"]


def test_simultaneous_duplicate_s3_deliveries_import_once(offline: Offline) -> None:
    offline.emulator.import_behaviour = ImportBehaviour(duration_s=0.3)
    offline.stage("roster.csv", ROSTER)
    offline.wait_idle()
    event = first_s3_event(offline)
    threads = [threading.Thread(target=replay, args=(offline, event)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    offline.wait_idle()
    assert len(offline.emulator.uploads) == 1


def test_a_new_version_of_the_same_file_is_a_new_import(offline: Offline) -> None:
    offline.stage("roster.csv", ROSTER)
    offline.wait_idle()
    offline.stage("roster.csv", ROSTER + b"E2000,New,Hire,Engineer,Engineering,Remote,E1000,2026-11-01,n@example.com\n")
    offline.wait_idle()
    assert [upload.rows for upload in offline.emulator.uploads] == [25, 26]


def test_duplicate_webhook_delivery_starts_one_import_and_one_loop() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), import_on_upload=False) as offline:
        offline.stage("roster.csv", ROSTER)
        process = offline.emulator.create_sync_process()
        event = offline.emulator.sync_now_event(process)
        answers = [requests.post(offline.authorised_webhook_url, json=event, timeout=10).status_code for _ in range(3)]
        assert answers == [202, 202, 202]
        offline.wait_idle()
        assert offline.wait_for_process(process["id"])["status"] == "DONE"
        requests.post(offline.authorised_webhook_url, json=event, timeout=10)  # a late replay, after DONE
        offline.wait_idle()
        assert len(offline.emulator.uploads) == 1
        assert executions(offline) == [f"sync-{process['id']}"]


def test_replay_for_a_finished_process_with_a_new_event_id_is_ignored() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.2), import_on_upload=False) as offline:
        offline.stage("roster.csv", ROSTER)
        pressed = offline.emulator.press_sync_now()
        offline.wait_for_process(pressed["process"]["id"])
        updates_before = len(offline.emulator.updates)
        replayed = {**pressed["event"], "id": "a-different-event-id"}
        requests.post(offline.authorised_webhook_url, json=replayed, timeout=10)
        offline.wait_idle()
        assert len(offline.emulator.uploads) == 1
        assert len(offline.emulator.updates) == updates_before  # the finished sync is left as it was


def test_sync_now_while_a_sync_runs_is_reported_as_already_running() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=3), import_on_upload=False) as offline:
        offline.stage("roster.csv", ROSTER)
        first = offline.emulator.press_sync_now()["process"]["id"]
        offline.wait_idle()  # the first sync's import is running in ChartHop now
        second = offline.emulator.press_sync_now()["process"]["id"]
        offline.wait_idle()
        refused = offline.emulator.process(second)
        assert refused["status"] == "ERROR"
        assert "Another sync is already running" in refused["message"]
        assert offline.wait_for_process(first)["status"] == "DONE"
        assert len(offline.emulator.uploads) == 1
        assert executions(offline) == [f"sync-{first}"]


def test_two_sync_now_presses_at_the_same_instant_start_one_import() -> None:
    """Both deliveries reach the import starter at once (the offline runtime runs them on two threads):
    the org-wide Sync Now slot, a DynamoDB conditional write, lets exactly one through."""
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=1), import_on_upload=False) as offline:
        offline.stage("roster.csv", ROSTER)
        offline.wait_idle()
        events = [offline.emulator.sync_now_event(offline.emulator.create_sync_process()) for _ in range(2)]
        start = threading.Barrier(len(events))

        def deliver(event: dict[str, object]) -> int:
            start.wait(timeout=10)
            return requests.post(offline.authorised_webhook_url, json=event, timeout=10).status_code

        answers: list[int] = []
        senders = [threading.Thread(target=lambda e=event: answers.append(deliver(e))) for event in events]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=30)
        assert answers == [202, 202]
        finals = [offline.wait_for_process(str(event["entityId"])) for event in events]
        assert sorted(process["status"] for process in finals) == ["DONE", "ERROR"]
        refused = next(process for process in finals if process["status"] == "ERROR")
        assert "Another sync is already running" in refused["message"]
        assert len(offline.emulator.uploads) == 1
        assert len(executions(offline)) == 1


def test_sync_now_for_an_unknown_process_starts_nothing(offline: Offline) -> None:
    offline.stage("roster.csv", ROSTER)
    offline.wait_idle()
    uploads = len(offline.emulator.uploads)
    fake = {"id": "ffffffffffffffffffffffff", "orgId": offline.org_id}
    event = offline.emulator.sync_now_event(fake)
    assert requests.post(offline.authorised_webhook_url, json=event, timeout=10).status_code == 202
    offline.wait_idle()
    assert len(offline.emulator.uploads) == uploads
