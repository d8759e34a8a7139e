"""Routing of staged files to targets, signed callback URLs, the callback route and the log reporter."""

from __future__ import annotations

import dataclasses
import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from people_sync import callbacks, routing
from people_sync.config import AppSettings
from people_sync.targets.log_reporter import LogProgressReporter
from tests.fakes import app_settings

ORG = "588f7ee98f138b19220041a7"
BASE = app_settings(org_id=ORG)
ALL = dataclasses.replace(BASE, orgvue_base_url="https://orgvue", elma365_base_url="https://acme.elma365.com")


@pytest.mark.parametrize(
    ("key", "settings", "target"),
    [
        (f"staging/{ORG}/roster.csv", BASE, "charthop"),
        ("staging/orgvue/people.csv", ALL, "orgvue"),
        ("staging/elma365/roster.csv", ALL, "elma365"),
        ("staging/orgvue/people.csv", BASE, "charthop"),  # Orgvue not configured: ChartHop's flow refuses it
        ("staging/other/roster.csv", ALL, "charthop"),
        ("elsewhere/orgvue/people.csv", ALL, "charthop"),
        # an org's own further-target folders: its settings (not the stack's parameters) say whether it feeds them
        ("staging/org-beta/orgvue/people.csv", BASE, "orgvue"),
        ("staging/org-beta/elma365/roster.csv", ALL, "elma365"),
        (f"staging/{ORG}/orgvue/people.csv", ALL, "orgvue"),
        ("staging/org-beta/sub/roster.csv", ALL, "charthop"),  # not a target's folder: ChartHop's flow refuses it
        ("staging/orgvue/elma365/roster.csv", ALL, "orgvue"),  # the stack's orgvue/ folder has no sub-folders
        ("staging/org-beta/orgvue/", ALL, "charthop"),  # a folder marker, not a file
    ],
)
def test_the_staging_folder_names_the_target(key: str, settings: AppSettings, target: str) -> None:
    assert routing.target_for_key(key, settings) == target


@pytest.mark.parametrize(
    ("key", "org"),
    [
        ("staging/org-beta/roster.csv", "org-beta"),
        ("staging/org-beta/orgvue/people.csv", "org-beta"),
        ("staging/org-beta/elma365/roster.csv", "org-beta"),
        ("staging/orgvue/people.csv", None),  # the stack's own org's Orgvue folder
        ("staging/org-beta/sub/roster.csv", "org-beta"),  # refused in its own org, never another's
        ("staging/roster.csv", None),
    ],
)
def test_the_folder_names_the_org(key: str, org: str | None) -> None:
    assert routing.org_for_key(key, ALL) == org


def test_the_stacks_own_org_reads_its_further_targets_from_both_folders_another_org_from_its_own() -> None:
    assert routing.folders_of_target("orgvue", ALL) == ("orgvue", f"{ORG}/orgvue")
    assert routing.folders_of_target("orgvue", ALL, "org-beta") == ("org-beta/orgvue",)
    assert routing.folder_of_target("elma365", ALL, "org-beta") == "org-beta/elma365"
    assert routing.folder_of_target("charthop", ALL, "org-beta") == "org-beta"


def test_log_reporter_ids_of_another_org_name_it_after_the_part_that_tells_syncs_apart() -> None:
    own, beta = LogProgressReporter("orgvue"), LogProgressReporter("orgvue", org_id="org-beta")
    source = "s3://b/staging/org-beta/orgvue/people.csv"
    assert beta.start_sync("people.csv", source, "v1") == f"{own.start_sync('people.csv', source, 'v1')}-org-beta"
    long_org = LogProgressReporter("orgvue", org_id="o" * 128)
    first = long_org.start_sync("people.csv", source, "v1")
    second = long_org.start_sync("people.csv", source, "v2")
    assert f"sync-{first}"[:80] != f"sync-{second}"[:80]  # execution names, cut to 80, still differ


def test_only_configured_targets_are_offered_as_places_to_stage() -> None:
    assert routing.staging_folders(BASE) == [f"staging/{ORG}/"]
    assert routing.staging_folders(ALL) == [f"staging/{ORG}/", "staging/orgvue/", "staging/elma365/"]


def test_callback_urls_name_the_sync_and_carry_a_signature_only_its_key_makes() -> None:
    url = callbacks.callback_url("https://api.example/Prod/callback/orgvue", "sync-1", "key-1")
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    assert query["sync"] == "sync-1"
    assert callbacks.is_signed("sync-1", query["sig"], "key-1")
    assert not callbacks.is_signed("sync-2", query["sig"], "key-1")  # another sync
    assert not callbacks.is_signed("sync-1", query["sig"], "key-2")  # another deployment
    assert not callbacks.is_signed("sync-1", None, "key-1")
    assert not callbacks.is_signed("sync-1", query["sig"], "")
    assert "&sync=" in callbacks.callback_url("https://x/cb?a=1", "s", "k")


def test_log_reporter_ids_are_stable_per_object_version_and_name_the_target(caplog) -> None:
    reporter = LogProgressReporter("orgvue")
    first = reporter.start_sync("people.csv", "s3://b/staging/orgvue/people.csv", "v1")
    assert first == reporter.start_sync("people.csv", "s3://b/staging/orgvue/people.csv", "v1")
    assert first != reporter.start_sync("people.csv", "s3://b/staging/orgvue/people.csv", "v2")
    assert first.startswith("orgvue-")
    assert len(f"sync-{first}") <= 80  # a valid execution name
    caplog.set_level(logging.INFO, logger="people_sync.progress")
    reporter.report_progress(first, 0.5, "people.csv: Orgvue is importing (50%)")
    assert not reporter.is_closed(first)
    reporter.finish(first, succeeded=False, message="Orgvue could not import people.csv", results={}, summary="")
    assert reporter.is_closed(first)
    records = [r for r in caplog.records if getattr(r, "sync_id", None) == first]
    assert [getattr(r, "progress", None) for r in records] == [0.5, None]
    assert records[-1].levelno == logging.ERROR
    assert json.dumps(records[-1].__dict__.get("results")) == "{}"
