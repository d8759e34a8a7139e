"""One stack, several orgs (issue 13): each org's syncs run with its own token, in its own ChartHop org, from its own
staging folder; an org the deployment does not sync for (unknown, paused, uninstalled) starts nothing.

The real state machine in moto, the real handlers, and a ChartHop emulator serving several orgs: each has its own
app token (a request for one org with another's token is 401) and sees only its own processes. Extra orgs are
registered the way an operator does it, with the admin tool's onboarding (the org's entry in the OrgTable, its
token in a secret of its own).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from click.testing import CliRunner

from offline.charthop_emulator import ImportBehaviour
from offline.harness import Offline, offline_environment
from tests.conftest import EVENTS
from tools.people_sync_admin.cli import cli
from tools.people_sync_admin.stack import Deployment, from_offline_stack

pytestmark = pytest.mark.integration
ROSTER = (EVENTS / "roster.csv").read_bytes()
ORG_B = "org-beta"
ORG_C = "org-gamma"


@pytest.fixture
def offline() -> Iterator[Offline]:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3)) as running:
        yield running


def wait_for_syncs(offline: Offline, org_id: str, count: int, timeout: float = 60.0) -> list[dict[str, object]]:
    """The org's first `count` sync processes, each once it is DONE or ERROR and its loop has ended."""
    deadline = time.monotonic() + timeout
    while len(offline.sync_processes_of(org_id)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{org_id} has {len(offline.sync_processes_of(org_id))} sync processes, not {count}")
        time.sleep(0.05)
    return [offline.wait_for_process(str(p["id"]), timeout) for p in offline.sync_processes_of(org_id)]


def assert_no_cross_org_call(offline: Offline) -> None:
    """Every request ChartHop got carried the token of the org its path names (or was refused for one)."""
    tokens = {f"Bearer {account.token}": org for org, account in offline.emulator.orgs.items()}
    for call in offline.emulator.calls:
        assert tokens.get(call.authorization, "?") == call.org, (call.operation, call.path, call.org)


def test_three_orgs_each_sync_by_upload_and_by_sync_now_in_their_own_org(offline: Offline) -> None:
    orgs = [offline.org_id, ORG_B, ORG_C]
    offline.add_org(ORG_B)
    offline.add_org(ORG_C)
    for org in orgs:
        offline.stage(f"roster-{org}.csv", ROSTER, folder=org)
    for org in orgs:
        [upload_sync] = wait_for_syncs(offline, org, 1)
        assert upload_sync["status"] == "DONE", (org, upload_sync)
        assert upload_sync["orgId"] == org
    pressed = {org: offline.emulator.press_sync_now(org_id=org) for org in orgs}
    for org in orgs:
        assert pressed[org]["status"] == 202, pressed[org]["body"]
        process = offline.wait_for_process(pressed[org]["process"]["id"])
        assert process["status"] == "DONE", (org, process)
        assert f"Imported roster-{org}.csv" in process["message"]
    offline.wait_idle()
    for org in orgs:
        uploads = offline.emulator.uploads_of(org)
        assert [upload.file_name for upload in uploads] == [f"roster-{org}.csv"] * 2  # upload, then Sync Now
        syncs = {str(p["id"]) for p in offline.sync_processes_of(org)}
        assert {upload.query["parentProcessId"] for upload in uploads} <= syncs  # imported under its own syncs
        # the sync processes are shown as the org's own app user
        assert {p["runUserId"] for p in offline.sync_processes_of(org) if p["id"] != pressed[org]["process"]["id"]} == {
            offline.emulator.orgs[org].app_user_id
        }
    assert_no_cross_org_call(offline)
    assert {call.org for call in offline.emulator.calls} == set(orgs)
    assert not [call for call in offline.emulator.calls if call.status == 401]


def test_a_file_under_bs_folder_never_reaches_a(offline: Offline) -> None:
    offline.add_org(ORG_B)
    offline.stage("only-for-beta.csv", ROSTER, folder=ORG_B)
    [sync] = wait_for_syncs(offline, ORG_B, 1)
    assert sync["status"] == "DONE"
    offline.wait_idle()
    assert [upload.file_name for upload in offline.emulator.uploads_of(ORG_B)] == ["only-for-beta.csv"]
    assert offline.emulator.uploads_of(offline.org_id) == []
    assert offline.sync_processes_of(offline.org_id) == []
    a_token = f"Bearer {offline.emulator.config.token}"
    assert [call.path for call in offline.emulator.calls if call.authorization == a_token] == []
    assert_no_cross_org_call(offline)
    # the sync's keys carry the org where they could collide: its turn in the import queue is B's
    queues = [item["id"]["S"] for item in offline.sync_table_items() if item["id"]["S"].startswith("queue#")]
    assert queues == [f"queue#charthop#{ORG_B}"]


def test_an_org_with_a_bad_token_fails_alone_while_the_others_sync() -> None:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3)) as offline:
        bad = "org-alpha"
        offline.add_org(bad, token="revoked-or-mistyped-token")
        offline.emulator.revoke_token(bad, mintable=False)  # and ChartHop cannot hand the app a fresh one
        offline.add_org(ORG_B)
        offline.add_org(ORG_C)
        for org in (bad, ORG_B, ORG_C):
            offline.stage("roster.csv", ROSTER, folder=org)
        for org in (ORG_B, ORG_C):
            [sync] = wait_for_syncs(offline, org, 1)
            assert sync["status"] == "DONE", (org, sync)
        offline.wait_idle()
        # ChartHop refused the bad org's token: nothing could be shown there, nothing was imported
        assert offline.sync_processes_of(bad) == []
        assert offline.emulator.uploads_of(bad) == []
        refused = [call for call in offline.emulator.calls if call.org == bad and call.operation != "getAccessToken"]
        assert refused
        assert {call.status for call in refused} == {401}
        assert {call.status for call in offline.emulator.calls_of("getAccessToken")} == {404}
        assert_no_cross_org_call_except_the_bad_token(offline, bad)
        # the failure is kept where an operator finds it: the failed-events queue, with the file still staged
        sqs = boto3.client("sqs", region_name=offline.stack.region)
        messages = sqs.receive_message(QueueUrl=offline.stack.physical["FailedEventsQueue"], MaxNumberOfMessages=10)
        [record] = [json.loads(message["Body"]) for message in messages["Messages"]]
        key = unquote_plus(record["requestPayload"]["Records"][0]["s3"]["object"]["key"])
        assert key == offline.staged_key("roster.csv", folder=bad)
        assert record["responsePayload"]["errorType"] == "ChartHopTokenRefused"
        assert offline.staged_key("roster.csv", folder=bad) in offline.staged_keys()
        # and the org's entry says so, for the operator tool (never the token)
        refusal = registry_entry(offline, bad)["tokenRefused"]["M"]
        # the last refused call: opening the sync, or (a retry) looking for the one an earlier attempt opened
        assert refusal["operation"]["S"] in ("create a sync process", "list processes")


