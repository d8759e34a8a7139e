"""The org registry: conditional writes, settings merged over the stack's defaults, and resolve_org's answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from offline.aws_stack import load_template
from people_sync.models import ImportOptions
from people_sync.org_registry import (
    Elma365Config,
    InvalidOrgSettings,
    NotServed,
    OrgConfig,
    OrgConflict,
    OrgExists,
    OrgNotFound,
    OrgRecord,
    OrgRegistry,
    OrgSettings,
    OrgState,
    OrgvueConfig,
    SettingsSource,
    StackDefaults,
    merge_settings,
    parse_assignment,
    parse_settings,
    resolve_org,
    settings_from_assignments,
)
from people_sync.target_queue import queue_key
from tests.fakes import app_settings

DEFAULT_ORG = "acme"
STACK_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:stack-ChartHopApiTokenSecret-AbCdEf"
DEFAULTS = StackDefaults(
    org_id=DEFAULT_ORG,
    app_user_id="app-user-acme",
    token_secret=STACK_SECRET,
    import_options=ImportOptions(import_source="people-sync"),
    required_columns=("Employee ID",),
    further_targets=("orgvue",),
    import_on_upload=True,
    csv_rules={"maxBytes": 1000, "maxRows": 10},
)


def create_org_table(name: str = "orgs") -> str:
    """The table as template.yaml declares it (key and billing), in moto."""
    props = load_template()["Resources"]["OrgTable"]["Properties"]
    boto3.client("dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        BillingMode=props["BillingMode"],
    )
    return name


@pytest.fixture
def registry() -> Iterator[OrgRegistry]:
    with mock_aws():
        yield OrgRegistry(create_org_table(), boto3.client("dynamodb"), clock=lambda: 1_700_000_000.0)


def beta(**changes: Any) -> OrgRecord:
    record = OrgRecord(org_id="beta", app_user_id="app-user-beta", token_secret="stack/orgs/beta/charthop-token")
    return replace(record, **changes)


# --- conditional writes ---------------------------------------------------------------------------


def test_an_added_org_is_stored_at_version_1_with_the_secrets_name_only(registry: OrgRegistry) -> None:
    stored = registry.add(beta(settings=settings_from_assignments({"skipErrors": "false"})))

    assert stored.version == 1
    assert registry.get("beta") == stored
    item = registry.get_item("beta")
    assert item is not None
    assert set(item) == {
        "orgId",
        "appUserId",
        "state",
        "tokenSecret",
        "settingsSource",
        "settings",
        "version",
        "createdAt",
        "updatedAt",
    }
    assert item["tokenSecret"] == {"S": "stack/orgs/beta/charthop-token"}
    assert item["settings"] == {"M": {"importOptions": {"M": {"skipErrors": {"BOOL": False}}}}}


def test_adding_an_org_twice_is_refused(registry: OrgRegistry) -> None:
    registry.add(beta())
    with pytest.raises(OrgExists):
        registry.add(beta(app_user_id="someone-else"))
    current = registry.get("beta")
    assert current is not None
    assert current.app_user_id == "app-user-beta"


def test_a_write_from_a_stale_read_is_refused_and_changes_nothing(registry: OrgRegistry) -> None:
    read_by_a = registry.add(beta())
    read_by_b = registry.get("beta")
    assert read_by_b is not None
    registry.save(replace(read_by_b, state=OrgState.PAUSED))

    with pytest.raises(OrgConflict):
        registry.save(replace(read_by_a, app_user_id="changed-by-a"))
    current = registry.get("beta")
    assert current is not None
    assert (current.state, current.app_user_id, current.version) == (OrgState.PAUSED, "app-user-beta", 2)


def test_saving_an_org_nobody_registered_is_refused(registry: OrgRegistry) -> None:
    with pytest.raises(OrgNotFound):
        registry.save(beta(version=1))
    assert registry.get("beta") is None


def test_modify_reapplies_a_change_that_lost_a_race_so_both_edits_land(registry: OrgRegistry) -> None:
    registry.add(beta())
    raced: list[bool] = []

    def pause_after_a_rival_edit(record: OrgRecord) -> OrgRecord:
        if not raced:  # another operator's edit lands between our read and our write
            raced.append(True)
            registry.modify("beta", lambda r: replace(r, settings=r.settings.updated({"importOnUpload": "false"})))
        return replace(record, state=OrgState.PAUSED)

    result = registry.modify("beta", pause_after_a_rival_edit)

    assert result.state is OrgState.PAUSED
    assert result.settings.import_on_upload is False  # the rival's edit survived
    assert result.version == 3


def test_modify_of_an_unknown_org_is_refused(registry: OrgRegistry) -> None:
    with pytest.raises(OrgNotFound):
        registry.modify("nobody", lambda r: r)


def test_org_ids_that_could_escape_a_folder_or_secret_name_are_refused(registry: OrgRegistry) -> None:
    for bad in ("../acme", "acme/x", "", "a b"):
        with pytest.raises(InvalidOrgSettings, match="not an org id"):
            registry.add(beta(org_id=bad))


# --- settings: parsing, validation, merge ---------------------------------------------------------


def test_settings_from_a_command_line_are_typed_and_normalised() -> None:
    parsed = settings_from_assignments(
        dict(
            parse_assignment(text)
            for text in (
                "skipErrors=false",
                "notifyUserIds=u1, u2",
                "requiredColumns=Employee ID, First Name",
                "furtherTargets=elma365,orgvue",
                "importOnUpload=false",
            )
        )
    )
    assert parsed.import_options == {"skipErrors": False, "notifyUserIds": ["u1", "u2"]}
    assert parsed.required_columns == ("Employee ID", "First Name")
    assert parsed.further_targets == ("orgvue", "elma365")
    assert parsed.import_on_upload is False


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        ({"skipErors": "false"}, "unknown setting 'skipErors'"),
        ({"skipErrors": "perhaps"}, "skipErrors"),
        ({"importOnUpload": "sometimes"}, "importOnUpload"),
        ({"furtherTargets": "orgvue,workday"}, "unknown target(s) workday"),
        ({"requiredColumns": "Employee ID,,Name"}, None),
        ({"requiredColumns": ["Employee ID", " "]}, "empty column name"),
        ({"requiredColumns": "Employee ID,Employee ID"}, "names Employee ID more than once"),
    ],
)
def test_bad_settings_are_refused_with_a_message_naming_the_setting(
    assignments: dict[str, Any], message: str | None
) -> None:
    if message is None:  # empty items between commas are dropped, not refused
        assert settings_from_assignments(assignments).required_columns == ("Employee ID", "Name")
        return
    with pytest.raises(InvalidOrgSettings) as refused:
        settings_from_assignments(assignments)
    assert message in str(refused.value)


def test_a_stored_document_with_unknown_keys_is_refused() -> None:
    with pytest.raises(InvalidOrgSettings, match="importOptionz"):
        parse_settings({"importOptionz": {}})
    with pytest.raises(InvalidOrgSettings, match="unknown import option"):
        parse_settings({"importOptions": {"token": "x"}})


def test_key_value_needs_an_equals_sign_and_a_known_key() -> None:
    with pytest.raises(InvalidOrgSettings, match="not key=value"):
        parse_assignment("skipErrors")
    with pytest.raises(InvalidOrgSettings, match="unknown setting"):
        parse_assignment("token=abc")


def test_an_org_overrides_the_stack_defaults_field_by_field() -> None:
    overrides = settings_from_assignments({"createGroups": "true", "requiredColumns": "", "importOnUpload": "false"})
    effective = merge_settings(DEFAULTS, overrides, default_org=True)

    assert effective.import_options.create_groups is True
    assert effective.import_options.import_source == "people-sync"  # not overridden: the stack's
    assert effective.required_columns == ()  # an explicit empty list overrides
    assert effective.import_on_upload is False
    assert effective.further_targets == ("orgvue",)
    rules = effective.csv_rules()
    assert (rules.max_bytes, rules.max_rows, rules.required_columns) == (1000, 10, [])


def test_only_the_default_org_inherits_the_stacks_further_targets() -> None:
    assert merge_settings(DEFAULTS, OrgSettings(), default_org=False).further_targets == ()
    chosen = settings_from_assignments({"furtherTargets": "orgvue"})
    assert merge_settings(DEFAULTS, chosen, default_org=False).further_targets == ("orgvue",)


def test_a_target_the_stack_does_not_configure_is_refused() -> None:
    with pytest.raises(InvalidOrgSettings, match=r"elma365 not configured in this deployment \(configured: orgvue\)"):
        merge_settings(DEFAULTS, settings_from_assignments({"furtherTargets": "elma365"}), default_org=False)


# hypothesis: the merge's invariants over any valid overrides

names = st.text(st.characters(categories=["L", "N"], include_characters=" -_"), min_size=1, max_size=12).map(str.strip)
bool_options = [info.alias or name for name, info in ImportOptions.model_fields.items() if info.annotation is bool]
import_overrides = st.dictionaries(st.sampled_from(bool_options), st.booleans())
overrides_strategy = st.builds(
    OrgSettings,
    import_options=import_overrides,
    required_columns=st.none() | st.lists(names.filter(bool), unique=True, max_size=4).map(tuple),
    further_targets=st.none() | st.sampled_from([(), ("orgvue",)]),
    import_on_upload=st.none() | st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(overrides=overrides_strategy, default_org=st.booleans())
def test_every_effective_setting_is_the_override_when_given_else_the_default(
    overrides: OrgSettings, default_org: bool
) -> None:
    effective = merge_settings(DEFAULTS, overrides, default_org=default_org)
    options = effective.import_options.to_json_dict()
    for key, default in DEFAULTS.import_options.to_json_dict().items():
        assert options[key] == overrides.import_options.get(key, default)
    expected_columns = DEFAULTS.required_columns if overrides.required_columns is None else overrides.required_columns
    assert effective.required_columns == expected_columns
    inherited = DEFAULTS.further_targets if default_org else ()
    assert effective.further_targets == (inherited if overrides.further_targets is None else overrides.further_targets)
    expected_upload = DEFAULTS.import_on_upload if overrides.import_on_upload is None else overrides.import_on_upload
    assert effective.import_on_upload is expected_upload


@settings(max_examples=200, deadline=None)
@given(first=overrides_strategy, second=overrides_strategy)
def test_editing_in_two_steps_equals_editing_once(first: OrgSettings, second: OrgSettings) -> None:
    """`orgs set a` then `orgs set b` ends where `orgs set a b` (b winning) ends, and survives storage."""
    stepwise = first.updated(second.as_assignments())
    at_once = settings_from_assignments({**first.as_assignments(), **second.as_assignments()})
    assert stepwise == at_once
    assert parse_settings(stepwise.to_document()) == stepwise
    record = OrgRecord(org_id="beta", app_user_id="u", settings=stepwise, version=3)
    assert OrgRecord.from_item(record.to_item()) == record


@settings(max_examples=100, deadline=None)
@given(overrides=overrides_strategy)
def test_unsetting_every_key_gives_back_the_stack_defaults(overrides: OrgSettings) -> None:
    cleared = overrides.updated({}, unset=list(overrides.as_assignments()))
    assert cleared == OrgSettings()
    assert merge_settings(DEFAULTS, cleared, default_org=True) == merge_settings(
        DEFAULTS, OrgSettings(), default_org=True
    )


# --- resolve_org ----------------------------------------------------------------------------------


def resolve(registry: OrgRegistry, org_id: str, **kwargs: Any) -> OrgConfig | NotServed:
    return resolve_org(org_id, registry=registry, defaults=DEFAULTS, **kwargs)


def test_the_stacks_org_without_an_entry_is_served_as_a_one_org_stack_always_was(registry: OrgRegistry) -> None:
    resolved = resolve(registry, DEFAULT_ORG)
    assert isinstance(resolved, OrgConfig)
    assert resolved.from_stack_defaults
    assert (resolved.app_user_id, resolved.token_secret) == ("app-user-acme", STACK_SECRET)
    assert resolved.settings == merge_settings(DEFAULTS, OrgSettings(), default_org=True)


def test_an_org_nobody_registered_is_not_served(registry: OrgRegistry) -> None:
    resolved = resolve(registry, "stranger")
    assert isinstance(resolved, NotServed)
    assert (resolved.served, resolved.reason) == (False, "unknown")
    escaping = resolve(registry, "../acme")
    assert isinstance(escaping, NotServed)
    assert escaping.reason == "unknown"


def test_a_registered_org_is_served_with_its_own_secret_user_and_settings(registry: OrgRegistry) -> None:
    registry.add(beta(settings=settings_from_assignments({"upsert": "false", "furtherTargets": "orgvue"})))
    resolved = resolve(registry, "beta")
    assert isinstance(resolved, OrgConfig)
    assert (resolved.app_user_id, resolved.token_secret) == ("app-user-beta", "stack/orgs/beta/charthop-token")
    assert resolved.settings.import_options.upsert is False
    assert resolved.settings.further_targets == ("orgvue",)
    assert not resolved.from_stack_defaults


@pytest.mark.parametrize(("state", "reason"), [(OrgState.PAUSED, "paused"), (OrgState.UNINSTALLED, "uninstalled")])
def test_paused_and_uninstalled_orgs_are_not_served(registry: OrgRegistry, state: OrgState, reason: str) -> None:
    registry.add(beta(state=state))
    registry.add(beta(org_id=DEFAULT_ORG, state=state))  # an entry for the stack's own org wins over its defaults
    for org in ("beta", DEFAULT_ORG):
        resolved = resolve(registry, org)
        assert isinstance(resolved, NotServed)
        assert resolved.reason == reason


def test_a_registered_org_without_a_token_is_not_served_but_the_stacks_org_uses_the_stack_secret(
    registry: OrgRegistry,
) -> None:
    registry.add(beta(token_secret=""))
    registry.add(OrgRecord(org_id=DEFAULT_ORG, app_user_id="", settings=settings_from_assignments({"upsert": "no"})))

    missing = resolve(registry, "beta")
    assert isinstance(missing, NotServed)
    assert missing.reason == "no-token"
    assert "orgs set-token beta" in missing.message
    own = resolve(registry, DEFAULT_ORG)
    assert isinstance(own, OrgConfig)
    assert (own.token_secret, own.app_user_id, own.settings.import_options.upsert) == (
        STACK_SECRET,
        "app-user-acme",
        False,
    )


def test_settings_stored_by_hand_that_do_not_validate_make_the_org_misconfigured(registry: OrgRegistry) -> None:
    item = beta(version=1).to_item()
    item["settings"] = {"M": {"importOptions": {"M": {"skipErrors": {"S": "perhaps"}}}}}
    registry.client.put_item(TableName=registry.table_name, Item=item)
    registry.add(beta(org_id="gamma", settings=settings_from_assignments({"furtherTargets": "orgvue"})))
    no_targets = replace(DEFAULTS, further_targets=())

    resolved = resolve(registry, "beta")
    assert isinstance(resolved, NotServed)
    assert resolved.reason == "misconfigured"
    assert "skipErrors" in resolved.message
    gone = resolve_org("gamma", registry=registry, defaults=no_targets)
    assert isinstance(gone, NotServed)
    assert gone.reason == "misconfigured"
    assert "orgvue not configured" in gone.message


def test_an_org_whose_settings_live_in_charthop_is_resolved_with_them(registry: OrgRegistry) -> None:
    registry.add(
        beta(settings_source=SettingsSource.CHARTHOP, settings=settings_from_assignments({"importDryRun": "true"}))
    )
    asked: list[tuple[str, str]] = []

    def from_charthop(record: OrgRecord, token_secret: str) -> OrgSettings:
        asked.append((record.org_id, token_secret))
        return settings_from_assignments({"createGroups": True})

    resolved = resolve(registry, "beta", charthop_settings=from_charthop)
    assert isinstance(resolved, OrgConfig)
    assert asked == [("beta", "stack/orgs/beta/charthop-token")]
    assert resolved.settings.import_options.create_groups is True
    assert resolved.settings.import_options.import_dry_run is False  # the registry's copy is not read
    assert resolved.settings_source is SettingsSource.CHARTHOP


def test_resolve_org_reads_its_registry_and_defaults_from_the_functions_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with mock_aws():
        table = create_org_table()
        boto3.client("ssm").put_parameter(
            Name="/settings",
            Type="String",
            Value='{"importOptions": {"upsert": false}, "csvRules": {"requiredColumns": ["Id"]}}',
        )
        for key, value in {
            "CHARTHOP_ORG_ID": DEFAULT_ORG,
            "CHARTHOP_APP_NAME": "people-sync",
            "CHARTHOP_APP_USER_ID": "app-user-acme",
            "CHARTHOP_TOKEN_SECRET": STACK_SECRET,
            "SETTINGS_PARAMETER": "/settings",
            "ORG_TABLE": table,
        }.items():
            monkeypatch.setenv(key, value)
        OrgRegistry(table).add(beta(state=OrgState.PAUSED))

        own = resolve_org(DEFAULT_ORG)
        paused = resolve_org("beta")

    assert isinstance(own, OrgConfig)
    assert own.settings.import_options.upsert is False
    assert own.settings.required_columns == ("Id",)
    assert isinstance(paused, NotServed)
    assert paused.reason == "paused"


# --- an org's token metadata (issue 13: org_tokens.py writes it; never the token) -------------------------------


def test_a_refused_token_is_marked_on_the_entry_and_a_fresh_one_clears_it(registry: OrgRegistry) -> None:
    from people_sync.org_registry import TokenRefusal

    registry.add(OrgRecord("beta", "app-user-beta", token_secret="stack/orgs/beta/charthop-token"))
    refusal = TokenRefusal("2026-11-26T10:00:00Z", "read the process", "sync-1", "ChartHop refused (HTTP 401)")
    registry.mark_token_refused("beta", refusal)
    record = registry.get("beta")
    assert record is not None
    assert (record.token_refused, record.version) == (refusal, 2)
    assert record.to_json_dict()["tokenRefused"]["syncProcessId"] == "sync-1"
    assert refusal.describe("beta") == (
        "token refused at 2026-11-26T10:00:00Z (read the process); sync process sync-1 was left open; "
        "run `orgs set-token beta`"
    )
    registry.note_token("beta", issued_at=1_000, expires_at=4_600)
    record = registry.get("beta")
    assert record is not None
    assert (record.token_refused, record.token_issued_at, record.token_expires_at) == (None, 1_000, 4_600)
    assert record.version == 3
    resolved = resolve_org("beta", registry=registry, defaults=DEFAULTS)
    assert isinstance(resolved, OrgConfig)
    assert (resolved.token_issued_at, resolved.token_expires_at) == (1_000, 4_600)


def test_a_token_mark_is_never_lost_to_an_operators_concurrent_edit(registry: OrgRegistry) -> None:
    """The mark bumps the version: an edit from a read before it is refused, and modify() keeps the mark."""
    from people_sync.org_registry import TokenRefusal

    registry.add(OrgRecord("beta", "app-user-beta", token_secret="secret"))
    read_before = registry.get("beta")
    assert read_before is not None
    registry.mark_token_refused("beta", TokenRefusal("2026-11-26T10:00:00Z", "create a sync process"))
    with pytest.raises(OrgConflict):
        registry.save(replace(read_before, state=OrgState.PAUSED))
    registry.modify("beta", lambda record: replace(record, state=OrgState.PAUSED))
    record = registry.get("beta")
    assert record is not None
    assert record.state is OrgState.PAUSED
    assert record.token_refused is not None


def test_the_stacks_own_org_gets_an_entry_for_its_mark_and_still_resolves_as_before(registry: OrgRegistry) -> None:
    from people_sync.org_registry import TokenRefusal

    with pytest.raises(OrgNotFound):
        registry.mark_token_refused("stranger", TokenRefusal("2026-11-26T10:00:00Z", "read the process"))
    assert registry.get("stranger") is None
    before = resolve_org(DEFAULT_ORG, registry=registry, defaults=DEFAULTS)
    registry.mark_token_refused(
        DEFAULT_ORG, TokenRefusal("2026-11-26T10:00:00Z", "read the process"), default_app_user_id="app-user-acme"
    )
    record = registry.get(DEFAULT_ORG)
    assert record is not None
    assert (record.app_user_id, record.state, record.token_secret, record.version) == (
        "app-user-acme",
        OrgState.ACTIVE,
        "",
        1,
    )
    after = resolve_org(DEFAULT_ORG, registry=registry, defaults=DEFAULTS)
    assert isinstance(before, OrgConfig)
    assert isinstance(after, OrgConfig)
    assert (after.token_secret, after.app_user_id, after.settings) == (
        before.token_secret,
        before.app_user_id,
        before.settings,
    )


# --- further targets per org ----------------------------------------------------------------------

STACK_ORGVUE = OrgvueConfig(base_url="https://orgvue.example.com", tenant_id="ACME_HR", dataset_id="stack-ds")
WITH_TARGETS = replace(DEFAULTS, orgvue=STACK_ORGVUE)


def test_an_orgs_orgvue_and_elma365_settings_go_over_the_stacks_and_are_stored_and_unset() -> None:
    settings = settings_from_assignments(
        {
            "furtherTargets": "orgvue,elma365",
            "orgvue.datasetId": "beta-ds",
            "orgvue.idKey": "employeeID",
            "orgvue.implicitDelete": "false",
            "elma365.baseUrl": "https://beta.elma365.example/",
            "elma365.namespace": "hr",
            "elma365.code": "employees",
            "elma365.chunkRows": "1000",
        }
    )
    effective = merge_settings(WITH_TARGETS, settings, default_org=False)
    assert effective.target_config("orgvue") == replace(STACK_ORGVUE, dataset_id="beta-ds", id_key="employeeID")
    assert effective.target_config("elma365") == Elma365Config(
        base_url="https://beta.elma365.example", namespace="hr", code="employees", chunk_rows=1000
    )
    assert settings.to_document()["orgvue"] == {"datasetId": "beta-ds", "idKey": "employeeID", "implicitDelete": False}
    record = OrgRecord(org_id="beta", app_user_id="u", settings=settings, target_secrets={"orgvue": "s/orgvue-token"})
    assert OrgRecord.from_item(record.to_item()) == record
    cleared = settings.updated({}, unset=["elma365", "orgvue.idKey"])
    assert "elma365" not in cleared.to_document()
    assert cleared.to_document()["orgvue"] == {"datasetId": "beta-ds", "implicitDelete": False}


@pytest.mark.parametrize(
    ("assignments", "problem"),
    [
        ({"orgvue.baseUrl": "http://orgvue.example.com"}, "use https"),
        ({"orgvue.baseUrl": "https://orgvue.example.com?x=1"}, "not a base URL"),
        ({"orgvue.tenantId": "acme"}, "not an Orgvue tenant id"),
        ({"orgvue.datasetId": "a/b"}, "not a dataset id"),
        ({"orgvue.dateFormat": "YY"}, "orgvue.dateFormat"),
        ({"elma365.chunkRows": "60000"}, "elma365.chunkRows"),
        ({"elma365.code": "hr employees"}, "not an ELMA365 app code"),
        ({"orgvue.token": "x"}, "unknown setting 'orgvue.token'"),
    ],
)
def test_bad_target_settings_are_refused(assignments: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidOrgSettings, match=re.escape(problem)):
        settings_from_assignments(assignments)


def test_a_target_an_org_names_needs_a_whole_address_from_the_stack_or_its_own_settings() -> None:
    # the stack configures Orgvue: an org may feed it as the stack's parameters say (shared dataset) ...
    assert merge_settings(WITH_TARGETS, settings_from_assignments({"furtherTargets": "orgvue"}), default_org=False)
    # ... ELMA365 is not configured by the stack: the org must give its own address, all of it
    with pytest.raises(InvalidOrgSettings, match="elma365 not configured in this deployment"):
        merge_settings(WITH_TARGETS, settings_from_assignments({"furtherTargets": "elma365"}), default_org=False)
    half = settings_from_assignments({"furtherTargets": "elma365", "elma365.baseUrl": "https://b.elma365.example"})
    with pytest.raises(InvalidOrgSettings, match=r"elma365: set elma365.namespace, elma365.code"):
        merge_settings(WITH_TARGETS, half, default_org=False)
    whole = half.updated({"elma365.namespace": "hr", "elma365.code": "staff"})
    assert merge_settings(WITH_TARGETS, whole, default_org=False).further_targets == ("elma365",)


def test_target_settings_are_never_read_from_charthop(registry: OrgRegistry) -> None:
    """An org whose settings live in ChartHop keeps the registry's Orgvue address: its ChartHop admins may turn
    targets on and off, but never point its data (or its token) at another host or dataset."""
    from people_sync.charthop_apps import settings_from_options

    own = settings_from_assignments({"orgvue.datasetId": "beta-ds", "orgvue.tenantId": "BETA_HR"})
    registry.add(beta(settings_source=SettingsSource.CHARTHOP, settings=own, target_secrets={"orgvue": "b/orgvue"}))
    options = {"furtherTargets": "orgvue", "orgvue.baseUrl": "https://elsewhere.example", "orgvue.datasetId": "x"}

    resolved = resolve_org(
        "beta",
        registry=registry,
        defaults=WITH_TARGETS,
        charthop_settings=lambda _record, _secret: settings_from_options(options),
    )

    assert isinstance(resolved, OrgConfig)
    assert resolved.settings.further_targets == ("orgvue",)
    assert resolved.settings.target_config("orgvue") == replace(STACK_ORGVUE, tenant_id="BETA_HR", dataset_id="beta-ds")
    assert resolved.target_secrets == {"orgvue": "b/orgvue"}


def test_two_orgs_share_a_queue_only_when_they_point_at_the_same_dataset_or_app() -> None:
    stack = app_settings(
        orgvue_base_url="https://orgvue.example.com", orgvue_tenant_id="ACME_HR", orgvue_dataset_id="ds-1"
    )
    beta_same = replace(stack)  # an org that points at the stack's dataset: one queue for both
    beta_own = replace(stack, orgvue_dataset_id="ds-2")
    elma_a = replace(stack, elma365_base_url="https://acme.elma365.example", elma365_namespace="hr", elma365_code="e")
    elma_b = replace(elma_a, elma365_base_url="https://beta.elma365.example")  # hr/e in another company's ELMA365
    assert queue_key("orgvue", stack, "orgvue") == "queue#orgvue#orgvue.example.com/ACME_HR/ds-1"
    assert queue_key("orgvue", beta_same, "org-beta/orgvue") == queue_key("orgvue", stack, "orgvue")
    assert queue_key("orgvue", beta_own, "org-beta/orgvue") != queue_key("orgvue", stack, "orgvue")
    assert queue_key("elma365", elma_a, "elma365") == "queue#elma365#acme.elma365.example/hr/e"
    assert queue_key("elma365", elma_b, "org-beta/elma365") != queue_key("elma365", elma_a, "elma365")
    assert queue_key("elma365", replace(elma_a, elma365_base_url="HTTPS://Acme.ELMA365.example/"), "x") == (
        queue_key("elma365", elma_a, "elma365")
    )
