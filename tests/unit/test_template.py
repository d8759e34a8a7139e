"""template.yaml: least-privilege IAM and the wiring the offline stack relies on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from offline.aws_stack import REPO_ROOT, load_template

TEMPLATE = load_template()
FUNCTIONS = {name: res for name, res in TEMPLATE["Resources"].items() if res["Type"] == "AWS::Serverless::Function"}


def statements(policies: list[Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in policies:
        if isinstance(policy, dict) and "Statement" in policy:
            found.extend(policy["Statement"])
    return found


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_use_no_managed_or_wildcard_policies(name: str) -> None:
    policies = FUNCTIONS[name]["Properties"].get("Policies", [])
    assert not [policy for policy in policies if isinstance(policy, str)], "managed policies grant too much"
    for statement in statements(policies):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), statement
        assert statement["Resource"] != "*", statement


def test_only_the_functions_that_need_s3_writes_have_them() -> None:
    writers = {
        name
        for name, fn in FUNCTIONS.items()
        if any("s3:PutObject" in st["Action"] for st in statements(fn["Properties"].get("Policies", [])))
    }
    assert writers == {"ImportStarterFunction", "SyncFinalizerFunction"}


def test_webhook_can_only_invoke_the_import_starter_and_read_its_token() -> None:
    policies = FUNCTIONS["WebhookFunction"]["Properties"]["Policies"]
    kinds = sorted(next(iter(policy)) for policy in policies)
    assert kinds == ["AWSSecretsManagerGetSecretValuePolicy", "LambdaInvokePolicy"]


def test_state_machine_has_an_overall_timeout_and_catches_everything() -> None:
    definition = json.loads((REPO_ROOT / "statemachine" / "sync_status.asl.json").read_text())
    assert definition["TimeoutSeconds"] >= int(TEMPLATE["Parameters"]["ImportTimeoutSeconds"]["MaxValue"])
    for name, state in definition["States"].items():
        if state["Type"] == "Task":
            assert any("States.ALL" in catch["ErrorEquals"] for catch in state["Catch"]), name


def test_async_functions_keep_failed_events() -> None:
    for name in ("ImportStarterFunction", "SyncFinalizerFunction"):
        config = FUNCTIONS[name]["Properties"]["EventInvokeConfig"]
        assert config["DestinationConfig"]["OnFailure"]["Type"] == "SQS"


def test_bucket_is_versioned_encrypted_private_and_tls_only() -> None:
    bucket = TEMPLATE["Resources"]["StagingBucket"]["Properties"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    [statement] = TEMPLATE["Resources"]["StagingBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_the_loops_functions_may_answer_its_task_tokens_and_only_for_it() -> None:
    machine_name = TEMPLATE["Resources"]["SyncStatusStateMachine"]["Properties"]["Name"]
    answering = {}
    for name, fn in FUNCTIONS.items():
        for policy in fn["Properties"].get("Policies", []):
            if isinstance(policy, dict) and "StepFunctionsCallbackPolicy" in policy:
                answering[name] = policy["StepFunctionsCallbackPolicy"]["StateMachineName"]
    assert answering == {"StatusCheckerFunction": machine_name, "TargetCallbackFunction": machine_name}


def test_the_loop_waits_on_a_task_token_for_the_wait_from_its_input() -> None:
    definition = json.loads((REPO_ROOT / "statemachine" / "sync_status.asl.json").read_text())
    follow = definition["States"]["FollowImport"]
    assert follow["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert follow["TimeoutSecondsPath"] == "$.poll.waitSeconds"
    [timeout_catch] = [c for c in follow["Catch"] if c["ErrorEquals"] == ["States.Timeout"]]
    assert timeout_catch["Next"] == "FollowImport"  # a wait that ran out is one transition, back into the task
    assert int(TEMPLATE["Parameters"]["PollInitialSeconds"]["MinValue"]) >= 1  # a task timeout is at least 1 s


def test_the_finalizer_may_write_row_error_reports_and_only_put_them() -> None:
    policies = FUNCTIONS["SyncFinalizerFunction"]["Properties"]["Policies"]
    [statement] = [st for st in statements(policies) if st.get("Sid") == "WriteRowErrorReports"]
    assert statement["Action"] == ["s3:PutObject"]
    [resource] = statement["Resource"]
    assert resource["Fn::Sub"].endswith("/reports/*")
    # reports/ is outside the staging prefix, so a report never triggers an import
    assert TEMPLATE["Parameters"]["StagingPrefix"]["Default"] != "reports/"


def test_import_after_dry_run_is_a_parameter_that_reaches_the_settings() -> None:
    parameter = TEMPLATE["Parameters"]["ImportAfterDryRun"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("false", ["true", "false"])
    settings = TEMPLATE["Resources"]["SettingsParameter"]["Properties"]["Value"]["Fn::Sub"][0]
    assert '"importAfterDryRun": ${ImportAfterDryRun}' in settings


def test_orgvue_import_choices_are_stack_parameters_with_safe_defaults() -> None:
    parameters = TEMPLATE["Parameters"]
    implicit = parameters["OrgvueImplicitDelete"]
    assert (implicit["Default"], implicit["AllowedValues"]) == ("false", ["false", "true"])
    assert "DELETES" in implicit["Description"]  # turning it on is loud
    date_format = parameters["OrgvueDateFormat"]
    assert date_format["Default"] == "YYYY-MM-DD"
    assert date_format["AllowedValues"] == ["YYYY-MM-DD", "DD/MM/YYYY", "MM/DD/YYYY"]
    assert parameters["OrgvueIdKey"]["Default"] == ""
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["ORGVUE_IMPLICIT_DELETE"] == {"Ref": "OrgvueImplicitDelete"}
    assert env["ORGVUE_DATE_FORMAT"] == {"Ref": "OrgvueDateFormat"}
    assert env["ORGVUE_ID_KEY"] == {"Ref": "OrgvueIdKey"}
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = {name for group in groups for name in group["Parameters"]}
    assert {"OrgvueImplicitDelete", "OrgvueDateFormat", "OrgvueIdKey"} <= grouped


def test_orgvue_settings_are_read_from_the_environment() -> None:
    from people_sync.config import AppSettings

    base = {"CHARTHOP_ORG_ID": "o", "CHARTHOP_APP_NAME": "a", "CHARTHOP_TOKEN_SECRET": "t", "SETTINGS_PARAMETER": "p"}
    defaults = AppSettings.from_env(base)
    assert (defaults.orgvue_implicit_delete, defaults.orgvue_id_key, defaults.orgvue_date_format) == (
        False,
        "",
        "YYYY-MM-DD",
    )
    chosen = AppSettings.from_env(
        {**base, "ORGVUE_IMPLICIT_DELETE": "true", "ORGVUE_ID_KEY": "employeeID", "ORGVUE_DATE_FORMAT": "DD/MM/YYYY"}
    )
    assert (chosen.orgvue_implicit_delete, chosen.orgvue_id_key, chosen.orgvue_date_format) == (
        True,
        "employeeID",
        "DD/MM/YYYY",
    )


def test_elma365_directory_id_is_an_optional_parameter_every_function_gets() -> None:
    from people_sync.config import AppSettings

    parameter = TEMPLATE["Parameters"]["Elma365DirectoryId"]
    assert (parameter["Type"], parameter["Default"]) == ("String", "")
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    [group] = [g for g in groups if "Elma365DirectoryId" in g["Parameters"]]
    assert group["Label"]["default"] == "Further targets (optional)"
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["ELMA365_DIRECTORY_ID"] == {"Ref": "Elma365DirectoryId"}
    base = {"CHARTHOP_ORG_ID": "o", "CHARTHOP_APP_NAME": "a", "CHARTHOP_TOKEN_SECRET": "s", "SETTINGS_PARAMETER": "p"}
    assert AppSettings.from_env(base).elma365_directory_id == ""
    assert AppSettings.from_env({**base, "ELMA365_DIRECTORY_ID": " dir-1 "}).elma365_directory_id == "dir-1"