def assert_no_cross_org_call_except_the_bad_token(offline: Offline, bad: str) -> None:
    """Every call carried the token of its org; the bad org's calls carried its own (wrong) token, no other org's."""
    good = {f"Bearer {account.token}": org for org, account in offline.emulator.orgs.items() if org != bad}
    for call in offline.emulator.calls:
        if call.operation == "getAccessToken":  # the stack's own org asking for the bad org's token: by design
            assert good.get(call.authorization) == offline.org_id
        elif call.org == bad:
            assert call.authorization not in good, (call.path, good.get(call.authorization))
        else:
            assert good.get(call.authorization) == call.org, (call.operation, call.path)


def test_a_paused_org_starts_nothing_and_its_file_stays_staged(offline: Offline) -> None:
    paused = "org-paused"
    offline.add_org(paused, state="paused")
    key = offline.stage("roster.csv", ROSTER, folder=paused)
    pressed = offline.emulator.press_sync_now(org_id=paused)
    offline.wait_idle()
    assert pressed["status"] == 200
    body = json.loads(pressed["body"])
    assert (body["action"], body["reason"], body["orgState"]) == ("ignored", "org-not-served", "paused")
    assert offline.staged_keys() == [key]  # kept where it was: a resume and a Sync Now import it
    assert offline.failed_reports() == []
    assert offline.emulator.uploads == []
    assert [p["status"] for p in offline.sync_processes_of(paused)] == ["PENDING"]  # only ChartHop's own process
    assert [call for call in offline.emulator.calls if call.org == paused] == []
    assert offline.runtime.invocations_of("ImportStarterFunction") != []  # the upload was seen ...
    assert executions(offline) == []  # ... and started nothing


