"""template.yaml: least-privilege IAM and the wiring the offline stack relies on."""

from __future__ import annotations

import json
import re
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
    # the checker and the callback end a check's wait; the import starter and the finalizer close syncs, which
    # wakes the next file's parked start (WaitForTurn), and the import starter wakes its own when the turn is free
    assert answering == {
        "StatusCheckerFunction": machine_name,
        "TargetCallbackFunction": machine_name,
        "ImportStarterFunction": machine_name,
        "SyncFinalizerFunction": machine_name,
    }


def test_the_loop_waits_on_a_task_token_for_the_wait_from_its_input() -> None:
    definition = json.loads((REPO_ROOT / "statemachine" / "sync_status.asl.json").read_text())
    follow = definition["States"]["FollowImport"]
    assert follow["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert follow["TimeoutSecondsPath"] == "$.poll.waitSeconds"
    [timeout_catch] = [c for c in follow["Catch"] if c["ErrorEquals"] == ["States.Timeout"]]
    assert timeout_catch["Next"] == "FollowImport"  # a wait that ran out is one transition, back into the task
    assert int(TEMPLATE["Parameters"]["PollInitialSeconds"]["MinValue"]) >= 1  # a task timeout is at least 1 s


def test_a_queued_start_parks_on_a_task_token_and_asks_again_when_its_wait_runs_out() -> None:
    definition = json.loads((REPO_ROOT / "statemachine" / "sync_status.asl.json").read_text())
    park = definition["States"]["WaitForTurn"]
    assert park["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert park["Parameters"]["FunctionName"] == "${ImportStarterFunctionArn}"
    assert park["Parameters"]["Payload"] == {"awaitTurn.$": "$", "taskToken.$": "$$.Task.Token"}
    assert park["TimeoutSecondsPath"] == "$.queueWaitSeconds"
    assert park["ResultPath"] is None  # woken or not, the start asks again with the data it had
    assert park["Next"] == "StartImport"
    catches = {tuple(c["ErrorEquals"]): c for c in park["Catch"]}
    assert catches[("States.Timeout",)]["Next"] == "StartImport"
    failed = definition["States"][catches[("States.ALL",)]["Next"]]  # a park that fails waits, then asks again
    assert (failed["Type"], failed["SecondsPath"], failed["Next"]) == ("Wait", "$.queueWaitSeconds", "StartImport")


def test_throttled_loop_tasks_are_retried_for_minutes_not_seconds() -> None:
    """A flood of uploads fills the import starter's reserved concurrency for a while (each upload's trigger and
    its loop's first task): a loop task throttled meanwhile must not end its sync ERROR after a few seconds."""
    definition = json.loads((REPO_ROOT / "statemachine" / "sync_status.asl.json").read_text())
    for name in ("StartImport", "WaitForTurn", "FollowImport"):
        retries = definition["States"][name]["Retry"]
        [retry] = [r for r in retries if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
        delays = [
            min(retry["IntervalSeconds"] * retry["BackoffRate"] ** attempt, retry.get("MaxDelaySeconds", 1e9))
            for attempt in range(retry["MaxAttempts"])
        ]
        assert sum(delays) >= 300, (name, delays)


def test_the_loops_time_limit_is_the_one_the_code_plans_a_queued_start_by() -> None:
    from people_sync.sync_service import LOOP_TIME_LIMIT_SECONDS, START_AND_CLOSE_SECONDS

    definition = json.loads((REPO_ROOT / "statemachine" / "sync_status.asl.json").read_text())
    assert definition["TimeoutSeconds"] == LOOP_TIME_LIMIT_SECONDS
    # even at the longest import timeout, a queued start may wait hours and still import and close in time
    longest = int(TEMPLATE["Parameters"]["ImportTimeoutSeconds"]["MaxValue"])
    assert LOOP_TIME_LIMIT_SECONDS - longest - START_AND_CLOSE_SECONDS >= 3 * 3600


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


# --- issue 14: least privilege by action and prefix, retention, limits, alarms that notify -----------------------

BUCKET_ARN = "arn:${AWS::Partition}:s3:::${AWS::StackName}-staging-${AWS::AccountId}-${AWS::Region}"
STAGED = "bucket/${StagingPrefix}*"
FAILED = "bucket/failed/*"
#: Powertools idempotency (import starter) and the sync table's stores: loop memory, start journal and target
#: queues (UpdateItem), slots (PutItem, DeleteItem), reads and the further targets' closed marks (GetItem, PutItem).
ITEM_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
#: Exactly what each handler reaches in people_sync: staging.py lists (Sync Now), heads and reads the exact
#: version; quarantine() copies it to failed/ (read + PutObject), writes the report there and deletes the staged
#: key. The status checker re-reads the staged file for ELMA365's further chunks; the callback only stores.
EXPECTED_DATA_ACCESS: dict[str, set[tuple[str, str]]] = {
    "WebhookFunction": set(),
    "ImportStarterFunction": {
        ("s3:ListBucket", "bucket"),
        *{(action, STAGED) for action in ("s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject")},
        ("s3:PutObject", FAILED),
        *{(action, "SyncTable") for action in ITEM_ACTIONS},
        *{(action, "IdempotencyTable") for action in ITEM_ACTIONS},
        ("dynamodb:UpdateItem", "SyncHistoryTable"),  # the sync's record, import start and progress (issue 14)
    },
    "StatusCheckerFunction": {
        *{(action, STAGED) for action in ("s3:GetObject", "s3:GetObjectVersion")},
        *{(action, "SyncTable") for action in ITEM_ACTIONS},
        ("dynamodb:UpdateItem", "SyncHistoryTable"),  # checks, faults and progress in the sync's timeline
    },
    "SyncFinalizerFunction": {
        *{(action, STAGED) for action in ("s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject")},
        ("s3:PutObject", FAILED),
        ("s3:PutObject", "bucket/reports/*"),  # row-error reports beside the file (issue 12)
        *{(action, "SyncTable") for action in ITEM_ACTIONS},
        ("dynamodb:UpdateItem", "SyncHistoryTable"),  # the sync's end (issue 14)
    },
    "TargetCallbackFunction": {("dynamodb:GetItem", "SyncTable"), ("dynamodb:UpdateItem", "SyncTable")},
    "EventRedriverFunction": set(),  # SQS and Lambda only (test_the_redriver_drains_only_the_failed_events_queue)
}
#: SAM policy templates that grant exactly one narrow thing; DynamoDBCrudPolicy, S3ReadPolicy etc. grant more.
NARROW_POLICY_TEMPLATES = {
    "LambdaInvokePolicy",
    "AWSSecretsManagerGetSecretValuePolicy",
    "StepFunctionsExecutionPolicy",
    "StepFunctionsCallbackPolicy",
    "SSMParameterReadPolicy",
}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resource_label(resource: Any) -> str:
    """`bucket`, `bucket/<prefix>*` or a table's logical id."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return str(resource["Fn::GetAtt"][0])
    if isinstance(resource, dict) and "Fn::Sub" in resource and isinstance(resource["Fn::Sub"], str):
        return str(resource["Fn::Sub"]).replace(BUCKET_ARN, "bucket")
    raise AssertionError(f"unexpected resource {resource!r}")


def data_access(name: str) -> set[tuple[str, str]]:
    granted = set()
    for statement in statements(FUNCTIONS[name]["Properties"].get("Policies", [])):
        for action in as_list(statement["Action"]):
            if action.startswith(("s3:", "dynamodb:")):
                granted |= {(action, resource_label(resource)) for resource in as_list(statement["Resource"])}
    return granted


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_gets_exactly_the_s3_and_dynamodb_actions_its_code_calls(name: str) -> None:
    assert data_access(name) == EXPECTED_DATA_ACCESS[name]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_use_only_narrow_policy_templates(name: str) -> None:
    templates = {
        next(iter(policy)) for policy in FUNCTIONS[name]["Properties"].get("Policies", []) if "Statement" not in policy
    }
    assert templates <= NARROW_POLICY_TEMPLATES


def test_nothing_writes_staged_files_or_scans_tables() -> None:
    for name in FUNCTIONS:
        for action, resource in data_access(name):
            assert not (action == "s3:PutObject" and resource == STAGED), name
            assert not action.startswith(("dynamodb:Scan", "dynamodb:Query", "dynamodb:Batch", "dynamodb:Transact")), (
                name
            )


def test_listing_is_limited_to_the_staging_prefix() -> None:
    [listing] = [
        st
        for st in statements(FUNCTIONS["ImportStarterFunction"]["Properties"]["Policies"])
        if "s3:ListBucket" in as_list(st["Action"])
    ]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${StagingPrefix}*"}}}


def test_both_apis_have_only_a_throttled_prod_stage() -> None:
    api = TEMPLATE["Globals"]["Api"]
    assert api["OpenApiVersion"] == "3.0.1"  # without it SAM adds a stage named "Stage" to every API
    [method_settings] = api["MethodSettings"]
    assert method_settings["ResourcePath"] == "/*"
    assert method_settings["HttpMethod"] == "*"
    assert method_settings["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert method_settings["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    assert TEMPLATE["Resources"]["CallbackApi"]["Properties"]["StageName"] == "Prod"
    # The webhook stays on the implicit API (a new API would change the URL subscribed in ChartHop).
    [webhook] = FUNCTIONS["WebhookFunction"]["Properties"]["Events"].values()
    assert webhook["Type"] == "Api"
    assert "RestApiId" not in webhook["Properties"]
    outputs = TEMPLATE["Outputs"]
    assert "${ServerlessRestApi}" in outputs["WebhookUrl"]["Value"]["Fn::Sub"]
    assert "/Prod/webhook" in outputs["WebhookUrl"]["Value"]["Fn::Sub"]
    callback_url = FUNCTIONS["ImportStarterFunction"]["Properties"]["Environment"]["Variables"]["TARGET_CALLBACK_URL"]
    assert callback_url == outputs["CallbackUrl"]["Value"]
    assert "${CallbackApi}" in callback_url["Fn::Sub"]
    assert "/Prod/callback/orgvue" in callback_url["Fn::Sub"]


def test_every_function_has_bounded_reserved_concurrency_that_can_be_turned_off() -> None:
    parameters, conditions = TEMPLATE["Parameters"], TEMPLATE["Conditions"]
    total = 0
    for name, fn in FUNCTIONS.items():
        condition, reserved, unreserved = fn["Properties"]["ReservedConcurrentExecutions"]["Fn::If"]
        parameter = reserved["Ref"]
        assert unreserved == {"Ref": "AWS::NoValue"}, name  # 0 means unreserved, never "throttle everything"
        assert conditions[condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, 0]}]}, name
        assert parameters[parameter]["MinValue"] == 0, name
        assert parameters[parameter]["Default"] > 0, name
        total += parameters[parameter]["Default"]
    # Lambda keeps 100 of an account's concurrency unreserved: the defaults fit the default quota of 1000.
    assert total <= 1000 - 100
    loop = ("ImportStarterFunction", "StatusCheckerFunction", "SyncFinalizerFunction")
    internet = ("WebhookFunction", "TargetCallbackFunction")

    def default(name: str) -> int:
        ref = FUNCTIONS[name]["Properties"]["ReservedConcurrentExecutions"]["Fn::If"][1]["Ref"]
        return int(parameters[ref]["Default"])

    assert min(default(name) for name in loop) >= max(default(name) for name in internet)


CLOUDWATCH_RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
CLOUDWATCH_RETENTION_DAYS |= {2922, 3288, 3653}


def test_every_function_logs_into_its_own_log_group_with_retention() -> None:
    resources = TEMPLATE["Resources"]
    retention = TEMPLATE["Parameters"]["LogRetentionDays"]
    assert set(retention["AllowedValues"]) <= CLOUDWATCH_RETENTION_DAYS
    assert retention["Default"] in CLOUDWATCH_RETENTION_DAYS
    groups = set()
    for name, fn in FUNCTIONS.items():
        group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Type"] == "AWS::Logs::LogGroup", name
        assert resources[group]["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{name}"}
        groups.add(group)
    assert len(groups) == len(FUNCTIONS)
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Logs::LogGroup":
            assert resource["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_personal_data_expires_current_and_old_versions_alike() -> None:
    retention = TEMPLATE["Parameters"]["PersonalDataRetentionDays"]
    assert retention["Default"] == 30
    assert "Personal-data retention" in retention["Description"]
    rules = TEMPLATE["Resources"]["StagingBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    by_prefix = {
        "<StagingPrefix>" if rule.get("Prefix") == {"Ref": "StagingPrefix"} else rule.get("Prefix", ""): rule
        for rule in rules
    }
    for prefix in ("<StagingPrefix>", "failed/", "reports/"):
        rule = by_prefix[prefix]
        assert rule["Status"] == "Enabled"
        assert rule["ExpirationInDays"] == {"Ref": "PersonalDataRetentionDays"}, prefix
        assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": {"Ref": "PersonalDataNoncurrentDays"}}, prefix
    whole_bucket = by_prefix[""]
    assert whole_bucket["ExpiredObjectDeleteMarker"] is True
    assert whole_bucket["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    # An import reads the exact version it was staged as, up to the status loop's time limit (its wait for the
    # target's turn, then ImportTimeoutSeconds): old versions outlive it.
    definition = json.loads((REPO_ROOT / "statemachine" / "sync_status.asl.json").read_text())
    assert TEMPLATE["Parameters"]["PersonalDataNoncurrentDays"]["MinValue"] * 86400 > definition["TimeoutSeconds"]


def test_alarms_publish_to_a_topic_whose_key_admits_cloudwatch() -> None:
    resources = TEMPLATE["Resources"]
    topic = resources["AlarmTopic"]["Properties"]
    key_id = topic["KmsMasterKeyId"]["Ref"]
    key = resources[key_id]["Properties"]
    assert resources[key_id]["Type"] == "AWS::KMS::Key"
    assert key["EnableKeyRotation"] is True
    [cloudwatch] = [
        st for st in key["KeyPolicy"]["Statement"] if st["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch["Effect"] == "Allow"
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    alarms = [res for res in resources.values() if res["Type"] == "AWS::CloudWatch::Alarm"]
    assert alarms
    assert all(alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}] for alarm in alarms)


def test_the_watchdog_rule_keeps_undeliverable_events() -> None:
    rule = FUNCTIONS["SyncFinalizerFunction"]["Properties"]["Events"]["ExecutionEnded"]["Properties"]
    assert rule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["FailedEventsQueue", "Arn"]}}
    [statement] = TEMPLATE["Resources"]["FailedEventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["SyncFinalizerFunctionExecutionEnded", "Arn"]}}
    }


def test_every_scanner_suppression_gives_its_reason() -> None:
    text = (REPO_ROOT / "template.yaml").read_text()
    for name, resource in TEMPLATE["Resources"].items():
        metadata = resource.get("Metadata", {})
        for skip in metadata.get("checkov", {}).get("skip", []):
            assert skip["id"].startswith("CKV_"), (name, skip)
            assert len(skip.get("comment", "")) > 20, (name, skip)
        ignored = metadata.get("cfn-lint", {}).get("config", {}).get("ignore_checks", [])
        if ignored:
            block = text.split(f"\n  {name}:\n", 1)[1].split("\n    Properties:", 1)[0]
            for rule in ignored:
                assert f"# {rule}: " in block, (name, rule)  # a YAML comment beside the ignore gives the reason


# --- the dashboard (issue 14) ------------------------------------------------------------------------


def _dashboard_body() -> dict[str, Any]:
    """DashboardBody with its !Sub variables replaced by placeholders (each must name a resource or pseudo)."""
    sub = TEMPLATE["Resources"]["SyncDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(sub, str)
    for variable in re.findall(r"\$\{([^}!]+)\}", sub):
        name = variable.split(".", 1)[0]
        assert name.startswith("AWS::") or name in TEMPLATE["Resources"], variable
    body: dict[str, Any] = json.loads(re.sub(r"\$\{([^}!]+)\}", lambda m: f"SUB_{m.group(1)}", sub))
    return body


def emitted_metrics() -> dict[str, str]:
    """Every metric name the code emits, and how: Powertools' add_metric in the handlers ("service" dimension)
    and sync_metrics.emit in the layer ("target"/"org" dimensions)."""
    from people_sync import sync_metrics

    found: dict[str, str] = {}
    for path in (REPO_ROOT / "functions").rglob("*.py"):
        for name in re.findall(r'add_metric\(\s*name="(\w+)"', path.read_text()):
            found[name] = "service"
    for path in (REPO_ROOT / "layers" / "shared" / "people_sync").rglob("*.py"):
        for name in re.findall(r'sync_metrics\.emit\(\s*ctx,\s*"(\w+)"', path.read_text()):
            assert name in sync_metrics.METRICS, f"{name} ({path.name}) is not in sync_metrics.METRICS"
            found[name] = "target-org"
        # emit_for(target, org, name, ...): where there is no sync context (an org's token, an unserved org's file)
        for name in re.findall(r'sync_metrics\.emit_for\(\s*[^,()]+,\s*[^,()]+,\s*"(\w+)"', path.read_text()):
            assert name in sync_metrics.METRICS, f"{name} ({path.name}) is not in sync_metrics.METRICS"
            found[name] = "target-org"
    return found


def test_the_code_emits_the_metrics_the_dashboard_is_made_of() -> None:
    found = emitted_metrics()
    for name in ("SyncsStarted", "SyncsDone", "SyncsFailed", "ImportDurationSeconds", "UploadBytes", "ChecksPerSync"):
        assert found.get(name) == "target-org", name
    for name in ("OrgTokenRefused", "OrgTokenRefreshed", "UnservedOrgFiles"):  # issue 13: per org too
        assert found.get(name) == "target-org", name
    assert found.get("DuplicateDeliveries") == "service"


def test_the_dashboard_shows_every_metric_the_code_emits_and_the_queue_and_alarms() -> None:
    body = _dashboard_body()
    widgets = body["widgets"]
    text = json.dumps(body)
    for name, how in emitted_metrics().items():
        if how == "target-org":
            assert f'{{PeopleSync,org,target}} MetricName=\\"{name}\\"' in text, name
        else:
            assert ["PeopleSync", name, "service", "people-sync"] in [
                metric for widget in widgets for metric in widget["properties"].get("metrics", [])
            ], name
    assert ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "SUB_FailedEventsQueue.QueueName"] in [
        metric for widget in widgets for metric in widget["properties"].get("metrics", [])
    ]
    [alarms] = [widget for widget in widgets if widget["type"] == "alarm"]
    alarm_ids = {logical_id for logical_id, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms["properties"]["alarms"]) == {f"SUB_{logical_id}.Arn" for logical_id in alarm_ids}
    for widget in widgets:  # the grid is 24 wide
        assert widget["x"] + widget["width"] <= 24


def test_metrics_go_to_the_people_sync_namespace_and_the_dashboard_url_is_an_output() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "PeopleSync"
    url = TEMPLATE["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert "#dashboards/dashboard/${SyncDashboard}" in url
    assert url.startswith("https://${AWS::Region}.console.aws.amazon.com/cloudwatch/")


def test_the_sync_history_expires_with_the_personal_data_and_is_listed_by_query() -> None:
    table = TEMPLATE["Resources"]["SyncHistoryTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["SYNC_HISTORY_RETENTION_DAYS"] == {"Ref": "PersonalDataRetentionDays"}
    assert variables["SYNC_HISTORY_TABLE"] == {"Ref": "SyncHistoryTable"}
    indexes = {index["IndexName"]: index["KeySchema"] for index in table["GlobalSecondaryIndexes"]}
    assert indexes == {
        "byDay": [{"AttributeName": "listDay", "KeyType": "HASH"}, {"AttributeName": "startedAt", "KeyType": "RANGE"}],
        "byOrg": [{"AttributeName": "orgId", "KeyType": "HASH"}, {"AttributeName": "startedAt", "KeyType": "RANGE"}],
    }


def test_the_redriver_drains_only_the_failed_events_queue_and_invokes_only_the_functions_that_fed_it() -> None:
    function = FUNCTIONS["EventRedriverFunction"]["Properties"]
    [drain] = [st for st in statements(function["Policies"]) if st.get("Sid") == "DrainFailedEvents"]
    assert set(drain["Action"]) == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
    assert drain["Resource"] == {"Fn::GetAtt": ["FailedEventsQueue", "Arn"]}
    invoked = {
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in function["Policies"] if "LambdaInvokePolicy" in p
    }
    assert invoked == {"ImportStarterFunction", "SyncFinalizerFunction"}
    [schedule] = function["Events"].values()
    assert schedule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert function["Environment"]["Variables"]["AUTO_REDRIVE_MAX_AGE_HOURS"] == {
        "Fn::Sub": "${AutoRedriveMaxAgeHours}"
    }


def test_the_operator_policy_grants_the_tools_calls_and_no_wildcard_actions() -> None:
    document = TEMPLATE["Resources"]["OperatorPolicy"]["Properties"]["PolicyDocument"]
    actions = {
        action
        for statement in document["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert not [action for action in actions if "*" in action]
    # what tools/people_sync_admin calls (orgs, syncs, failed, events redrive)
    assert {
        "cloudformation:DescribeStacks",
        "dynamodb:Scan",
        "dynamodb:Query",
        "secretsmanager:PutSecretValue",
        "s3:ListBucket",
        "s3:PutObject",
        "sqs:DeleteMessage",
        "lambda:InvokeFunction",
    } <= actions
    [put] = [statement for statement in document["Statement"] if statement["Sid"] == "StageRetriedFiles"]
    assert put["Resource"]["Fn::Sub"].endswith("/${StagingPrefix}*")  # a retry stages under the prefix only
    assert TEMPLATE["Outputs"]["OperatorPolicyArn"]["Value"] == {"Ref": "OperatorPolicy"}
