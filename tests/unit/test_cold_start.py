"""Cold start: what each handler loads as deployed (tracing on), and what its first invocation builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws

from people_sync import aws_clients, config
from tests.conftest import REPO_ROOT
from tests.fakes import app_settings

#: Imports a handler module as the Lambda runtime does, then reports what the X-Ray SDK patched, what was
#: imported and which AWS clients were created.
PROBE = """
import importlib.util, json, sys
import botocore.session
created = []
create_client = botocore.session.Session.create_client
def recording_create_client(self, service_name, *args, **kwargs):
    created.append(service_name)
    return create_client(self, service_name, *args, **kwargs)
botocore.session.Session.create_client = recording_create_client
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from aws_xray_sdk.core import patcher
print(json.dumps({
    "tracing": not module.tracer.disabled,
    "patched": sorted(patcher._PATCHED_MODULES),
    "loaded": sorted(name for name in ("sqlite3", "requests") if name in sys.modules),
    "people_sync": sorted(name for name in sys.modules if name.startswith("people_sync")),
    "clients": created,
}))
"""


HANDLERS = sorted(path.name for path in (REPO_ROOT / "functions").iterdir() if (path / "app.py").exists())


def cold_import(handler: str) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key != "POWERTOOLS_TRACE_DISABLED"}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]),
        LAMBDA_TASK_ROOT="/var/task",  # what Lambda sets: Powertools Tracer is on, as `Tracing: Active` deploys it
        AWS_XRAY_CONTEXT_MISSING="IGNORE_ERROR",
    )
    path = REPO_ROOT / "functions" / handler / "app.py"
    result = subprocess.run(  # noqa: S603 - our own handler modules, fixed arguments
        [sys.executable, "-c", PROBE, str(path)], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(
    ("handler", "patched"),
    [
        ("webhook", ["botocore"]),
        ("target_callback", ["botocore"]),
        ("import_starter", ["botocore", "requests"]),
        ("status_checker", ["botocore", "requests"]),
        ("sync_finalizer", ["botocore", "requests"]),
    ],
)
def test_tracing_patches_only_the_libraries_the_handler_calls_out_with(handler: str, patched: list[str]) -> None:
    report = cold_import(handler)
    assert report["tracing"] is True
    assert report["patched"] == patched
    assert "sqlite3" not in report["loaded"]  # Tracer's default (patch everything supported) imports it


@pytest.mark.parametrize("handler", HANDLERS)
def test_importing_a_handler_creates_no_aws_client(handler: str) -> None:
    """Clients are created at first use, once per container (people_sync.aws_clients); the import stays lean."""
    assert cold_import(handler)["clients"] == []


@pytest.mark.parametrize("handler", ["webhook", "target_callback"])
def test_handlers_that_never_call_a_target_do_not_import_its_client_at_cold_start(handler: str) -> None:
    report = cold_import(handler)
    assert report["loaded"] == []
    assert "people_sync.sync_service" not in report["people_sync"]


def test_secrets_and_settings_are_read_without_a_boto3_session_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Powertools' get_secret/get_parameter would each build a session (endpoint data loaded again)."""
    with mock_aws():
        boto3.client("secretsmanager").create_secret(Name="charthop-token", SecretString=" token \n")
        boto3.client("ssm").put_parameter(
            Name="/people-sync/settings", Type="String", Value=json.dumps({"importOptions": {"upsert": False}})
        )
        sessions: list[boto3.session.Session] = []
        original_init = boto3.session.Session.__init__

        def counting_init(self: boto3.session.Session, *args: Any, **kwargs: Any) -> None:
            sessions.append(self)
            original_init(self, *args, **kwargs)

        monkeypatch.setattr(boto3.session.Session, "__init__", counting_init)
        settings = app_settings(token_secret_name="charthop-token", settings_parameter_name="/people-sync/settings")

        assert config.charthop_token(settings) == "token"
        assert config.import_options(settings).upsert is False
        assert sessions == []


def test_clients_are_created_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's default session is not thread-safe while it creates clients; offline, functions run on threads."""
    inside: list[int] = []
    overlapped = threading.Event()
    lock = threading.Lock()

    def slow_client(service: str) -> str:
        with lock:
            inside.append(1)
            if len(inside) > 1:
                overlapped.set()
        time.sleep(0.05)
        with lock:
            inside.pop()
        return service

    monkeypatch.setattr(boto3, "client", slow_client)
    factories = [aws_clients.s3, aws_clients.dynamodb, aws_clients.stepfunctions, aws_clients.secretsmanager]
    threads = [threading.Thread(target=factory) for factory in factories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not overlapped.is_set()
    assert str(aws_clients.dynamodb()) == "dynamodb"  # created by the fake above, then cached