def test_an_unknown_orgs_delivery_and_folder_start_nothing(offline: Offline) -> None:
    stranger = "org-not-registered"
    offline.emulator.add_org(stranger, token="a-token-this-deployment-never-got")
    pressed = offline.emulator.press_sync_now(org_id=stranger)
    assert pressed["status"] == 200
    body = json.loads(pressed["body"])
    assert (body["action"], body["orgId"], body["orgState"]) == ("ignored", stranger, "unknown")
    offline.wait_idle()
    assert offline.runtime.invocations_of("ImportStarterFunction") == []  # the webhook handed nothing on

    key = offline.stage("roster.csv", ROSTER, folder=stranger)
    offline.wait_idle()
    assert offline.emulator.uploads == []
    assert key not in offline.staged_keys()  # set aside in its own folder of failed/, with its report
    [report] = offline.failed_reports()
    assert (report["code"], report["orgReason"]) == ("org-not-served", "unknown")
    assert report["movedTo"].startswith(f"s3://{offline.bucket}/failed/{stranger}/")
    assert offline.read(report["movedTo"].split(f"s3://{offline.bucket}/", 1)[1]) == ROSTER
    assert offline.emulator.calls == []  # shown in no org's ChartHop: not the stranger's, not the stack's own
    assert executions(offline) == []


def test_an_uninstalled_orgs_staged_files_are_kept_and_nothing_syncs(offline: Offline) -> None:
    gone = "org-uninstalled"
    offline.add_org(gone, state="uninstalled")
    key = offline.stage("roster.csv", ROSTER, folder=gone)
    pressed = offline.emulator.press_sync_now(org_id=gone)
    offline.wait_idle()
    assert json.loads(pressed["body"])["orgState"] == "uninstalled"
    assert offline.staged_keys() == [key]
    assert offline.read(key) == ROSTER
    assert offline.failed_reports() == []
    assert offline.emulator.uploads == []
    assert [call for call in offline.emulator.calls if call.org == gone] == []
    assert executions(offline) == []


def test_an_orgs_settings_override_the_stacks_defaults_while_another_org_keeps_them() -> None:
    """The stack requires Employee ID and Work Email and imports with upsert (its defaults). Beta overrides
    its import options (upsert=false, createGroups=true, importSource) and its required columns (Cost Center
    instead): its file without Cost Center is refused, its file without Work Email is imported with its
    options. Gamma turns ImportOnUpload off: its upload waits for Sync Now. The stack's own org keeps the
    stack's defaults throughout: Work Email is required of it and its imports use the stack's options."""
    without_email = b"Employee ID,First Name,Last Name,Cost Center\nE1,Ada,Lovelace,CC-1\n"
    parameters = {"RequiredColumns": "Employee ID,Work Email", "ImportUpsert": "true", "ImportCreateGroups": "false"}
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), parameters=parameters) as offline:
        offline.add_org(ORG_B)
        offline.add_org(ORG_C)
        beta_settings = ["upsert=false", "createGroups=true", "importSource=beta-hr", "requiredColumns=Cost Center"]
        deployment = Deployment(from_offline_stack(offline.stack), boto3.Session())
        for org, settings in ((ORG_B, beta_settings), (ORG_C, ["importOnUpload=false"])):
            result = CliRunner().invoke(cli, ["orgs", "set", org, *settings], obj=deployment)
            assert result.exit_code == 0, result.output

        offline.stage("roster.csv", ROSTER, folder=ORG_B)  # no Cost Center: refused by beta's rule
        [refused] = wait_for_syncs(offline, ORG_B, 1)
        offline.stage("cost-centers.csv", without_email, folder=ORG_B)  # no Work Email: fine for beta
        offline.stage("without-email.csv", without_email, folder=offline.org_id)  # ... not for the stack's org
        offline.stage("roster.csv", ROSTER, folder=offline.org_id)
        gamma_key = offline.stage("roster.csv", ROSTER, folder=ORG_C)
        beta_syncs = wait_for_syncs(offline, ORG_B, 2)
        own_syncs = wait_for_syncs(offline, offline.org_id, 2)
        offline.wait_idle()

        # beta: its required columns, not the stack's
        assert refused["status"] == "ERROR"
        assert "roster.csv lacks the required columns Cost Center" in str(refused["message"])
        [imported] = [sync for sync in beta_syncs if sync["id"] != refused["id"]]
        assert imported["status"] == "DONE", imported
        [beta_upload] = offline.emulator.uploads_of(ORG_B)
        assert beta_upload.file_name == "cost-centers.csv"
        # ... and its import options over the stack's (the ones it does not set stay the stack's)
        assert (beta_upload.query["upsert"], beta_upload.query["createGroups"]) == ("false", "true")
        assert beta_upload.query["importSource"] == "beta-hr"
        assert beta_upload.query["skipErrors"] == "true"
        # the stack's own org: the stack's required columns and options
        messages = {str(sync["status"]): str(sync["message"]) for sync in own_syncs}
        assert "without-email.csv lacks the required columns Work Email" in messages["ERROR"]
        assert "Imported roster.csv" in messages["DONE"]
        [own_upload] = offline.emulator.uploads_of(offline.org_id)
        assert (own_upload.query["upsert"], own_upload.query["createGroups"]) == ("true", "false")
        assert own_upload.query["importSource"] == "people-sync"  # the stack's ImportSource
        # gamma: no ImportOnUpload, so its upload started nothing and waits, staged, for Sync Now
        assert offline.sync_processes_of(ORG_C) == []
        assert offline.emulator.uploads_of(ORG_C) == []
        assert gamma_key in offline.staged_keys()
        pressed = offline.emulator.press_sync_now(org_id=ORG_C)
        assert pressed["status"] == 202, pressed["body"]
        process = offline.wait_for_process(pressed["process"]["id"])
        assert process["status"] == "DONE", process
        [gamma_upload] = offline.emulator.uploads_of(ORG_C)
        assert gamma_upload.file_name == "roster.csv"
        assert (gamma_upload.query["upsert"], gamma_upload.query["createGroups"]) == ("true", "false")
        assert_no_cross_org_call(offline)


