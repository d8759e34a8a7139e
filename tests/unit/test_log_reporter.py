"""Orgvue and ELMA365 syncs are closed once, whichever container closes them (issue 11 item 7): "closed" is
an item of the sync table, not a set in one container's memory."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from people_sync import runtime
from people_sync.loop_memory import CheckInProgress
from people_sync.targets.base import ProgressReporter
from people_sync.targets.log_reporter import CLOSED_TTL_SECONDS, FINAL_LINE_LEASE_SECONDS, LogProgressReporter
from tests.fakes import FakeClock

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TABLE = "sync-table"


@pytest.fixture
def table() -> Iterator[DynamoDBClient]:
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def finished_lines(caplog: pytest.LogCaptureFixture, sync_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "sync finished" and getattr(r, "sync_id", "") == sync_id]


def fail(reporter: ProgressReporter, sync_id: str) -> None:
    reporter.finish(sync_id, succeeded=False, message="its status loop was stopped", results={}, summary="")


def test_a_sync_closed_in_one_container_is_closed_in_another(
    table: DynamoDBClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="people_sync.progress")
    status_loop = LogProgressReporter("orgvue", table=TABLE, client=table)
    watchdog = LogProgressReporter("orgvue", table=TABLE, client=table)  # a finalizer in another container
    sync_id = status_loop.start_sync("people.csv", "s3://b/staging/orgvue/people.csv", "v1")
    assert not watchdog.is_closed(sync_id)

    fail(status_loop, sync_id)

    assert watchdog.is_closed(sync_id)
    fail(watchdog, sync_id)  # e.g. both closed it at once, or the container restarted
    fail(LogProgressReporter("orgvue", table=TABLE, client=table), sync_id)
    assert len(finished_lines(caplog, sync_id)) == 1
    assert finished_lines(caplog, sync_id)[0].levelno == logging.ERROR


def test_the_closed_item_expires_with_the_table_ttl(table: DynamoDBClient) -> None:
    clock = FakeClock(1_700_000_000.0)
    reporter = LogProgressReporter("elma365", table=TABLE, client=table, clock=clock)
    reporter.finish("elma365-abc", succeeded=True, message="done", results={"created": 1}, summary="")
    item = table.get_item(TableName=TABLE, Key={"id": {"S": "closed#elma365-abc"}})["Item"]
    assert item["expiration"] == {"N": str(int(clock.now) + CLOSED_TTL_SECONDS)}
    assert item["status"] == {"S": "DONE"}


def test_a_table_that_cannot_be_written_still_logs_the_finish(
    table: DynamoDBClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Better a second line than none: the close is what an operator must see."""
    caplog.set_level(logging.INFO, logger="people_sync.progress")
    reporter = LogProgressReporter("orgvue", table="no-such-table", client=table)
    fail(reporter, "orgvue-1")
    assert len(finished_lines(caplog, "orgvue-1")) == 1


def test_without_a_table_closed_is_remembered_in_memory(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="people_sync.progress")
    reporter = LogProgressReporter("orgvue")
    fail(reporter, "orgvue-1")
    fail(reporter, "orgvue-1")
    assert reporter.is_closed("orgvue-1")
    assert not reporter.is_closed("orgvue-2")
    assert len(finished_lines(caplog, "orgvue-1")) == 1


def test_the_runtime_gives_further_targets_a_reporter_on_the_sync_table(
    table: DynamoDBClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "CHARTHOP_ORG_ID": "org",
        "CHARTHOP_APP_NAME": "people-sync",
        "CHARTHOP_TOKEN_SECRET": "charthop-token",
        "SETTINGS_PARAMETER": "/people-sync/settings",
        "SYNC_TABLE": TABLE,
        "ORGVUE_BASE_URL": "http://orgvue.invalid",
        "TARGET_TOKENS_SECRET": "target-tokens",
    }.items():
        monkeypatch.setenv(key, value)
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name="charthop-token", SecretString="t")
    secrets.create_secret(Name="target-tokens", SecretString=json.dumps({"orgvue": "o"}))
    boto3.client("ssm").put_parameter(Name="/people-sync/settings", Type="String", Value="{}")
    runtime.reset()
    try:
        first_container = runtime.sync_context("orgvue").reporter
        fail(first_container, "orgvue-1")
        runtime.reset()  # a new container
        assert runtime.sync_context("orgvue").reporter.is_closed("orgvue-1")
    finally:
        runtime.reset()


class Killed(BaseException):
    """A Lambda kill (timeout, out of memory): no error handling runs."""


def test_a_close_killed_between_its_mark_and_its_line_is_finished_by_a_later_close(
    table: DynamoDBClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Campaign seed 225 (I2): the first close marked the sync closed and died before "sync finished"; the
    retry found the mark and wrote nothing, so the sync was never shown closed."""
    caplog.set_level(logging.INFO, logger="people_sync.progress")
    clock = FakeClock(1_700_000_000.0)
    dying = LogProgressReporter("orgvue", table=TABLE, client=table, clock=clock)
    real_error = logging.Logger.error

    def killed_at_the_line(self: logging.Logger, msg: object, *args: object, **kwargs: object) -> None:
        if msg == "sync finished":
            raise Killed
        real_error(self, msg, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(logging.Logger, "error", killed_at_the_line)
    with pytest.raises(Killed):
        fail(dying, "orgvue-1")
    monkeypatch.undo()
    assert finished_lines(caplog, "orgvue-1") == []
    assert not dying.is_closed("orgvue-1")

    retry = LogProgressReporter("orgvue", table=TABLE, client=table, clock=clock)
    with pytest.raises(CheckInProgress):  # the claim may still be a live writer's: come back later
        retry.finish("orgvue-1", succeeded=True, message="a later decision", results={}, summary="")
    clock.advance(FINAL_LINE_LEASE_SECONDS + 1)
    retry.finish("orgvue-1", succeeded=True, message="a later decision", results={}, summary="")
    retry.finish("orgvue-1", succeeded=True, message="a later decision", results={}, summary="")

    lines = finished_lines(caplog, "orgvue-1")
    assert len(lines) == 1
    assert lines[0].levelno == logging.ERROR  # the first close's decision is the one written
    assert vars(lines[0])["progress_message"] == "its status loop was stopped"
    assert retry.is_closed("orgvue-1")
    assert LogProgressReporter("orgvue", table=TABLE, client=table).is_closed("orgvue-1")


def test_a_mark_from_before_the_two_steps_counts_as_written(
    table: DynamoDBClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="people_sync.progress")
    table.put_item(TableName=TABLE, Item={"id": {"S": "closed#orgvue-old"}, "status": {"S": "DONE"}})
    reporter = LogProgressReporter("orgvue", table=TABLE, client=table)
    assert reporter.is_closed("orgvue-old")
    fail(reporter, "orgvue-old")
    assert finished_lines(caplog, "orgvue-old") == []
