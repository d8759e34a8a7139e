"""Shared fixtures: a live ChartHop emulator, fake AWS credentials, fast client retries, a fake clock and a
callback recorder."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offline.charthop_emulator import ChartHopEmulator, EmulatorConfig, drain_contract_violations
from people_sync import aws_clients
from people_sync.charthop_client import ChartHopClient, default_retry
from tests.fakes import CallbackRecorder, FakeClock

REPO_ROOT = Path(__file__).resolve().parent.parent
EVENTS = REPO_ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may reach real AWS: fake credentials, a fixed region, fresh client caches."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "PeopleSyncTests",
        "POWERTOOLS_SERVICE_NAME": "people-sync",
    }.items():
        monkeypatch.setenv(key, value)
    aws_clients.reset()
    yield
    aws_clients.reset()


@pytest.fixture(autouse=True)
def _emulator_answers_follow_the_contract() -> Iterator[None]:
    """Every ChartHop emulator answer is checked against the vendored spec: a test whose emulators answered
    outside it fails (contracts/charthop/, offline/charthop_contract.py)."""
    drain_contract_violations()  # a thread left over from an earlier test does not count here
    yield
    violations = drain_contract_violations()
    assert not violations, "the ChartHop emulator answered outside the spec:\n" + "\n".join(map(str, violations))


@pytest.fixture
def emulator() -> Iterator[ChartHopEmulator]:
    with ChartHopEmulator(EmulatorConfig()) as running:
        yield running


@pytest.fixture
def client(emulator: ChartHopEmulator) -> ChartHopClient:
    """A client with the production retry policy, only with millisecond backoff."""
    return ChartHopClient(
        emulator.config.token,
        base_url=emulator.base_url,
        timeout=(2.0, 1.0),
        retry=default_retry(total=3, backoff_factor=0.01),
    )


@pytest.fixture
def clock() -> FakeClock:
    """A clock moved by hand, for an emulator and what runs against it."""
    return FakeClock()


@pytest.fixture
def recorder() -> Iterator[CallbackRecorder]:
    """A callback endpoint that records what arrives (e.g. Orgvue's job callbacks)."""
    with CallbackRecorder() as running:
        yield running


class _QuickTime:
    """`time` for moto's retrier: a retry waits 0.3-1 s instead of up to a minute (the order and number of
    retries are unchanged)."""

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(max(0.3, min(seconds, 1.0)))


@pytest.fixture
def quick_state_machine_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step Functions' Retry intervals (2 s, then x2/x3 with jitter), cut to at most a second in moto."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    monkeypatch.setattr(retrier_decl, "time", _QuickTime())