def executions(offline: Offline) -> list[str]:
    """The names of the status loops started so far."""
    sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
    return [e["name"] for e in sfn.list_executions(stateMachineArn=offline.stack.state_machine_arn())["executions"]]


# --- issue 13's last gaps: nothing about an org not served reaches another org; a refused token ------------------


class Metrics:
    """The per-org metrics the functions emit (sync_metrics.emit_for), recorded instead of printed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.emitted: list[tuple[str, str, str]] = []
        from people_sync import sync_metrics

        def record(target: str, org: str, name: str, value: float, *, unit: str | None = None) -> None:
            self.emitted.append((name, target, org))

        monkeypatch.setattr(sync_metrics, "emit_for", record, raising=False)

    def of(self, name: str) -> list[tuple[str, str]]:
        return [(target, org) for metric, target, org in self.emitted if metric == name]


def history_items(offline: Offline) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb", region_name=offline.stack.region)
    return list(ddb.scan(TableName=offline.stack.physical["SyncHistoryTable"])["Items"])


def log_records(caplog: pytest.LogCaptureFixture, message: str) -> list[object]:
    return [record for record in caplog.records if record.getMessage().startswith(message)]


@pytest.mark.parametrize("nested", [False, True], ids=["in-its-folder", "in-a-subfolder"])
@pytest.mark.parametrize("state", ["unknown", "paused", "uninstalled"])
def test_a_file_for_an_org_not_served_reaches_no_charthop_and_no_other_orgs_records(
    offline: Offline, state: str, nested: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is sent to any ChartHop org (the stack's own included, which is where the report of an unknown
    org's file used to land, naming the file), nothing is written to another org's sync history; an unknown
    org's file is moved to failed/<its folder>/ with its report, a paused or uninstalled org's stays staged (as
    the README promises). A log line names the folder and the reason, and UnservedOrgFiles counts it."""
    metrics = Metrics(monkeypatch)
    org = f"org-{state}"
    if state != "unknown":
        offline.add_org(org, state=state)
    name = "2026-11/roster.csv" if nested else "roster.csv"
    key = offline.stage(name, ROSTER, folder=org)
    offline.wait_idle()

    assert offline.emulator.calls == []  # no request to any org's ChartHop
    assert offline.sync_processes_of(offline.org_id) == []
    assert history_items(offline) == []
    assert executions(offline) == []
    [line] = [r for r in caplog.records if getattr(r, "folder", None) == org and getattr(r, "key", None) == key]
    assert getattr(line, "org_reason", None) == state
    assert metrics.of("UnservedOrgFiles") == [("charthop", "other" if state == "unknown" else org)]
    if state == "unknown":
        assert key not in offline.staged_keys()
        [report] = offline.failed_reports()
        assert (report["code"], report["orgReason"]) == ("org-not-served", "unknown")
        assert report["movedTo"].startswith(f"s3://{offline.bucket}/failed/{org}/")
        assert offline.read(report["movedTo"].split(f"s3://{offline.bucket}/", 1)[1]) == ROSTER
        assert line.levelname == "ERROR"  # type: ignore[attr-defined]
    else:
        assert offline.staged_keys() == [key]
        assert offline.failed_reports() == []


