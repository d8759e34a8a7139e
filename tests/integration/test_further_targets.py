"""Orgvue and ELMA365 through the same S3 drop and the real state machine, executed by moto against
their emulators (offline_environment(further_targets=True))."""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from offline.demo import orgvue_protocol
from offline.elma365_emulator import DEFAULT_DIRECTORY_ID, DIRECTORY_UPLOAD, IMPORT_STATUS, START_IMPORT, UPLOAD
from offline.elma365_emulator import ImportBehaviour as ElmaBehaviour
from offline.emulator_base import Fault
from offline.harness import Offline, offline_environment
from offline.orgvue_emulator import ImportBehaviour as OrgvueBehaviour
from offline.orgvue_emulator import OrgvueEmulator, OrgvueEmulatorConfig
from tools.people_sync_admin.cli import cli
from tools.people_sync_admin.stack import Deployment, from_offline_stack

pytestmark = pytest.mark.integration

ORGVUE_CSV = (
    b"_action,employeeID,fullName,positionTitle\n"
    b"create,1453878,John Smith,Engineer\n"
    b"create,1453974,Mary Jones,Consultant\n"
)
ELMA_HEADER = b"Employee ID,Full name,Department\n"


def roster_rows(count: int) -> bytes:
    return ELMA_HEADER + b"".join(b"E%06d,Person %d,Engineering\n" % (i, i) for i in range(count))


