"""Cold start as deployed (tracing on): each handler's X-Ray patches only the libraries it calls out with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

#: Imports a handler module as the Lambda runtime does, then reports what the X-Ray SDK patched.
PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from aws_xray_sdk.core import patcher
print(json.dumps({
    "tracing": not module.tracer.disabled,
    "patched": sorted(patcher._PATCHED_MODULES),
    "loaded": sorted(name for name in ("sqlite3", "requests") if name in sys.modules),
    "people_sync": sorted(name for name in sys.modules if name.startswith("people_sync")),
}))
"""


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


@pytest.mark.parametrize("handler", ["webhook", "target_callback"])
def test_handlers_that_never_call_a_target_do_not_import_its_client_at_cold_start(handler: str) -> None:
    report = cold_import(handler)
    assert report["loaded"] == []
    assert "people_sync.sync_service" not in report["people_sync"]