def test_a_sync_now_whose_token_charthop_refuses_gets_a_fresh_token_and_syncs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The org's token was revoked: the app asks ChartHop for the installed app's current token (getAccessToken,
    with the stack's own org's token), stores it in the org's secret and syncs as usual."""
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), import_on_upload=False) as offline:
        metrics = Metrics(monkeypatch)
        offline.add_org(ORG_B)
        offline.stage("roster.csv", ROSTER, folder=ORG_B)
        offline.emulator.revoke_token(ORG_B)
        pressed = offline.emulator.press_sync_now(org_id=ORG_B)
        process = offline.wait_for_process(pressed["process"]["id"])
        offline.wait_idle()

        assert process["status"] == "DONE", process
        assert [upload.file_name for upload in offline.emulator.uploads_of(ORG_B)] == ["roster.csv"]
        issued = offline.emulator.issued_tokens(ORG_B)
        assert len(issued) == 1  # once, however many calls were refused
        secret = boto3.client("secretsmanager", region_name=offline.stack.region).get_secret_value(
            SecretId=f"{offline.stack.stack_name}/orgs/{ORG_B}/charthop-token"
        )
        assert secret["SecretString"] == issued[0]
        [asked] = offline.emulator.calls_of("getAccessToken")
        assert asked.authorization == f"Bearer {offline.emulator.config.token}"  # the stack's own org asked
        entry = registry_entry(offline, ORG_B)
        assert "tokenRefused" not in entry
        assert int(entry["tokenExpiresAt"]["N"]) > int(entry["tokenIssuedAt"]["N"])
        b_calls = [call for call in offline.emulator.calls if call.org == ORG_B and call.operation != "getAccessToken"]
        assert {call.authorization for call in b_calls if call.status != 401} == {f"Bearer {issued[0]}"}
        assert metrics.of("OrgTokenRefreshed") == [("charthop", ORG_B)]
        assert metrics.of("OrgTokenRefused") == []


def test_a_sync_now_whose_token_is_refused_for_good_is_marked_holds_nothing_and_other_orgs_sync(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No fresh token can be had: the press stays PENDING (nothing can be written there), the org's entry says
    when, doing what and which process was left open, an ERROR line and OrgTokenRefused say so, no Sync Now slot
    or queue turn is held, the operator tool shows what to do, and another org's Sync Now runs as usual."""
    from tools.people_sync_admin.onboarding import Onboarding
    from tools.people_sync_admin.stack import Deployment, from_offline_stack

    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), import_on_upload=False) as offline:
        metrics = Metrics(monkeypatch)
        offline.add_org(ORG_B)
        offline.add_org(ORG_C)
        for org in (ORG_B, ORG_C):
            offline.stage("roster.csv", ROSTER, folder=org)
        offline.emulator.revoke_token(ORG_B, mintable=False)
        pressed = offline.emulator.press_sync_now(org_id=ORG_B)
        offline.wait_idle()

        sync_id = pressed["process"]["id"]
        assert offline.emulator.process(sync_id)["status"] == "PENDING"
        refusal = registry_entry(offline, ORG_B)["tokenRefused"]["M"]
        assert refusal["syncProcessId"] == {"S": sync_id}
        assert refusal["operation"] == {"S": "read the process"}
        assert offline.emulator.config.token not in json.dumps(registry_entry(offline, ORG_B))
        [error] = [r for r in log_records(caplog, "ChartHop refused the org's token") if r.org_id == ORG_B]  # type: ignore[attr-defined]
        assert (error.levelname, error.sync_process_id) == ("ERROR", sync_id)  # type: ignore[attr-defined]
        assert ("charthop", ORG_B) in metrics.of("OrgTokenRefused")
        held = [item["id"]["S"] for item in offline.sync_table_items()]
        assert not [key for key in held if key.startswith(("sync-now#", "queue#")) and ORG_B in key]
        assert [call.status for call in offline.emulator.calls_of("getAccessToken")] == [404]
        [view] = [
            v
            for v in Onboarding(Deployment(from_offline_stack(offline.stack), boto3.Session())).views()
            if v.org_id == ORG_B
        ]
        assert f"run `orgs set-token {ORG_B}`" in view.token_note

        other = offline.emulator.press_sync_now(org_id=ORG_C)
        assert offline.wait_for_process(other["process"]["id"])["status"] == "DONE"
        assert offline.emulator.uploads_of(ORG_B) == []


