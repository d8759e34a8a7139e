"""The offline stack's S3 events carry what S3 sends for the versioned staging bucket.

The import starter's idempotency key is the object version, so an event without `versionId` would make two
uploads of the same bytes to the same key look like one delivery offline, where in AWS they are two imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from offline.charthop_emulator import ImportBehaviour
from offline.harness import Offline, offline_environment
from tests.conftest import EVENTS

pytestmark = pytest.mark.integration
ROSTER = (EVENTS / "roster.csv").read_bytes()


@pytest.fixture
def offline() -> Iterator[Offline]:
    with offline_environment(import_behaviour=ImportBehaviour(duration_s=0.2)) as running:
        yield running


def upload_and_finish(offline: Offline) -> tuple[str, dict[str, Any]]:
    """Stages the roster, waits for its sync to end; returns the new version's id and the sync process."""
    known = {process["id"] for process in offline.sync_processes()}
    s3 = boto3.client("s3", region_name=offline.stack.region)
    version_id = s3.put_object(Bucket=offline.bucket, Key=offline.staged_key("roster.csv"), Body=ROSTER)["VersionId"]
    offline.wait_idle()  # the S3 notification's invocation has run: its sync exists, if it started one
    process = offline.wait_for_process(str(offline.wait_for_new_sync(known, timeout=5)["id"]))
    return version_id, process


def created_records(offline: Offline) -> list[dict[str, Any]]:
    """The ObjectCreated records the import starter received, in delivery order."""
    return [
        record
        for invocation in offline.runtime.invocations_of("ImportStarterFunction")
        for record in invocation.event.get("Records", [])
        if record["eventName"].startswith("ObjectCreated:")
    ]


def test_the_event_names_the_new_version_as_s3_does(offline: Offline) -> None:
    version_id, process = upload_and_finish(offline)
    assert process["status"] == "DONE", offline.dump(process["id"])
    [record] = created_records(offline)
    s3_object = record["s3"]["object"]
    assert s3_object["versionId"] == version_id
    assert s3_object["size"] == len(ROSTER)
    assert s3_object["eTag"]
    assert int(s3_object["sequencer"], 16) > 0


def test_two_uploads_of_the_same_bytes_are_two_imports(offline: Offline) -> None:
    first_version, first = upload_and_finish(offline)
    second_version, second = upload_and_finish(offline)
    assert first_version != second_version
    assert [first["status"], second["status"]] == ["DONE", "DONE"], offline.dump(second["id"])
    assert len(offline.emulator.calls_of("importDataCsv")) == 2
    records = created_records(offline)
    assert [record["s3"]["object"]["versionId"] for record in records] == [first_version, second_version]
    # S3 orders the events of one key by their sequencer (hex strings of one length per key).
    first_sequencer, second_sequencer = (record["s3"]["object"]["sequencer"] for record in records)
    assert int(second_sequencer, 16) > int(first_sequencer, 16)
