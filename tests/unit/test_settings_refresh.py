"""A warm container picks up a rotated token and changed settings within config.PARAMETER_MAX_AGE (issue 11
item 6), and still reuses its HTTP sessions and boto3 clients while nothing changed."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from typing import IO, Any

import boto3
import botocore.session
import pytest
from aws_lambda_powertools.utilities.parameters import base as powertools_base
from moto import mock_aws

from offline.charthop_emulator import ChartHopEmulator
from offline.orgvue_emulator import OrgvueEmulator, OrgvueEmulatorConfig
from people_sync import runtime
from people_sync.config import PARAMETER_MAX_AGE
from people_sync.errors import OrgNotServed
from people_sync.models import StagedFile

TOKEN_SECRET = "charthop-token"
TARGET_TOKENS_SECRET = "target-tokens"
SETTINGS_PARAMETER = "/people-sync/settings"
ROTATED = "rotated-app-token"


class PowertoolsClock(datetime):
    """Powertools' parameter cache asks `datetime.now()` whether a value expired; this one runs ahead."""

    ahead = timedelta(0)

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Any:
        return datetime.now(tz) + cls.ahead

    @classmethod
    def advance(cls, seconds: float) -> None:
        cls.ahead += timedelta(seconds=seconds)


@pytest.fixture
def powertools_clock(monkeypatch: pytest.MonkeyPatch) -> type[PowertoolsClock]:
    monkeypatch.setattr(PowertoolsClock, "ahead", timedelta(0))
    monkeypatch.setattr(powertools_base, "datetime", PowertoolsClock)
    return PowertoolsClock


