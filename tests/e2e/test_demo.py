"""The README's first command, end to end: the offline demo as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    """`make demo` without make: the demo module in a fresh interpreter, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'layers' / 'shared'}{os.pathsep}{REPO_ROOT}"}
    return subprocess.run(  # noqa: S603 - our own module, arguments from the tests
        [sys.executable, "-m", "offline.demo", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_offline_demo_ends_done_with_progress_strictly_increasing_to_one() -> None:
    result = run_demo("--import-seconds", "1.5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DEMO OK" in result.stdout
    verdicts = re.findall(r"=> (\w+): ", result.stdout)
    assert verdicts == ["DONE", "DONE"]  # the upload-driven sync and the "Sync Now" sync
    assert result.stdout.count("strictly increasing to 1.0") == 2
    assert "webhook answered HTTP 202" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_offline_demo_syncs_into_every_target() -> None:
    result = run_demo("--target", "all", "--import-seconds", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = re.findall(r"=> (\w+): ", result.stdout)
    assert verdicts == ["DONE", "DONE", "DONE", "DONE"]  # ChartHop upload and Sync Now, Orgvue, ELMA365
    assert result.stdout.count("strictly increasing to 1.0") == 4
    assert "Orgvue called back 1 time(s); the dataset holds 4 items" in result.stdout
    assert "ELMA365 imported 25 rows in 3 chunks [10, 10, 5]" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_offline_demo_serves_three_orgs_at_once_one_with_a_bad_token() -> None:
    result = run_demo("--orgs", "3", "--import-seconds", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DEMO OK: 3 orgs, each in its own org" in result.stdout
    bars = re.findall(r"^   (\S+) +\[[#.]+\] +(\d+)% (\w+) ", result.stdout, flags=re.MULTILINE)
    good = [(org, percent, status) for org, percent, status in bars if org != "org-3"]
    assert len(good) == 4  # two orgs, each an upload and a Sync Now
    assert {(percent, status) for _, percent, status in good} == {("100", "DONE")}
    assert ("org-3", "0", "ERROR") in bars
    assert "with another org's token: 0" in result.stdout
    # the only failure is the bad org's: ChartHop refused its token
    failures = set(re.findall(r"people_sync\.errors\.(\w+):", result.stdout + result.stderr))
    assert failures <= {"ChartHopRejected", "ChartHopTokenRefused"}
