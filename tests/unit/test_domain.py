"""Pure domain rules: import options, progress bar, polling backoff, event recognition, S3 keys."""

from __future__ import annotations

import pytest

from people_sync import api_assumptions
from people_sync import progress as bar
from people_sync.errors import InvalidStagedFile
from people_sync.models import ImportOptions, ImportStatus, PollState
from people_sync.staging import staged_file_from_s3_record


def test_import_options_render_every_required_boolean() -> None:
    query = ImportOptions().to_query(parent_process_id=None)
    assert query == {
        "skipErrors": "true",
        "upsert": "true",
        "createGroups": "false",
        "disableSyncHireDate": "false",
        "disableOverwritePerson": "false",
        "importDryRun": "false",
    }


def test_import_options_from_ssm_json_shape() -> None:
    options = ImportOptions.model_validate(
        {
            "skipErrors": False,
            "upsert": True,
            "createGroups": True,
            "disableSyncHireDate": False,
            "disableOverwritePerson": True,
            "importDryRun": False,
            "notifyUserIds": " a, ,b ",
            "notifyAppName": "",
            "importSource": "people-sync",
        }
    )
    query = options.to_query(parent_process_id="p1")
    assert query["skipErrors"] == "false"
    assert query["disableOverwritePerson"] == "true"
    assert query["notifyUserIds"] == "a,b"
    assert "notifyAppName" not in query
    assert (query["importSource"], query["parentProcessId"]) == ("people-sync", "p1")


def test_sync_progress_maps_import_into_the_middle_span() -> None:
    assert bar.sync_progress(ImportStatus(state="pending")) == bar.ACCEPTED_PROGRESS
    assert bar.sync_progress(ImportStatus(state="running", progress=0.5)) == pytest.approx(0.5)
    assert bar.sync_progress(ImportStatus(state="running", progress=7)) == pytest.approx(0.95)
    assert bar.sync_progress(ImportStatus(state="done", progress=0.2)) == pytest.approx(0.95)


def test_only_forward_progress_is_worth_reporting() -> None:
    assert bar.worth_reporting(0.30, 0.20)
    assert not bar.worth_reporting(0.20, 0.20)
    assert not bar.worth_reporting(0.10, 0.20)
    assert not bar.worth_reporting(0.205, 0.20)


def poll(initial: int = 5, cap: int = 60) -> PollState:
    return PollState(wait_seconds=initial, initial_seconds=initial, max_seconds=cap, timeout_seconds=7200, started_at=0)


def test_waits_step_up_a_ladder_from_the_imports_age() -> None:
    ages = (0, 4, 5, 19, 20, 600, 1199, 1200, 2400, 3600)
    assert [bar.wait_for(poll(), now) for now in ages] == [5, 5, 15, 45, 60, 60, 60, 120, 240, 240]


def test_waits_are_never_shorter_than_a_second() -> None:
    assert bar.wait_for(poll(initial=1, cap=1), now=0) == 1
    assert bar.wait_for(poll(initial=1, cap=1), now=19) == 1
    assert bar.wait_for(poll(initial=1, cap=1), now=20) == 2


def test_next_poll_counts_the_check_and_records_when_it_ran() -> None:
    after = bar.next_poll(poll(), now=20)
    assert (after.attempt, after.wait_seconds, after.checked_at) == (1, 60, 20)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "process.create.people-sync"},
        {"type": "PROCESS.CREATE.People-Sync"},
        {"code": "process.create.people-sync", "type": "CREATE"},
        {"type": "CREATE", "entityType": "PROCESS", "appName": "people-sync"},
        {"code": "process.create", "entityType": "PROCESS", "subtype": "people-sync"},
    ],
)
def test_sync_now_event_spellings_are_recognised(event: dict[str, str]) -> None:
    assert api_assumptions.is_sync_now_event(event, "people-sync")


@pytest.mark.parametrize(
    "event",
    [
        {"type": "process.create.other-app"},
        {"type": "job.update"},
        {"type": "CREATE", "entityType": "JOB", "appName": "people-sync"},
        {"type": "CREATE", "entityType": "PROCESS", "appName": "other-app"},
        {"type": "process.update.people-sync"},
    ],
)
def test_other_events_are_not_sync_now(event: dict[str, str]) -> None:
    assert not api_assumptions.is_sync_now_event(event, "people-sync")


def test_emulator_event_shape_is_recognised_by_the_app() -> None:
    process = {"id": "p1"}
    event = api_assumptions.sync_now_event(
        event_id="e",
        org_id="o",
        app_id="a",
        app_name="people-sync",
        user_id="u",
        user_name="n",
        process=process,
        at="t",
    )
    assert api_assumptions.is_sync_now_event(event, "people-sync")
    assert event["entityId"] == "p1"


def test_s3_key_names_the_org() -> None:
    staged = staged_file_from_s3_record("b", "staging/acme/Roster 2026(1).csv", "v1", 10, prefix="staging/")
    assert (staged.org_id, staged.key, staged.name, staged.version_id) == (
        "acme",
        "staging/acme/Roster 2026(1).csv",
        "Roster 2026(1).csv",
        "v1",
    )


@pytest.mark.parametrize(
    "key",
    [
        "other/acme/roster.csv",
        "staging/roster.csv",
        "staging/acme/sub/roster.csv",
        "staging//roster.csv",
        "staging/acme/",
    ],
)
def test_keys_outside_the_layout_are_invalid(key: str) -> None:
    with pytest.raises(InvalidStagedFile):
        staged_file_from_s3_record("b", key, None, 1, prefix="staging/")


def test_an_orgs_further_target_folder_is_the_files_folder() -> None:
    folders = ("orgvue", "elma365")
    staged = staged_file_from_s3_record(
        "b", "staging/beta/orgvue/p.csv", "v1", 1, prefix="staging/", target_folders=folders
    )
    assert (staged.org_id, staged.name) == ("beta/orgvue", "p.csv")
    for key in ("staging/beta/sub/p.csv", "staging/orgvue/elma365/p.csv", "staging/beta/orgvue/x/p.csv"):
        with pytest.raises(InvalidStagedFile):
            staged_file_from_s3_record("b", key, None, 1, prefix="staging/", target_folders=folders)


def test_waits_past_the_cap_grow_with_elapsed_time_but_never_past_a_tenth_of_it() -> None:
    for age in range(0, 7200, 7):
        assert bar.wait_for(poll(), now=age) <= max(60, 0.1 * age), age


def test_completion_is_noticed_within_max_of_cap_and_a_tenth_of_the_duration() -> None:
    for duration in (10, 59, 61, 300, 601, 1800, 3600, 3601, 5000):
        state, now = poll(), 0.0
        while True:
            now += bar.wait_for(state, now)
            if now >= duration:
                break
        assert now - duration <= max(60, 0.1 * duration), duration