@pytest.fixture
def deployment(emulator: ChartHopEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A deployment's environment, secret and settings parameter, as template.yaml sets them."""
    for key, value in {
        "CHARTHOP_ORG_ID": emulator.config.org_id,
        "CHARTHOP_APP_NAME": emulator.config.app_name,
        "CHARTHOP_BASE_URL": emulator.base_url,
        "CHARTHOP_TOKEN_SECRET": TOKEN_SECRET,
        "SETTINGS_PARAMETER": SETTINGS_PARAMETER,
        "CHARTHOP_RETRY_BACKOFF_SECONDS": "0.01",
        "CHARTHOP_READ_TIMEOUT_SECONDS": "5",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("secretsmanager").create_secret(Name=TOKEN_SECRET, SecretString=emulator.config.token)
        put_settings({"importOptions": {"upsert": True}, "csvRules": {"maxRows": 1000}})
        runtime.reset()
        yield
        runtime.reset()


def put_settings(document: dict[str, Any]) -> None:
    boto3.client("ssm").put_parameter(
        Name=SETTINGS_PARAMETER, Type="String", Value=json.dumps(document), Overwrite=True
    )


def rotate_charthop_token(emulator: ChartHopEmulator) -> None:
    """The new token goes into the secret and ChartHop refuses the old one from now on."""
    boto3.client("secretsmanager").put_secret_value(SecretId=TOKEN_SECRET, SecretString=ROTATED)
    emulator.config.token = ROTATED


def read_process(emulator: ChartHopEmulator, process_id: str) -> int:
    """Reads a process through the current context; the status ChartHop answered."""
    runtime.sync_context().charthop.get_process(emulator.config.org_id, process_id)
    return emulator.calls_of("getProcess")[-1].status


def test_a_rotated_charthop_token_is_used_once_the_cached_one_is_older_than_max_age(
    deployment: None, emulator: ChartHopEmulator, powertools_clock: type[PowertoolsClock]
) -> None:
    process = emulator.create_sync_process()
    assert read_process(emulator, process["id"]) == 200
    rotate_charthop_token(emulator)

    powertools_clock.advance(PARAMETER_MAX_AGE + 1)

    assert read_process(emulator, process["id"]) == 200  # the new token in the Authorization header
    assert [call.status for call in emulator.calls_of("getProcess")] == [200, 200]


def test_changed_import_options_and_csv_rules_are_used_after_max_age(
    deployment: None, emulator: ChartHopEmulator, powertools_clock: type[PowertoolsClock]
) -> None:
    process = emulator.create_sync_process()
    start_import(emulator, process["id"])
    assert emulator.uploads[-1].query["upsert"] == "true"
    put_settings({"importOptions": {"upsert": False}, "csvRules": {"maxRows": 5}})

    powertools_clock.advance(PARAMETER_MAX_AGE + 1)

    start_import(emulator, process["id"])
    assert emulator.uploads[-1].query["upsert"] == "false"
    assert runtime.sync_context().csv_rules.max_rows == 5


def test_settings_are_not_read_again_within_max_age(
    deployment: None, emulator: ChartHopEmulator, powertools_clock: type[PowertoolsClock]
) -> None:
    """Within max age the warm context stays as it is, even when the parameter already changed."""
    context = runtime.sync_context()
    put_settings({"importOptions": {"upsert": False}})
    rotate_charthop_token(emulator)
    powertools_clock.advance(PARAMETER_MAX_AGE - 10)
    assert runtime.sync_context() is context


def test_a_refresh_reuses_clients_and_sessions_when_nothing_that_built_them_changed(
    deployment: None,
    emulator: ChartHopEmulator,
    powertools_clock: type[PowertoolsClock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = runtime.sync_context()
    created: list[str] = []
    create_client = botocore.session.Session.create_client

    def recording_create_client(self: botocore.session.Session, service_name: str, *args: Any, **kwargs: Any) -> Any:
        created.append(service_name)
        return create_client(self, service_name, *args, **kwargs)

    def refresh() -> Any:
        powertools_clock.advance(PARAMETER_MAX_AGE + 1)
        with monkeypatch.context() as patch:
            patch.setattr(botocore.session.Session, "create_client", recording_create_client)
            return runtime.sync_context()

    assert refresh() is context  # nothing changed: the same context, its sessions warm

    put_settings({"importOptions": {"upsert": False}})
    refreshed = refresh()
    assert refreshed is not context
    assert refreshed.charthop is context.charthop  # same token: the same HTTP session
    assert refreshed.s3 is context.s3
    assert refreshed.stepfunctions is context.stepfunctions
    assert created == []  # secrets and the parameter were read again on the clients made at first use


def test_a_store_that_cannot_be_read_keeps_the_last_values(
    deployment: None, emulator: ChartHopEmulator, powertools_clock: type[PowertoolsClock]
) -> None:
    """A Secrets Manager or SSM outage at refresh time does not fail syncs that the cached values can run."""
    context = runtime.sync_context()
    boto3.client("secretsmanager").delete_secret(SecretId=TOKEN_SECRET, ForceDeleteWithoutRecovery=True)
    powertools_clock.advance(PARAMETER_MAX_AGE + 1)
    assert runtime.sync_context() is context


def test_a_cold_context_still_fails_when_the_secret_cannot_be_read(deployment: None) -> None:
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    boto3.client("secretsmanager").delete_secret(SecretId=TOKEN_SECRET, ForceDeleteWithoutRecovery=True)
    with pytest.raises(GetParameterError):
        runtime.sync_context()


@pytest.fixture
def orgvue(monkeypatch: pytest.MonkeyPatch, deployment: None) -> Iterator[OrgvueEmulator]:
    with OrgvueEmulator(OrgvueEmulatorConfig()) as running:
        monkeypatch.setenv("ORGVUE_BASE_URL", running.base_url)
        monkeypatch.setenv("ORGVUE_TENANT_ID", running.config.tenant_id)
        monkeypatch.setenv("ORGVUE_DATASET_ID", running.config.dataset_id)
        monkeypatch.setenv("TARGET_TOKENS_SECRET", TARGET_TOKENS_SECRET)
        boto3.client("secretsmanager").create_secret(
            Name=TARGET_TOKENS_SECRET, SecretString=json.dumps({"orgvue": running.config.token})
        )
        yield running


def test_a_rotated_target_token_is_used_after_max_age(
    orgvue: OrgvueEmulator, powertools_clock: type[PowertoolsClock]
) -> None:
    from people_sync.targets.orgvue import OrgvueTarget

    def generate() -> int:
        target = runtime.sync_context("orgvue").target
        assert isinstance(target, OrgvueTarget)
        target.client.generate_file("csv")
        return orgvue.calls_of("generate")[-1].status

    assert generate() == 200
    boto3.client("secretsmanager").put_secret_value(
        SecretId=TARGET_TOKENS_SECRET, SecretString=json.dumps({"orgvue": "rotated-orgvue-jwt"})
    )
    orgvue.config.token = "rotated-orgvue-jwt"

    powertools_clock.advance(PARAMETER_MAX_AGE + 1)

    assert generate() == 200


def start_import(emulator: ChartHopEmulator, sync_id: str) -> None:
    body = b"employee id,first name\n1,Ada\n"

    def open_body() -> tuple[IO[bytes], int]:
        return io.BytesIO(body), len(body)

    staged = StagedFile(bucket="b", key=f"staging/{emulator.config.org_id}/people.csv", org_id=emulator.config.org_id)
    runtime.sync_context().target.start_import(staged, open_body, sync_id=sync_id)


def test_each_org_gets_its_own_context_with_its_own_token_and_settings(
    deployment: None, emulator: ChartHopEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contexts are built per org (issue 13): the registered org's token, app user and settings, never the stack's;
    the same org asked again gets the same context (its HTTP session stays warm)."""
    from people_sync.org_registry import OrgRecord, OrgRegistry, parse_settings
    from tests.unit.test_org_registry import create_org_table

    table = create_org_table()
    monkeypatch.setenv("ORG_TABLE", table)
    beta = emulator.add_org("beta", token="beta-token")
    boto3.client("secretsmanager").create_secret(Name="stack/orgs/beta/charthop-token", SecretString=beta.token)
    OrgRegistry(table).add(
        OrgRecord(
            "beta",
            beta.app_user_id,
            token_secret="stack/orgs/beta/charthop-token",
            settings=parse_settings({"importOptions": {"upsert": False}, "importOnUpload": False}),
        )
    )
    own, theirs = runtime.sync_context(), runtime.sync_context(org_id="beta")
    assert (own.org_id, theirs.org_id, theirs.folder) == (emulator.config.org_id, "beta", "beta")
    assert own.charthop is not theirs.charthop
    assert runtime.sync_context(org_id="beta") is theirs
    assert (own.settings.import_on_upload, theirs.settings.import_on_upload) == (True, False)
    assert theirs.settings.app_user_id == beta.app_user_id
    process = emulator.create_sync_process(org_id="beta")
    theirs.charthop.get_process("beta", process["id"])
    list(own.charthop.find_processes(emulator.config.org_id))
    assert [(c.org, c.authorization) for c in emulator.calls] == [
        ("beta", "Bearer beta-token"),
        (emulator.config.org_id, f"Bearer {emulator.config.token}"),
    ]
    with pytest.raises(OrgNotServed) as refused:
        runtime.sync_context(org_id="not-registered")
    assert refused.value.reason == "unknown"


def test_one_orgs_slow_read_does_not_hold_up_another_orgs_context(
    deployment: None, emulator: ChartHopEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offline stack runs every function on threads of one process: while one org's inputs are read
    (its registry entry, its token), another org's invocation gets its context. One lock around every read
    made all orgs' invocations queue behind each other's AWS calls (issue 13's 200-org bench stalled on it)."""
    from people_sync.org_registry import OrgRecord, OrgRegistry
    from tests.unit.test_org_registry import create_org_table

    table = create_org_table()
    monkeypatch.setenv("ORG_TABLE", table)
    beta = emulator.add_org("beta", token="beta-token")
    boto3.client("secretsmanager").create_secret(Name="stack/orgs/beta/charthop-token", SecretString=beta.token)
    OrgRegistry(table).add(OrgRecord("beta", beta.app_user_id, token_secret="stack/orgs/beta/charthop-token"))
    reading, release = threading.Event(), threading.Event()
    read_inputs = runtime._read_inputs

    def slow_for_beta(target: str, stack: Any, org_id: str, *, continuing: bool) -> Any:
        if org_id == "beta":
            reading.set()
            assert release.wait(10)
        return read_inputs(target, stack, org_id, continuing=continuing)

    monkeypatch.setattr(runtime, "_read_inputs", slow_for_beta)
    contexts: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: contexts.update(beta=runtime.sync_context(org_id="beta")))
    slow.start()
    try:
        assert reading.wait(10)
        other = threading.Thread(target=lambda: contexts.update(own=runtime.sync_context()))
        other.start()
        other.join(5)
        assert not other.is_alive(), "the stack's own org waited for beta's read"
        assert contexts["own"].org_id == emulator.config.org_id
    finally:
        release.set()
        slow.join(10)
    assert contexts["beta"].org_id == "beta"
    assert runtime.sync_context(org_id="beta") is contexts["beta"]