def finished(offline: Offline, target: str, timeout: float = 60.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sync's execution once it ended, and what its finalizer reported."""
    execution = offline.execution_for_file(target)
    ended = offline.wait_for_execution(execution["executionArn"], timeout=timeout)
    offline.wait_idle()
    outcomes = [i.result for i in offline.runtime.invocations_of("SyncFinalizerFunction") if i.result]
    return ended, outcomes[-1]


def execution_history(offline: Offline, execution_arn: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
    events: list[dict[str, Any]] = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]  # type: ignore[assignment]
    return events


def states_entered(offline: Offline, execution_arn: str, name: str) -> int:
    events = execution_history(offline, execution_arn)
    return sum(1 for e in events if e.get("stateEnteredEventDetails", {}).get("name") == name)


def assert_orgvue_contract(offline: Offline) -> None:
    """The import was a PUT with explicit deletion, uploads carried Content-Length, nothing was chunked, and the
    job was followed by its ticket or the callback."""
    assert offline.orgvue is not None
    [start] = offline.orgvue.calls_of("import")
    assert (start.method, start.status) == ("PUT", 202)
    assert start.query["implicitDelete"] == "false"
    assert offline.orgvue.uploads
    assert all(not upload.chunked and upload.content_length == upload.size for upload in offline.orgvue.uploads)
    assert offline.orgvue.chunked_requests() == []
    assert offline.orgvue.calls_of("ticket") or offline.orgvue.callbacks


def test_orgvue_demo_flow_puts_the_import_uploads_with_content_length_and_follows_the_ticket() -> None:
    """What `make demo TARGET=orgvue` runs: a file without `_action` (OrgvueDefaultAction), rewritten with a
    counted Content-Length, imported by PUT and followed through its job ticket or callback."""
    with offline_environment(
        further_targets=True,
        poll_initial_seconds=1,
        poll_max_seconds=1,
        extra_env={"ORGVUE_DEFAULT_ACTION": "create", "ORGVUE_ID_KEY": "employeeID"},
    ) as offline:
        assert offline.orgvue is not None
        offline.orgvue.import_behaviour = OrgvueBehaviour(duration_s=0.5)
        offline.stage("people.csv", b"employeeID,fullName\n1453878,John Smith\n1453974,Mary Jones\n", folder="orgvue")
        _, outcome = finished(offline, "orgvue", timeout=40)
        assert outcome["status"] == "DONE", outcome
        assert_orgvue_contract(offline)
        assert offline.orgvue.calls_of("import")[0].query["idKey"] == "employeeID"
        assert offline.orgvue.uploads[0].body.startswith(b"_action,employeeID,fullName\r\ncreate,1453878")
        assert "0 chunked requests" in orgvue_protocol(offline.orgvue)
        assert set(offline.orgvue.items) == {"1453878", "1453974"}


@pytest.fixture
def slow_polling() -> Iterator[Offline]:
    """Checks 30 s apart: anything that finishes in seconds was woken by a callback, not by polling."""
    with offline_environment(further_targets=True, poll_initial_seconds=30, poll_max_seconds=30) as offline:
        yield offline


def test_orgvue_callback_completes_the_wait_without_polling(slow_polling: Offline) -> None:
    offline = slow_polling
    assert offline.orgvue is not None
    offline.orgvue.import_behaviour = OrgvueBehaviour(duration_s=1.0)
    started = time.monotonic()
    offline.stage("people.csv", ORGVUE_CSV, folder="orgvue")
    execution, outcome = finished(offline, "orgvue", timeout=25)
    assert time.monotonic() - started < 20  # well inside the first 30 s wait
    assert execution["status"] == "SUCCEEDED"
    assert outcome["status"] == "DONE", outcome
    assert "2 created" in outcome["message"]
    [callback] = offline.orgvue.callbacks
    assert callback.status == 200
    assert offline.runtime.invocations_of("TargetCallbackFunction")[0].result["statusCode"] == 200
    assert set(offline.orgvue.items) == {"1453878", "1453974"}
    assert_orgvue_contract(offline)
    # the callback ended the wait: no wait ran out, and at most one check followed the start's wait
    history = execution_history(offline, execution["executionArn"])
    assert [event for event in history if event["type"] == "TaskTimedOut"] == []
    assert states_entered(offline, execution["executionArn"], "FollowImport") <= 2


def test_orgvue_import_failure_is_reported_and_the_file_kept(slow_polling: Offline) -> None:
    offline = slow_polling
    assert offline.orgvue is not None
    offline.orgvue.import_behaviour = OrgvueBehaviour(duration_s=0.5, fail_with="Property 'grade' is read-only")
    offline.stage("people.csv", ORGVUE_CSV, folder="orgvue")
    execution, outcome = finished(offline, "orgvue", timeout=25)
    assert execution["status"] == "SUCCEEDED"  # the workflow did its job: the sync is closed as ERROR
    assert outcome["status"] == "ERROR"
    assert "Orgvue could not import people.csv" in outcome["message"]
    assert "read-only" in outcome["message"]
    [report] = offline.failed_reports()
    assert report["code"] == "import-failed"
    assert offline.staged_keys() == []


def test_an_ambiguous_orgvue_import_put_is_not_repeated_and_the_sync_says_it_cannot_tell(
    slow_polling: Offline, caplog: pytest.LogCaptureFixture
) -> None:
    """Orgvue took the PUT but its answer was a 503: the import is not sent again (a second one would apply the
    file twice), and the sync does not invite a retry without checking the dataset first."""
    offline = slow_polling
    assert offline.orgvue is not None
    offline.orgvue.inject("import", Fault(status=503, after_effect=True))
    offline.stage("people.csv", ORGVUE_CSV, folder="orgvue")
    execution = offline.wait_for_execution(offline.execution_for_file("orgvue")["executionArn"], timeout=25)
    offline.wait_idle()
    assert execution["status"] == "SUCCEEDED"
    [closed] = [record for record in caplog.records if record.getMessage() == "sync finished"]
    assert getattr(closed, "status", None) == "ERROR"
    message = str(getattr(closed, "progress_message", ""))
    assert "Cannot tell whether Orgvue started the import of people.csv" in message
    assert "Check the dataset in Orgvue before staging the file again" in message
    assert "try again" not in message
    assert len(offline.orgvue.calls_of("import")) == 1
    assert offline.staged_keys() != []  # the file stays staged


def test_orgvue_callback_that_never_comes_falls_back_to_polling_the_result() -> None:
    with offline_environment(further_targets=True, poll_initial_seconds=1, poll_max_seconds=1) as offline:
        assert offline.orgvue is not None
        offline.orgvue.import_behaviour = OrgvueBehaviour(duration_s=0.5, send_callback=False)
        offline.stage("people.csv", ORGVUE_CSV, folder="orgvue")
        execution, outcome = finished(offline, "orgvue", timeout=40)
        assert outcome["status"] == "DONE", outcome
        assert offline.orgvue.callbacks == []
        assert offline.runtime.invocations_of("TargetCallbackFunction") == []
        assert_orgvue_contract(offline)
        assert offline.orgvue.calls_of("ticket") != []  # the check polled the job ticket
        # the waits ran out (Orgvue's 5 s minimum between checks) and a check read the result location
        history = execution_history(offline, execution["executionArn"])
        assert [event for event in history if event["type"] == "TaskTimedOut"] != []
        assert states_entered(offline, execution["executionArn"], "FollowImport") >= 2


def test_orgvue_file_without_action_column_is_refused_before_anything_is_sent() -> None:
    with offline_environment(further_targets=True) as offline:
        assert offline.orgvue is not None
        offline.stage("people.csv", b"employeeID,fullName\n1,Ada\n", folder="orgvue")
        offline.wait_idle()
        [report] = offline.failed_reports()
        assert report["code"] == "missing-action"
        assert offline.orgvue.imports == []


@pytest.fixture
def elma() -> Iterator[Offline]:
    with offline_environment(further_targets=True, poll_initial_seconds=1, poll_max_seconds=1) as offline:
        yield offline


def test_elma365_import_succeeds(elma: Offline) -> None:
    assert elma.elma365 is not None
    elma.elma365.import_behaviour = ElmaBehaviour(polls=2)
    elma.stage("roster.csv", roster_rows(25), folder="elma365")
    execution, outcome = finished(elma, "elma365")
    assert execution["status"] == "SUCCEEDED"
    assert outcome["status"] == "DONE", outcome
    assert elma.elma365.imported_rows() == 25
    # the status loop's checks keep to "no more than one status request a second": none was refused
    assert [call.status for call in elma.elma365.calls_of(IMPORT_STATUS)] == [200, 200]


@pytest.mark.parametrize("fault", [Fault(status=503, after_effect=True), Fault(reset=True, after_effect=True)])
def test_an_ambiguous_elma365_start_is_not_repeated_and_the_sync_says_it_cannot_tell(
    elma: Offline, caplog: pytest.LogCaptureFixture, fault: Fault
) -> None:
    """ELMA365 began the import but its answer was lost: starting again would import the rows twice, so the
    sync is closed saying it cannot tell, not inviting a blind retry."""
    assert elma.elma365 is not None
    elma.elma365.import_behaviour = ElmaBehaviour(polls=1)
    elma.elma365.inject(START_IMPORT, fault)
    elma.stage("roster.csv", roster_rows(25), folder="elma365")
    execution = elma.wait_for_execution(elma.execution_for_file("elma365")["executionArn"], timeout=25)
    elma.wait_idle()
    assert execution["status"] == "SUCCEEDED"
    [closed] = [record for record in caplog.records if record.getMessage() == "sync finished"]
    assert getattr(closed, "status", None) == "ERROR"
    message = str(getattr(closed, "progress_message", ""))
    assert "Cannot tell whether ELMA365 started the import of roster.csv" in message
    assert "try again" not in message
    assert len(elma.elma365.calls_of(START_IMPORT)) == 1


def test_elma365_import_failure_is_reported_with_its_reason(elma: Offline) -> None:
    assert elma.elma365 is not None
    elma.elma365.import_behaviour = ElmaBehaviour(polls=1, fail_with="Field 'Department' is required")
    elma.stage("roster.csv", roster_rows(5), folder="elma365")
    _, outcome = finished(elma, "elma365")
    assert outcome["status"] == "ERROR"
    assert "ELMA365 could not import roster.csv" in outcome["message"]
    assert "Department" in outcome["message"]


def test_elma365_blocked_then_succeeds(elma: Offline) -> None:
    assert elma.elma365 is not None
    elma.elma365.import_behaviour = ElmaBehaviour(polls=1)
    elma.elma365.block_next_starts(2)
    elma.stage("roster.csv", roster_rows(10), folder="elma365")
    _, outcome = finished(elma, "elma365")
    assert outcome["status"] == "DONE", outcome
    assert [start.outcome for start in elma.elma365.starts] == ["blocked", "blocked", "started"]
    assert elma.elma365.imported_rows() == 10


def test_elma365_imports_120000_rows_in_three_chunks_one_after_another(elma: Offline) -> None:
    assert elma.elma365 is not None
    elma.elma365.import_behaviour = ElmaBehaviour(polls=1)
    elma.stage("roster.csv", roster_rows(120_000), folder="elma365")
    _, outcome = finished(elma, "elma365", timeout=120)
    assert outcome["status"] == "DONE", outcome
    imports = elma.elma365.own_imports()
    assert [record.rows for record in imports] == [50_000, 50_000, 20_000]
    for earlier, later in itertools.pairwise(imports):
        assert earlier.finished_at is not None
        assert later.started_at >= earlier.finished_at  # never two at once
    assert elma.elma365.imported_rows() == 120_000
    # ELMA365 asks for no more than one status request a second
    checks = [call.at for call in elma.elma365.calls_of(IMPORT_STATUS)]
    assert len(checks) >= 3
    assert min(later - earlier for earlier, later in itertools.pairwise(checks)) >= 1.0


def test_elma365_blocked_with_a_409_waits_then_succeeds(elma: Offline) -> None:
    assert elma.elma365 is not None
    elma.elma365.import_behaviour = ElmaBehaviour(polls=1)
    elma.elma365.blocked_http_status = 409
    elma.elma365.block_next_starts(2)
    elma.stage("roster.csv", roster_rows(10), folder="elma365")
    _, outcome = finished(elma, "elma365")
    assert outcome["status"] == "DONE", outcome
    assert [start.outcome for start in elma.elma365.starts] == ["blocked", "blocked", "started"]
    assert elma.elma365.imported_rows() == 10


def test_elma365_with_a_directory_imports_120000_rows_in_one_import() -> None:
    parameters = {"Elma365DirectoryId": DEFAULT_DIRECTORY_ID}
    with offline_environment(
        further_targets=True, poll_initial_seconds=1, poll_max_seconds=1, parameters=parameters
    ) as offline:
        assert offline.elma365 is not None
        offline.elma365.import_behaviour = ElmaBehaviour(polls=2)
        offline.elma365.block_next_starts(1)
        offline.stage("roster.csv", roster_rows(120_000), folder="elma365")
        _, outcome = finished(offline, "elma365", timeout=120)
        assert outcome["status"] == "DONE", outcome
        [upload] = offline.elma365.uploads
        assert (upload.directory, upload.rows) == (DEFAULT_DIRECTORY_ID, 120_000)
        assert offline.elma365.calls_of(UPLOAD) == []  # no temporary file
        assert [call.status for call in offline.elma365.calls_of(DIRECTORY_UPLOAD)] == [200]
        assert [(start.hash, start.outcome) for start in offline.elma365.starts] == [
            (upload.hash, "blocked"),
            (upload.hash, "started"),
        ]
        assert [record.rows for record in offline.elma365.own_imports()] == [120_000]
        assert offline.elma365.imported_rows() == 120_000


def test_a_target_without_its_token_is_reported_in_charthop_and_the_file_kept() -> None:
    with offline_environment(further_targets=True) as offline:
        assert offline.orgvue is not None
        boto3.client("secretsmanager", region_name=offline.stack.region).put_secret_value(
            SecretId=offline.stack.physical["TargetTokensSecret"], SecretString='{"elma365": "x"}'
        )
        offline.stage("people.csv", ORGVUE_CSV, folder="orgvue")
        offline.wait_idle()
        [sync] = offline.sync_processes()
        process = offline.wait_for_process(sync["id"])
        assert process["status"] == "ERROR"
        assert 'No API token for orgvue: put it under "orgvue" in the secret' in process["message"]
        [report] = offline.failed_reports()
        assert report["code"] == "target-not-configured"
        assert offline.orgvue.calls == []
        assert offline.runtime.invocations_of("ImportStarterFunction")[0].error is None  # handled, not retried


# --- further targets per org (issue 13) -----------------------------------------------------------------

ORG_B = "org-beta"
ORG_C = "org-gamma"


def admin(offline: Offline, *args: str, input: str | None = None) -> str:
    """The operator's tool (`python -m tools.people_sync_admin orgs ...`) against the offline stack."""
    deployment = Deployment(from_offline_stack(offline.stack), boto3.Session())
    result = CliRunner().invoke(cli, ["orgs", *args], obj=deployment, input=input)
    assert result.exit_code == 0, result.output
    return result.output


def orgvue_syncs_ended(offline: Offline, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The first `count` status loops of Orgvue syncs (any org's), once all of them have ended."""
    sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
    deadline = time.monotonic() + timeout
    while True:
        executions = sfn.list_executions(stateMachineArn=offline.stack.state_machine_arn())["executions"]
        mine = [e for e in executions if e["name"].startswith("sync-orgvue-")]
        if len(mine) >= count and all(e["status"] != "RUNNING" for e in mine):
            offline.wait_idle()
            return [dict(e) for e in mine]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(mine)} Orgvue syncs, running: {[e['name'] for e in mine]}")
        time.sleep(0.1)


def dataset(tenant: str, token: str) -> OrgvueEmulator:
    """An Orgvue tenant of its own (its own dataset and API token), on its own loopback port."""
    return OrgvueEmulator(OrgvueEmulatorConfig(tenant_id=tenant, dataset_id=str(uuid.uuid4()), token=token))


def assert_only_own_token(orgvue: OrgvueEmulator) -> None:
    """Every call that carried a token carried this dataset's own, and nothing was refused for a token."""
    tokens = {call.authorization for call in orgvue.calls if call.authorization is not None}
    assert tokens == {f"Bearer {orgvue.config.token}"}, tokens
    assert [call for call in orgvue.calls if call.status in (401, 403)] == []


def test_two_orgs_feed_their_own_orgvue_datasets_each_with_its_own_token_set_with_the_admin_tool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stack's own org stages into staging/orgvue/ (the stack's dataset and TargetTokensSecret, as always);
    orgs beta and gamma, set up with `orgs set` and `orgs set-token --target orgvue`, stage into
    staging/<org>/orgvue/: each file reaches its org's own dataset with its org's own token, beta's with beta's
    import options (an _action added, idKey) over the stack's, and no request carries another org's token."""
    caplog.set_level(logging.INFO, logger="people_sync.progress")
    beta_token, gamma_token = "beta-orgvue-jwt-51c0de", "gamma-orgvue-jwt-0ff1ce"
    with (
        dataset("BETA_HR", beta_token) as beta_orgvue,
        dataset("GAMMA_HR", gamma_token) as gamma_orgvue,
        offline_environment(further_targets=True, poll_initial_seconds=1, poll_max_seconds=1) as offline,
    ):
        assert offline.orgvue is not None
        offline.add_org(ORG_B)
        offline.add_org(ORG_C)
        for org, orgvue in ((ORG_B, beta_orgvue), (ORG_C, gamma_orgvue)):
            address = [
                f"orgvue.baseUrl={orgvue.base_url}",
                f"orgvue.tenantId={orgvue.config.tenant_id}",
                f"orgvue.datasetId={orgvue.config.dataset_id}",
            ]
            options = ["orgvue.defaultAction=create", "orgvue.idKey=employeeID"] if org == ORG_B else []
            said = admin(offline, "set", org, "furtherTargets=orgvue", *address, *options)
            assert f"no orgvue token yet: `orgs set-token {org} --target orgvue`" in said
            stored = admin(offline, "set-token", org, "--target", "orgvue", input=f"{orgvue.config.token}\n")
            secret = f"{offline.stack.stack_name}/orgs/{org}/orgvue-token"
            assert f"created secret {secret}" in stored
            assert orgvue.config.token not in stored
            shown = json.loads(admin(offline, "show", org))["effective"]["orgvue"]
            assert (shown["baseUrl"], shown["datasetId"]) == (orgvue.base_url, orgvue.config.dataset_id)
            assert shown["tokenSecret"] == secret
            assert shown["stagedUnder"] == [f"staging/{org}/orgvue/"]
        ddb = boto3.client("dynamodb", region_name=offline.stack.region)
        registry = json.dumps(ddb.scan(TableName=offline.stack.physical["OrgTable"])["Items"])
        for token in (beta_token, gamma_token):
            assert token not in registry  # only the secret's name is in the org's entry

        offline.stage("people.csv", ORGVUE_CSV, folder="orgvue")
        offline.stage("people.csv", b"employeeID,fullName\nB-1,Beta One\nB-2,Beta Two\n", folder=f"{ORG_B}/orgvue")
        offline.stage("people.csv", b"_action,employeeID,fullName\ncreate,G-1,Gamma One\n", folder=f"{ORG_C}/orgvue")
        executions = orgvue_syncs_ended(offline, 3)

        assert {e["status"] for e in executions} == {"SUCCEEDED"}
        finals = {
            getattr(r, "sync_id", ""): r
            for r in caplog.records
            if r.name == "people_sync.progress" and r.getMessage() == "sync finished"
        }
        assert {getattr(r, "status", None) for r in finals.values()} == {"DONE"}, [
            getattr(r, "progress_message", "") for r in finals.values()
        ]
        # the sync ids (and so the execution names and loop items) name the org, beyond the stack's own
        assert sorted(sync_id.split("-", 2)[2:] for sync_id in finals) == [[], [ORG_B], [ORG_C]]
        assert sorted(getattr(r, "org_id", "-") for r in finals.values()) == ["-", ORG_B, ORG_C]
        assert sorted(e["name"].split("-", 3)[3:] for e in executions) == [[], [ORG_B], [ORG_C]]
        # each dataset got its own org's file, and only that
        assert set(offline.orgvue.items) == {"1453878", "1453974"}
        assert set(beta_orgvue.items) == {"B-1", "B-2"}
        assert set(gamma_orgvue.items) == {"G-1"}
        for orgvue in (offline.orgvue, beta_orgvue, gamma_orgvue):
            assert len(orgvue.imports) == 1
            assert_only_own_token(orgvue)
        # beta's options over the stack's: an _action column added and idKey sent; gamma keeps the stack's
        assert beta_orgvue.calls_of("import")[0].query["idKey"] == "employeeID"
        assert beta_orgvue.uploads[0].body.startswith(b"_action,employeeID,fullName\r\ncreate,B-1")
        assert gamma_orgvue.calls_of("import")[0].query["autoId"] == "true"
        # one import at a time is counted per dataset: three datasets, three queues
        queues = sorted(i["id"]["S"] for i in offline.sync_table_items() if i["id"]["S"].startswith("queue#orgvue#"))
        assert queues == sorted(
            f"queue#orgvue#{o.base_url.removeprefix('http://')}/{o.config.tenant_id}/{o.config.dataset_id}"
            for o in (offline.orgvue, beta_orgvue, gamma_orgvue)
        )
        assert offline.failed_reports() == []
        assert offline.sync_processes() == []  # Orgvue syncs are reported in logs, in no org's ChartHop


def test_a_file_in_the_orgvue_folder_of_an_org_that_does_not_feed_orgvue_is_moved_aside_with_a_report() -> None:
    """Beta feeds no further target: its staging/org-beta/orgvue/people.csv starts nothing, is moved to
    failed/_rejected/ with a report saying why, and beta's own ChartHop shows the refusal. Gamma feeds Orgvue
    (the stack's dataset) but has no Orgvue token of its own: the stack's token (TargetTokensSecret, the stack's
    own org's) is not used for it; its file is moved aside saying how to store gamma's token."""
    with offline_environment(further_targets=True) as offline:
        assert offline.orgvue is not None
        offline.add_org(ORG_B)
        offline.add_org(ORG_C)
        admin(offline, "set", ORG_C, "furtherTargets=orgvue")
        beta_key = offline.stage("people.csv", ORGVUE_CSV, folder=f"{ORG_B}/orgvue")
        gamma_key = offline.stage("people.csv", ORGVUE_CSV, folder=f"{ORG_C}/orgvue")
        offline.wait_idle()

        assert offline.orgvue.calls == []  # nothing reached Orgvue, with any token
        assert [e for e in executions(offline) if e.startswith("sync-orgvue-")] == []
        assert offline.staged_keys() == []
        reports = {report["file"].rsplit("/", 3)[-3]: report for report in offline.failed_reports()}
        beta, gamma = reports[ORG_B], reports[ORG_C]
        assert beta["code"] == "target-not-enabled"
        assert f"Org {ORG_B} does not feed Orgvue" in beta["message"]
        assert f"staging/{ORG_B}/orgvue/" in beta["message"]
        assert f"orgs set {ORG_B} furtherTargets=" in beta["message"]
        assert gamma["code"] == "target-not-configured"
        assert f"No API token for orgvue for org {ORG_C}" in gamma["message"]
        assert f"orgs set-token {ORG_C} --target orgvue" in gamma["message"]
        for report, key in ((beta, beta_key), (gamma, gamma_key)):
            assert report["file"] == f"s3://{offline.bucket}/{key}"
            assert report["movedTo"].startswith(f"s3://{offline.bucket}/failed/_rejected/")
            assert offline.read(report["movedTo"].split(f"s3://{offline.bucket}/", 1)[1]) == ORGVUE_CSV
        # each refusal is shown in its own org's ChartHop, never in another org's
        for org, code in ((ORG_B, "does not feed Orgvue"), (ORG_C, "No API token for orgvue")):
            [shown] = offline.sync_processes_of(org)
            assert offline.wait_for_process(str(shown["id"]))["status"] == "ERROR"
            assert code in offline.emulator.process(str(shown["id"]))["message"]
        assert offline.sync_processes_of(offline.org_id) == []

        # the operator stores gamma's token and stages its file again from failed/: it is imported now
        admin(offline, "set-token", ORG_C, "--target", "orgvue", input=f"{offline.orgvue.config.token}\n")
        moved = gamma["movedTo"].split(f"s3://{offline.bucket}/", 1)[1]
        assert f'stagedKey": "{gamma_key}"' in operator(offline, "failed", "retry", moved, "--json")
        [execution] = orgvue_syncs_ended(offline, 1)
        assert execution["status"] == "SUCCEEDED"
        assert execution["name"].endswith(f"-{ORG_C}")
        assert set(offline.orgvue.items) == {"1453878", "1453974"}


def operator(offline: Offline, *args: str) -> str:
    deployment = Deployment(from_offline_stack(offline.stack), boto3.Session())
    result = CliRunner().invoke(cli, list(args), obj=deployment)
    assert result.exit_code == 0, result.output
    return result.output


def executions(offline: Offline) -> list[str]:
    sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
    return [e["name"] for e in sfn.list_executions(stateMachineArn=offline.stack.state_machine_arn())["executions"]]
