"""The README's first command, end to end: the offline demo as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_offline_demo_ends_done_with_progress_strictly_increasing_to_one() -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'layers' / 'shared'}{os.pathsep}{REPO_ROOT}"}
    result = subprocess.run(
        [sys.executable, "-m", "offline.demo", "--import-seconds", "1.5"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DEMO OK" in result.stdout
    verdicts = re.findall(r"=> (\w+): ", result.stdout)
    assert verdicts == ["DONE", "DONE"]  # the upload-driven sync and the "Sync Now" sync
    assert result.stdout.count("strictly increasing to 1.0") == 2
    assert "webhook answered HTTP 202" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_offline_demo_syncs_into_every_target() -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'layers' / 'shared'}{os.pathsep}{REPO_ROOT}"}
    result = subprocess.run(
        [sys.executable, "-m", "offline.demo", "--target", "all", "--import-seconds", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = re.findall(r"=> (\w+): ", result.stdout)
    assert verdicts == ["DONE", "DONE", "DONE", "DONE"]  # ChartHop upload and Sync Now, Orgvue, ELMA365
    assert result.stdout.count("strictly increasing to 1.0") == 4
    assert "Orgvue called back 1 time(s); the dataset holds 4 items" in result.stdout
    assert "ELMA365 imported 25 rows in 3 chunks [10, 10, 5]" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