def test_fetched_tokens_are_refreshed_before_they_expire_in_a_warm_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens from getAccessToken live 6 s here. After the first Sync Now the warm container holds one; the second
    Sync Now comes once it has expired: the container fetches a fresh token before sending anything, so no call
    ever carries an expired token (ChartHop would refuse it), and each token is used only within its life."""
    life = 6
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.3), import_on_upload=False) as offline:
        offline.emulator.config.minted_token_seconds = life
        offline.add_org(ORG_B)
        offline.stage("roster.csv", ROSTER, folder=ORG_B)
        offline.emulator.revoke_token(ORG_B)
        first = offline.emulator.press_sync_now(org_id=ORG_B)
        assert offline.wait_for_process(first["process"]["id"])["status"] == "DONE"
        offline.wait_idle()
        last_issued = offline.emulator.calls_of("getAccessToken")[-1].at
        time.sleep(max(0.0, last_issued + life + 0.5 - time.monotonic()))  # the container's token has expired
        second = offline.emulator.press_sync_now(org_id=ORG_B)
        assert offline.wait_for_process(second["process"]["id"])["status"] == "DONE"
        offline.wait_idle()

        issued = offline.emulator.issued_tokens(ORG_B)
        asked = offline.emulator.calls_of("getAccessToken")
        assert len(issued) == len(asked) >= 2
        expiry = {f"Bearer {token}": call.at + life for token, call in zip(issued, asked, strict=True)}
        b_calls = [call for call in offline.emulator.calls if call.org == ORG_B and call.operation != "getAccessToken"]
        with_fetched = [call for call in b_calls if call.authorization in expiry]
        assert [call for call in with_fetched if call.status == 401] == []
        assert all(call.at < expiry[call.authorization] for call in with_fetched)
        second_calls = [call for call in with_fetched if call.at > last_issued + life]
        assert second_calls
        assert {call.authorization for call in second_calls} <= set(list(expiry)[1:])


def registry_entry(offline: Offline, org_id: str) -> dict[str, Any]:
    ddb = boto3.client("dynamodb", region_name=offline.stack.region)
    item: dict[str, Any] = ddb.get_item(TableName=offline.stack.physical["OrgTable"], Key={"orgId": {"S": org_id}})[
        "Item"
    ]  # type: ignore[assignment]
    return item


def test_a_token_refused_while_an_import_is_followed_is_recorded_and_frees_the_orgs_turn() -> None:
    """The org's token is revoked (no fresh one to be had) after its import started: the check and the close are
    refused, the org's entry names the sync, the finalizer says TOKEN_REFUSED instead of failing again and again,
    and the org's queue turn is free for its next file."""
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=3.0)) as offline:
        offline.add_org(ORG_B)
        offline.stage("roster.csv", ROSTER, folder=ORG_B)
        deadline = time.monotonic() + 30
        while not offline.emulator.uploads_of(ORG_B):
            assert time.monotonic() < deadline, "the import did not start"
            time.sleep(0.05)
        offline.emulator.revoke_token(ORG_B, mintable=False)
        [sync] = offline.sync_processes_of(ORG_B)
        deadline = time.monotonic() + 60
        while offline.execution_running(str(sync["id"])):
            assert time.monotonic() < deadline, "the status loop did not end"
            time.sleep(0.1)
        offline.wait_idle()

        refusal = registry_entry(offline, ORG_B)["tokenRefused"]["M"]
        assert refusal["syncProcessId"] == {"S": sync["id"]}
        finalized = [
            invocation.result
            for invocation in offline.runtime.invocations_of("SyncFinalizerFunction")
            if isinstance(invocation.result, dict) and invocation.result.get("status") == "TOKEN_REFUSED"
        ]
        assert finalized
        items = {item["id"]["S"]: item for item in offline.sync_table_items()}
        assert f"sync-now#{ORG_B}" not in items
        queue = items[f"queue#charthop#{ORG_B}"]  # the org's queue: nobody holds its turn, nobody waits
        assert "holder" not in queue
        assert not queue.get("waiting", {}).get("M")
        assert offline.staged_key("roster.csv", folder=ORG_B) in offline.staged_keys()  # not the file's fault
        assert offline.failed_reports() == []
