"""template.yaml's org registry: the table, who may read it (and the orgs' token secrets), and the outputs the
operator tool finds the stack's names by."""

from __future__ import annotations

from offline.aws_stack import load_template
from tools.people_sync_admin.stack import REQUIRED_OUTPUTS

TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]


def test_the_org_table_is_on_demand_encrypted_and_recoverable() -> None:
    props = RESOURCES["OrgTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["KeySchema"] == [{"AttributeName": "orgId", "KeyType": "HASH"}]


def test_every_function_is_told_the_org_table() -> None:
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["ORG_TABLE"] == {"Ref": "OrgTable"}


def test_the_functions_that_run_syncs_may_only_read_one_org_and_the_orgs_token_secrets() -> None:
    policy = RESOURCES["OrgRegistryReadPolicy"]["Properties"]
    assert sorted(role["Ref"] for role in policy["Roles"]) == [
        "ImportStarterFunctionRole",
        "StatusCheckerFunctionRole",
        "SyncFinalizerFunctionRole",
    ]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert statements["ResolveOrg"]["Action"] == "dynamodb:GetItem"
    assert statements["ResolveOrg"]["Resource"] == {"Fn::GetAtt": ["OrgTable", "Arn"]}
    assert statements["ReadOrgTokens"]["Action"] == "secretsmanager:GetSecretValue"
    secrets = statements["ReadOrgTokens"]["Resource"]["Fn::Sub"]
    assert secrets.endswith(":secret:${AWS::StackName}/orgs/*")
    assert all(s["Effect"] == "Allow" for s in statements.values())


def test_no_function_may_write_the_registry_but_its_token_marks() -> None:
    for name, resource in RESOURCES.items():
        for policy in resource.get("Properties", {}).get("Policies", []) or []:
            assert "OrgTable" not in str(policy), name
    writers = [
        logical_id
        for logical_id, resource in RESOURCES.items()
        if resource["Type"] == "AWS::IAM::Policy"
        and logical_id not in ("OrgRegistryReadPolicy", "WebhookOrgLookupPolicy")
        and "OrgTable" in str(resource["Properties"]["PolicyDocument"])
    ]
    assert writers == ["OrgTokenMaintenancePolicy"]


def test_the_sync_functions_may_only_mark_an_orgs_token_and_store_a_fetched_one_in_its_secret() -> None:
    """org_tokens.py: UpdateItem of an entry's token fields, PutSecretValue of the orgs' own secrets; no more."""
    policy = RESOURCES["OrgTokenMaintenancePolicy"]["Properties"]
    assert sorted(role["Ref"] for role in policy["Roles"]) == [
        "ImportStarterFunctionRole",
        "StatusCheckerFunctionRole",
        "SyncFinalizerFunctionRole",
    ]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(statements) == {"MarkOrgTokens", "StoreFetchedOrgTokens"}
    assert statements["MarkOrgTokens"]["Action"] == "dynamodb:UpdateItem"
    assert statements["MarkOrgTokens"]["Resource"] == {"Fn::GetAtt": ["OrgTable", "Arn"]}
    assert statements["StoreFetchedOrgTokens"]["Action"] == "secretsmanager:PutSecretValue"
    secrets = statements["StoreFetchedOrgTokens"]["Resource"]["Fn::Sub"]
    assert secrets.endswith(":secret:${AWS::StackName}/orgs/*")  # never the stack's own token secret
    assert all(s["Effect"] == "Allow" for s in statements.values())


def test_the_tool_finds_the_table_and_the_secret_prefix_in_the_outputs() -> None:
    outputs = TEMPLATE["Outputs"]
    assert set(REQUIRED_OUTPUTS) <= set(outputs)
    assert outputs["OrgTableName"]["Value"] == {"Ref": "OrgTable"}
    # the tool names an org's secret <prefix><orgId>/charthop-token: inside what the functions may read
    assert outputs["OrgTokenSecretPrefix"]["Value"] == {"Fn::Sub": "${AWS::StackName}/orgs/"}


def test_the_webhook_may_only_read_one_org_entry_to_route_a_delivery() -> None:
    policy = RESOURCES["WebhookOrgLookupPolicy"]["Properties"]
    assert [role["Ref"] for role in policy["Roles"]] == ["WebhookFunctionRole"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "dynamodb:GetItem")
    assert statement["Resource"] == {"Fn::GetAtt": ["OrgTable", "Arn"]}
