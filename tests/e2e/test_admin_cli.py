"""The operator tool's `orgs` commands, end to end against the offline stack (template.yaml's resources in
moto) and a stand-in for ChartHop's app-install endpoints: what each command writes, that --dry-run writes
nothing, and that a token goes only into Secrets Manager (never into the table or the output)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws

from offline.aws_stack import OfflineStack
from people_sync.org_registry import NotServed, OrgConfig, OrgState, SettingsSource, resolve_org
from tests.app_installs_server import APP_ID, DEVELOPER_TOKEN, AppInstallsServer, Install
from tests.conftest import REPO_ROOT
from tools.people_sync_admin.cli import cli
from tools.people_sync_admin.stack import Deployment, StackTarget, from_offline_stack

STACK_ORG = "acme"
BETA_TOKEN = "beta-token-7f3a9c"


@dataclass
class Env:
    stack: OfflineStack
    deployment: Deployment
    installs: AppInstallsServer

    @property
    def target(self) -> StackTarget:
        return self.deployment.target

    def run(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, ["orgs", *args], obj=self.deployment, input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self.run(*args, input=input)
        assert result.exit_code == 0, result.output
        return result.output

    def refused(self, *args: str, input: str | None = None) -> str:
        result = self.run(*args, input=input)
        assert result.exit_code == 1, result.output
        return result.output

    def items(self) -> list[dict[str, Any]]:
        return list(self.deployment.client("dynamodb").scan(TableName=self.target.org_table)["Items"])

    def secrets(self) -> dict[str, str]:
        client = self.deployment.client("secretsmanager")
        values = {}
        for secret in client.list_secrets()["SecretList"]:
            value = client.get_secret_value(SecretId=secret["ARN"])["SecretString"]
            values[secret["Name"]] = values[secret["ARN"]] = value
        return values

    def snapshot(self) -> tuple[str, dict[str, str]]:
        return json.dumps(sorted(self.items(), key=lambda item: item["orgId"]["S"]), sort_keys=True), self.secrets()

    def listed(self) -> dict[str, dict[str, Any]]:
        return {org["orgId"]: org for org in json.loads(self.ok("list", "--json"))}


@pytest.fixture
def env() -> Iterator[Env]:
    installs = [
        Install("beta", "user-beta", BETA_TOKEN, {"createGroups": True, "requiredColumns": "Employee ID"}),
        Install("gamma", "user-gamma", "gamma-token-51c0de"),
        Install("delta", "user-delta", "delta-token-0ff", status="UNINSTALLED"),
    ]
    with AppInstallsServer(installs) as server, mock_aws():
        stack = OfflineStack(
            stack_name="people-sync-admin",
            parameters={
                "ChartHopOrgId": STACK_ORG,
                "ChartHopAppUserId": "user-acme",
                "ChartHopAppId": APP_ID,
                "ChartHopBaseUrl": server.base_url,
                "OrgvueBaseUrl": "http://orgvue.invalid",
                "RequiredColumns": "Employee ID,First Name",
            },
            secret_values={"ChartHopApiTokenSecret": DEVELOPER_TOKEN},
        ).deploy()
        yield Env(stack, Deployment(from_offline_stack(stack), boto3.Session()), server)


def test_the_offline_stack_names_what_the_tool_needs(env: Env) -> None:
    target = env.target
    assert target.org_table == env.stack.physical["OrgTable"]
    assert target.default_token_secret == env.stack.physical["ChartHopApiTokenSecret"]
    assert target.token_secret_prefix == "people-sync-admin/orgs/"
    assert (target.default_org_id, target.app_id, target.further_targets) == (STACK_ORG, APP_ID, ("orgvue",))


def test_a_fresh_stack_lists_its_own_org_served_from_the_stack_parameters(env: Env) -> None:
    table = env.ok("list")
    columns = [cell.strip() for cell in table.splitlines()[0].split("  ") if cell.strip()]
    assert columns == ["ORG", "STATE", "SERVED", "APP USER", "TOKEN SECRET", "SETTINGS FROM", "OVERRIDES"]
    assert table.splitlines()[1].split()[:4] == ["acme", "*", "active", "yes"]
    assert env.listed() == {
        STACK_ORG: {
            "orgId": STACK_ORG,
            "state": "active",
            "appUserId": "user-acme",
            "tokenSecret": "(stack secret)",
            "settingsSource": "stack",
            "settings": {},
            "served": True,
            "reason": "",
            "defaultOrg": True,
            "version": 0,
        }
    }
    assert env.items() == []


def test_adding_an_org_with_its_token_stores_the_token_only_in_its_secret(env: Env) -> None:
    output = env.ok("add", "beta", "--app-user-id", "user-beta", "--token-stdin", input=f"{BETA_TOKEN}\n")

    secret = "people-sync-admin/orgs/beta/charthop-token"
    assert f"created secret {secret} and stored the token in it" in output
    assert "register org beta (active, app user user-beta)" in output
    assert BETA_TOKEN not in output
    assert env.secrets()[secret] == BETA_TOKEN
    assert BETA_TOKEN not in json.dumps(env.items())
    [item] = env.items()
    assert item["tokenSecret"] == {"S": secret}
    beta = env.listed()["beta"]
    assert (beta["state"], beta["served"], beta["tokenSecret"]) == ("active", True, secret)
    assert "registered already" in env.refused("add", "beta", "--app-user-id", "user-beta")


def test_an_org_added_without_a_token_is_served_once_its_token_is_set(env: Env) -> None:
    output = env.ok("add", "beta", "--app-user-id", "user-beta")
    assert "not served until `orgs set-token beta`" in output
    assert env.listed()["beta"]["reason"] == "no-token"

    first = env.ok("set-token", "beta", input=f"{BETA_TOKEN}\n")
    second = env.ok("set-token", "beta", input="beta-token-rotated\n")

    secret = env.target.org_secret_name("beta")
    assert "created secret" in first
    assert f"point org beta at secret {secret}" in first
    assert second.strip() == f"stored the token in secret {secret}"
    for text in (first, second):
        assert BETA_TOKEN not in text
        assert "beta-token-rotated" not in text
    assert env.secrets()[secret] == "beta-token-rotated"
    assert "rotated" not in json.dumps(env.items())
    assert env.listed()["beta"]["served"] is True


def test_set_token_refuses_an_empty_token_and_an_unknown_org(env: Env) -> None:
    env.ok("add", "beta", "--app-user-id", "user-beta")
    assert "no token given" in env.refused("set-token", "beta", input="\n")
    assert "not registered" in env.refused("set-token", "stranger", input="x\n")


def test_the_stacks_own_org_keeps_using_the_stack_secret(env: Env) -> None:
    output = env.ok("set-token", STACK_ORG, input="new-stack-token\n")

    assert output.strip() == f"stored the token in secret {env.target.default_token_secret}"
    assert env.secrets()[env.target.default_token_secret] == "new-stack-token"
    assert env.items() == []  # still served from the stack's parameters alone


def test_pause_resume_and_remove_move_an_org_between_states_and_remove_keeps_its_files(env: Env) -> None:
    env.ok("add", "beta", "--app-user-id", "user-beta", "--token-stdin", input=f"{BETA_TOKEN}\n")
    s3 = env.deployment.client("s3")
    s3.put_object(Bucket=env.stack.bucket(), Key="staging/beta/roster.csv", Body=b"Employee ID\n1\n")

    assert "pause org beta (active -> paused)" in env.ok("pause", "beta")
    assert env.listed()["beta"]["reason"] == "paused"
    assert "is paused already" in env.ok("pause", "beta")
    assert "resume org beta (paused -> active)" in env.ok("resume", "beta")
    assert env.listed()["beta"]["served"] is True
    assert "staged files and its token secret are kept" in env.ok("remove", "beta")
    assert env.listed()["beta"]["reason"] == "uninstalled"
    assert "register it again" in env.refused("resume", "beta")

    assert s3.get_object(Bucket=env.stack.bucket(), Key="staging/beta/roster.csv")["Body"].read() == b"Employee ID\n1\n"
    assert env.secrets()[env.target.org_secret_name("beta")] == BETA_TOKEN
    assert "reinstall org beta" in env.ok("add", "beta", "--app-user-id", "user-beta-2")
    beta = env.listed()["beta"]
    assert (beta["state"], beta["appUserId"], beta["served"]) == ("active", "user-beta-2", True)


def test_pausing_the_stacks_own_org_gives_it_an_entry_that_stops_its_syncs(env: Env) -> None:
    env.ok("pause", STACK_ORG)

    acme = env.listed()[STACK_ORG]
    assert (acme["state"], acme["served"], acme["tokenSecret"]) == ("paused", False, "(stack secret)")
    env.ok("resume", STACK_ORG)
    resolved = resolve_org(STACK_ORG, registry=env.deployment.registry, defaults=env.deployment.stack_defaults())
    assert isinstance(resolved, OrgConfig)
    assert resolved.token_secret == env.target.default_token_secret


def test_settings_are_validated_merged_over_the_stack_defaults_and_can_be_unset(env: Env) -> None:
    env.ok("add", "beta", "--app-user-id", "user-beta", "--token-stdin", input=f"{BETA_TOKEN}\n")

    output = env.ok("set", "beta", "skipErrors=false", "requiredColumns=Employee ID", "furtherTargets=orgvue")
    assert "set requiredColumns: (stack default) -> Employee ID" in output
    assert "set skipErrors: (stack default) -> false" in output
    shown = json.loads(env.ok("show", "beta"))
    assert shown["effective"]["importOptions"]["skipErrors"] is False
    assert shown["effective"]["importOptions"]["upsert"] is True  # the stack's
    assert shown["effective"]["requiredColumns"] == ["Employee ID"]
    assert shown["effective"]["furtherTargets"] == ["orgvue"]
    stack_org = json.loads(env.ok("show", STACK_ORG))
    assert stack_org["effective"]["requiredColumns"] == ["Employee ID", "First Name"]

    before = env.snapshot()
    assert "unknown setting 'skipErors'" in env.refused("set", "beta", "skipErors=false")
    assert "skipErrors" in env.refused("set", "beta", "skipErrors=sometimes")
    assert "elma365 not configured in this deployment" in env.refused("set", "beta", "furtherTargets=elma365")
    assert "not key=value" in env.refused("set", "beta", "skipErrors")
    assert env.snapshot() == before

    assert "set skipErrors: false -> (stack default)" in env.ok("set", "beta", "--unset", "skipErrors")
    assert env.listed()["beta"]["settings"] == {"requiredColumns": ["Employee ID"], "furtherTargets": ["orgvue"]}
    assert "nothing to change" in env.ok("set", "beta", "requiredColumns=Employee ID")


def test_an_org_can_read_its_settings_from_its_configuration_page_in_charthop(env: Env) -> None:
    env.ok("add", "beta", "--app-user-id", "user-beta", "--token-stdin", input=f"{BETA_TOKEN}\n")
    env.ok("set", "beta", "importDryRun=true")

    output = env.ok("set", "beta", "--settings-from", "charthop")

    assert "read org beta's settings from charthop" in output
    shown = json.loads(env.ok("show", "beta"))
    assert shown["settingsSource"] == "charthop"
    assert shown["effective"]["importOptions"]["createGroups"] is True  # the admin's choice in ChartHop
    assert shown["effective"]["importOptions"]["importDryRun"] is False  # the registry's copy is not used
    assert shown["effective"]["requiredColumns"] == ["Employee ID"]
    assert env.installs.requests[-1] == ("/v1/app/org/beta/install/user-beta", BETA_TOKEN)  # with beta's own token


def test_an_orgs_further_target_token_goes_only_into_a_secret_of_its_own(env: Env) -> None:
    env.ok("add", "beta", "--app-user-id", "user-beta", "--token-stdin", input=f"{BETA_TOKEN}\n")

    output = env.ok("set-token", "beta", "--target", "orgvue", input="beta-orgvue-jwt\n")

    secret = "people-sync-admin/orgs/beta/orgvue-token"
    assert f"created secret {secret} and stored the token in it" in output
    assert f"point org beta's orgvue token at secret {secret}" in output
    assert "org beta does not feed orgvue yet" in output
    assert "beta-orgvue-jwt" not in output
    assert env.secrets()[secret] == "beta-orgvue-jwt"
    assert env.secrets()[env.target.org_secret_name("beta")] == BETA_TOKEN  # its ChartHop token is untouched
    assert "beta-orgvue-jwt" not in json.dumps(env.items())
    [item] = env.items()
    assert item["targetTokenSecrets"] == {"M": {"orgvue": {"S": secret}}}
    rotated = env.ok("set-token", "beta", "--target", "orgvue", input="beta-orgvue-jwt-2\n")
    assert rotated.strip().splitlines()[0] == f"stored the token in secret {secret}"
    assert env.secrets()[secret] == "beta-orgvue-jwt-2"
    # the stack's own org gets a secret of its own too (it then wins over TargetTokensSecret)
    env.ok("set-token", STACK_ORG, "--target", "orgvue", input="acme-orgvue-jwt\n")
    assert env.secrets()["people-sync-admin/orgs/acme/orgvue-token"] == "acme-orgvue-jwt"
    unknown = env.run("set-token", "beta", "--target", "workday", input="x\n")
    assert unknown.exit_code == 2
    assert "Invalid value for '--target'" in unknown.output


def test_an_orgs_further_targets_are_set_validated_shown_and_unset(env: Env) -> None:
    env.ok("add", "beta", "--app-user-id", "user-beta", "--token-stdin", input=f"{BETA_TOKEN}\n")
    elma = ["elma365.baseUrl=https://beta.elma365.example", "elma365.namespace=hr", "elma365.code=employees"]

    orgvue = ["orgvue.tenantId=BETA_HR", "orgvue.datasetId=beta-dataset"]
    output = env.ok("set", "beta", "furtherTargets=orgvue,elma365", *elma, *orgvue)

    assert "set elma365.baseUrl: (stack default) -> https://beta.elma365.example" in output
    assert "note: org beta has no elma365 token yet: `orgs set-token beta --target elma365`" in output
    effective = json.loads(env.ok("show", "beta"))["effective"]
    assert effective["furtherTargets"] == ["orgvue", "elma365"]
    assert effective["elma365"] == {
        "baseUrl": "https://beta.elma365.example",
        "namespace": "hr",
        "code": "employees",
        "chunkRows": 50000,
        "directoryId": "",
        "tokenSecret": "(none)",
        "stagedUnder": ["staging/beta/elma365/"],
    }
    assert effective["orgvue"]["baseUrl"] == "http://orgvue.invalid"  # the stack's OrgvueBaseUrl ...
    assert effective["orgvue"]["datasetId"] == "beta-dataset"  # ... with beta's dataset
    assert json.loads(env.ok("show", STACK_ORG))["effective"]["orgvue"]["stagedUnder"] == [
        "staging/orgvue/",
        "staging/acme/orgvue/",
    ]

    before = env.snapshot()
    assert "use https" in env.refused("set", "beta", "orgvue.baseUrl=http://orgvue.example.com")
    assert "not an Orgvue tenant id" in env.refused("set", "beta", "orgvue.tenantId=lower case")
    assert "not a dataset id" in env.refused("set", "beta", "orgvue.datasetId=../other")
    assert "elma365: set elma365.namespace" in env.refused("set", "beta", "--unset", "elma365.namespace")
    assert "orgvue.implicitDelete" in env.refused("set", "beta", "orgvue.implicitDelete=sometimes")
    assert "unknown setting 'orgvue.token'" in env.refused("set", "beta", "orgvue.token=secret")
    assert env.snapshot() == before

    env.ok("set", "beta", "furtherTargets=orgvue", "--unset", "elma365")
    assert env.listed()["beta"]["settings"] == {
        "furtherTargets": ["orgvue"],
        "orgvue.tenantId": "BETA_HR",
        "orgvue.datasetId": "beta-dataset",
    }
    assert "cannot be an org id" in env.refused("add", "orgvue", "--app-user-id", "u")


@pytest.mark.parametrize(
    "command",
    [
        ("add", "epsilon", "--app-user-id", "user-epsilon", "--token-stdin"),
        ("add", "gamma", "--app-user-id", "user-gamma"),
        ("set-token", "beta"),
        ("set-token", STACK_ORG),
        ("set-token", "beta", "--target", "orgvue"),
        ("set-token", STACK_ORG, "--target", "elma365"),
        ("set", "beta", "furtherTargets=orgvue", "orgvue.datasetId=ds-1", "orgvue.tenantId=BETA"),
        ("pause", "beta"),
        ("pause", STACK_ORG),
        ("resume", "paused-org"),
        ("remove", "beta"),
        ("set", "beta", "upsert=false", "--settings-from", "charthop"),
        ("sync-installs", "--fetch-tokens", "--mark-uninstalled"),
    ],
)
def test_a_dry_run_writes_nothing_and_says_what_it_would_do(env: Env, command: tuple[str, ...]) -> None:
    env.ok("add", "beta", "--app-user-id", "user-beta")
    env.ok("add", "paused-org", "--app-user-id", "user-p")
    env.ok("pause", "paused-org")
    before = env.snapshot()

    output = env.ok(*command, "--dry-run", input="a-token-nobody-reads\n")

    assert env.snapshot() == before
    assert "would" in output
    assert "a-token-nobody-reads" not in output


def test_sync_installs_registers_every_active_install_and_can_fetch_their_tokens(env: Env) -> None:
    env.ok("add", "old-org", "--app-user-id", "user-old")

    table = env.ok("sync-installs", "--fetch-tokens", "--mark-uninstalled")

    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert set(rows) == {"beta", "gamma", "old-org"}  # delta uninstalled the app in ChartHop
    assert "register, store its token" in rows["beta"]
    assert "uninstall" in rows["old-org"]
    for token in (BETA_TOKEN, "gamma-token-51c0de", DEVELOPER_TOKEN):
        assert token not in table
        assert token not in json.dumps(env.items())
    secrets = env.secrets()
    assert secrets[env.target.org_secret_name("beta")] == BETA_TOKEN
    assert secrets[env.target.org_secret_name("gamma")] == "gamma-token-51c0de"
    listed = env.listed()
    assert {org: (o["state"], o["served"]) for org, o in listed.items()} == {
        STACK_ORG: ("active", True),
        "beta": ("active", True),
        "gamma": ("active", True),
        "old-org": ("uninstalled", False),
    }
    assert {token for _, token in env.installs.requests} == {DEVELOPER_TOKEN}  # listed with the stack's token

    again = json.loads(env.ok("sync-installs", "--json"))
    assert [(row["orgId"], row["action"]) for row in again] == [
        ("beta", "registered already"),
        ("gamma", "registered already"),
    ]


def test_sync_installs_marks_no_org_uninstalled_from_a_truncated_listing(env: Env) -> None:
    """ChartHop may ignore getActiveAppInstalls' `from` (no such parameter in the App API spec): the listing then
    stops at the repeated page, and an org missing from it is not marked uninstalled; the row says why."""
    env.ok("add", "old-org", "--app-user-id", "user-old")
    env.installs.ignores_from = True

    rows = {row["orgId"]: row["action"] for row in json.loads(env.ok("sync-installs", "--mark-uninstalled", "--json"))}

    assert rows["beta"].startswith("register")
    assert rows["gamma"].startswith("register")
    assert rows["old-org"].startswith("not marked uninstalled: ChartHop's listing was incomplete")
    assert env.listed()["old-org"]["state"] == "active"


def test_sync_installs_can_mark_picked_up_orgs_as_configured_in_charthop(env: Env) -> None:
    env.ok("sync-installs", "--settings-from", "charthop", "--fetch-tokens")

    beta = env.deployment.registry.get("beta")
    assert beta is not None
    assert (beta.state, beta.settings_source) == (OrgState.ACTIVE, SettingsSource.CHARTHOP)


def test_sync_installs_with_a_token_that_may_not_list_installs_says_so(env: Env) -> None:
    output = env.refused("sync-installs", "--token-stdin", input=f"{BETA_TOKEN}\n")
    assert "HTTP 403" in output
    assert BETA_TOKEN not in output
    assert env.items() == []


# --- a deployed stack, found by name through CloudFormation ----------------------------------------

MINIMAL_STACK = {
    "Parameters": {
        "ChartHopOrgId": {"Type": "String"},
        "ChartHopAppUserId": {"Type": "String"},
        "ChartHopBaseUrl": {"Type": "String", "Default": "https://api.charthop.com"},
    },
    "Resources": {
        "OrgTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "orgId", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "orgId", "KeyType": "HASH"}],
            },
        },
        "SettingsParameter": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Name": {"Fn::Sub": "/${AWS::StackName}/settings"}, "Type": "String", "Value": "{}"},
        },
    },
    "Outputs": {
        "OrgTableName": {"Value": {"Ref": "OrgTable"}},
        "OrgTokenSecretPrefix": {"Value": {"Fn::Sub": "${AWS::StackName}/orgs/"}},
        # moto's CloudFormation creates no secrets: the test names one made beside the stack
        "ChartHopApiTokenSecretArn": {"Value": {"Fn::Sub": "${AWS::StackName}-ChartHopApiTokenSecret"}},
        "SettingsParameterName": {"Value": {"Ref": "SettingsParameter"}},
    },
}


def test_a_stack_named_on_the_command_line_is_found_through_its_cloudformation_outputs() -> None:
    with mock_aws():
        boto3.client("cloudformation").create_stack(
            StackName="prod-sync",
            TemplateBody=json.dumps(MINIMAL_STACK),
            Parameters=[
                {"ParameterKey": "ChartHopOrgId", "ParameterValue": "acme"},
                {"ParameterKey": "ChartHopAppUserId", "ParameterValue": "user-acme"},
            ],
        )
        runner = CliRunner()
        added = runner.invoke(cli, ["--stack", "prod-sync", "orgs", "add", "beta", "--app-user-id", "u"])
        listed = runner.invoke(cli, ["--stack", "prod-sync", "orgs", "list", "--json"])
        missing = runner.invoke(cli, ["--stack", "no-such-stack", "orgs", "list"])
        unnamed = runner.invoke(cli, ["orgs", "list"], env={"PEOPLE_SYNC_STACK": ""})

    assert added.exit_code == 0, added.output
    assert listed.exit_code == 0, listed.output
    orgs = {org["orgId"]: org for org in json.loads(listed.output)}
    assert set(orgs) == {"acme", "beta"}
    assert orgs["beta"]["reason"] == "no-token"
    assert missing.exit_code == 1
    assert "cannot read stack no-such-stack" in missing.output
    assert unnamed.exit_code == 2
    assert "--stack NAME" in unnamed.output


def test_a_stack_deployed_before_the_org_registry_is_refused_with_what_to_do() -> None:
    older = {**MINIMAL_STACK, "Outputs": {"ChartHopApiTokenSecretArn": {"Value": "a-secret"}}}
    with mock_aws():
        boto3.client("cloudformation").create_stack(
            StackName="old-sync",
            TemplateBody=json.dumps(older),
            Parameters=[
                {"ParameterKey": "ChartHopOrgId", "ParameterValue": "acme"},
                {"ParameterKey": "ChartHopAppUserId", "ParameterValue": "u"},
            ],
        )
        result = CliRunner().invoke(cli, ["--stack", "old-sync", "orgs", "list"])
    assert result.exit_code == 1
    assert "deploy this version of template.yaml first" in result.output


def test_the_tool_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.people_sync_admin", "orgs", "--help"],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": f"{REPO_ROOT / 'layers' / 'shared'}:{REPO_ROOT}", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for command in ("add", "list", "pause", "resume", "remove", "set", "set-token", "sync-installs"):
        assert f"  {command} " in result.stdout


def test_resolve_org_sees_what_the_tool_wrote(env: Env) -> None:
    env.ok("add", "beta", "--app-user-id", "user-beta", "--token-stdin", input=f"{BETA_TOKEN}\n")
    env.ok("set", "beta", "importOnUpload=false")
    env.ok("add", "gamma", "--app-user-id", "user-gamma")
    defaults = env.deployment.stack_defaults()

    beta = resolve_org("beta", registry=env.deployment.registry, defaults=defaults)
    gamma = resolve_org("gamma", registry=env.deployment.registry, defaults=defaults)
    stranger = resolve_org("stranger", registry=env.deployment.registry, defaults=defaults)

    assert isinstance(beta, OrgConfig)
    assert (beta.token_secret, beta.app_user_id, beta.settings.import_on_upload) == (
        env.target.org_secret_name("beta"),
        "user-beta",
        False,
    )
    assert beta.settings.required_columns == ("Employee ID", "First Name")  # the stack's RequiredColumns
    assert isinstance(gamma, NotServed)
    assert gamma.reason == "no-token"
    assert isinstance(stranger, NotServed)
    assert stranger.reason == "unknown"


def test_a_dry_run_of_sync_installs_fetches_no_token(env: Env) -> None:
    output = env.ok("sync-installs", "--fetch-tokens", "--dry-run")

    assert f"would fetch its token into {env.target.org_secret_name('beta')}" in output
    assert not [path for path, _ in env.installs.requests if path.endswith("/token")]


def test_an_entry_edited_by_hand_into_bad_settings_is_listed_as_misconfigured(env: Env) -> None:
    env.ok("add", "beta", "--app-user-id", "user-beta", "--token-stdin", input=f"{BETA_TOKEN}\n")
    env.deployment.client("dynamodb").update_item(
        TableName=env.target.org_table,
        Key={"orgId": {"S": "beta"}},
        UpdateExpression="SET settings = :bad",
        ExpressionAttributeValues={":bad": {"M": {"importOnUpload": {"S": "sometimes"}}}},
    )

    beta = env.listed()["beta"]
    assert (beta["served"], beta["reason"]) == (False, "misconfigured")
    assert "importOnUpload" in json.loads(env.ok("show", "beta"))["message"]


# --- a token ChartHop refused (issue 13: org_tokens.py marks the entry; the tool shows it, set-token clears it) ----


def test_a_refused_token_is_shown_by_list_and_show_and_cleared_by_set_token(env: Env) -> None:
    from people_sync.org_registry import OrgRegistry, TokenRefusal

    env.ok("add", "beta", "--app-user-id", "user-beta", "--token-stdin", input=f"{BETA_TOKEN}\n")
    registry = OrgRegistry(env.target.org_table, env.deployment.client("dynamodb"))
    refusal = TokenRefusal("2026-11-26T10:00:00Z", "read the process", "64b0c0ffee64b0c0ffee0a01", "HTTP 401")
    registry.mark_token_refused("beta", refusal)
    registry.mark_token_refused(
        STACK_ORG, TokenRefusal("2026-11-26T11:00:00Z", "create a sync process"), default_app_user_id="user-acme"
    )

    table = env.ok("list")
    assert (
        "! beta: token refused at 2026-11-26T10:00:00Z (read the process); sync process 64b0c0ffee64b0c0ffee0a01 "
        "was left open; run `orgs set-token beta`"
    ) in table
    assert "! acme: token refused at 2026-11-26T11:00:00Z (create a sync process); run `orgs set-token acme`" in table
    listed = env.listed()
    assert listed["beta"]["tokenRefused"]["operation"] == "read the process"
    assert listed[STACK_ORG]["appUserId"] == "user-acme"
    shown = json.loads(env.ok("show", "beta"))
    assert shown["attention"] == refusal.describe("beta")
    assert shown["tokenRefused"]["syncProcessId"] == "64b0c0ffee64b0c0ffee0a01"

    output = env.ok("set-token", "beta", input="beta-token-new\n")
    assert "clear the mark: token refused at 2026-11-26T10:00:00Z" in output
    assert "beta-token-new" not in output
    cleared = env.ok("set-token", STACK_ORG, input="stack-token-new\n")
    assert "clear the mark" in cleared
    assert "token refused" not in env.ok("list")
    assert "tokenRefused" not in json.loads(env.ok("show", "beta"))
    assert env.secrets()[env.target.default_token_secret] == "stack-token-new"
    assert "beta-token-new" not in json.dumps(env.items())
