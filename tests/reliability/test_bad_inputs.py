"""The bad-input corpus through the real handlers and state machine: a clear ChartHop error, a report
in failed/, nothing sent to ChartHop, nothing lost."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import pytest

from offline.charthop_emulator import Fault, ImportBehaviour
from offline.harness import Offline, offline_environment
from tests.conftest import EVENTS

pytestmark = pytest.mark.integration
ROSTER = (EVENTS / "roster.csv").read_bytes()
HEADER = ROSTER.split(b"\n", 1)[0] + b"\n"


def xlsx_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


def rows(count: int) -> bytes:
    return HEADER + b"".join(f"E{i},A,B,T,D,L,,2020-01-01,a{i}@example.com\n".encode() for i in range(count))


# (case id, key under staging/<org>/ or a full key starting with "/", body, expected problem code, message part)
BAD_INPUTS = [
    ("empty-file", "roster.csv", b"", "empty-file", "is empty"),
    ("header-only", "roster.csv", HEADER, "header-only", "no data rows"),
    ("blank-lines-only", "roster.csv", b"\n\n\n", "empty-file", "no header row"),
    (
        "not-utf8",
        "roster.csv",
        HEADER + "E1,Jürgen,Müller,T,D,L,,2020-01-01,j@example.com\n".encode("latin-1"),
        "not-utf8",
        "not UTF-8",
    ),
    ("semicolons", "roster.csv", ROSTER.replace(b",", b";"), "wrong-delimiter", "semicolons"),
    ("tabs", "roster.csv", ROSTER.replace(b",", b"\t"), "wrong-delimiter", "tabs"),
    ("duplicate-columns", "roster.csv", b"Employee ID,Title,title\nE1,a,b\n", "duplicate-columns", "Title, title"),
    ("blank-column", "roster.csv", b"Employee ID,,Title\nE1,a,b\n", "blank-column", "without a name"),
    ("missing-required", "roster.csv", b"First Name,Last Name\nAda,Lovelace\n", "missing-columns", "Employee ID"),
    ("ragged-rows", "roster.csv", HEADER + b"E1,Ada,Lovelace\n", "ragged-rows", "lines 2"),
    ("malformed-quotes", "roster.csv", b'Employee ID,Name\nE1,"Ada\n', "malformed-csv", "not valid CSV"),
    ("too-many-rows", "roster.csv", rows(1001), "too-many-rows", "more than 1,000 rows"),
    ("too-large", "roster.csv", HEADER + b"x" * 1_100_000, "too-large", "limit is 1,000,000 bytes"),
    ("xlsx-renamed", "roster.csv", xlsx_bytes(), "not-csv", "Excel workbook"),
    ("gzip-renamed", "roster.csv", b"\x1f\x8b\x08\x00" + b"\x00" * 40, "not-csv", "gzip"),
    ("binary", "roster.csv", b"Employee ID\x00\x01\x02", "not-csv", "binary data"),
    ("xlsx-extension", "roster.xlsx", xlsx_bytes(), "not-csv-name", "is not a .csv file"),
    ("odd-file-name", "roster;rm -rf *.csv", ROSTER, "odd-file-name", "characters we do not accept"),
    ("control-char-name", "ros\u0007ter.csv", ROSTER, "odd-file-name", "characters we do not accept"),
    ("nested-folder", "sub/roster.csv", ROSTER, "wrong-place", "must be staged as"),
    ("unconfigured-target", "/staging/orgvue/roster.csv", ROSTER, "wrong-place", "no target of this deployment reads"),
    ("no-org-folder", "/staging/roster.csv", ROSTER, "wrong-place", "must be staged as"),
]


@pytest.fixture
def offline() -> Iterator[Offline]:
    with offline_environment(
        import_behaviour=ImportBehaviour(duration_s=0.2),
        parameters={"RequiredColumns": "Employee ID", "MaxRows": "1000", "MaxFileMegabytes": "1"},
    ) as running:
        yield running


@pytest.mark.parametrize(("case", "name", "body", "code", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_reported_and_kept(
    offline: Offline, case: str, name: str, body: bytes, code: str, message: str
) -> None:
    key = name[1:] if name.startswith("/") else offline.staged_key(name)
    offline.put(key, body)
    offline.wait_idle()
    [sync] = offline.sync_processes()
    process = offline.wait_for_process(sync["id"])
    assert process["status"] == "ERROR"
    assert message in process["message"], process["message"]
    assert "Nothing was imported; the file was moved to s3://" in process["message"]
    assert offline.emulator.uploads == []  # nothing reached ChartHop's import
    [report] = offline.failed_reports()
    assert (report["code"], report["file"]) == (code, f"s3://{offline.bucket}/{key}")
    assert offline.staged_keys() == []  # moved, not copied and left behind ...
    moved = report["movedTo"].split(f"s3://{offline.bucket}/", 1)[1]
    assert offline.read(moved) == body  # ... and not lost


def test_a_file_in_an_unknown_orgs_folder_is_set_aside_and_shown_in_no_charthop(offline: Offline) -> None:
    """Another org's folder (one this deployment does not serve): no ChartHop is told, not even the stack's own
    (the report would show another customer's file names); the file is kept in failed/<that folder>/ with its report."""
    key = "staging/some-other-org/roster.csv"
    offline.put(key, ROSTER)
    offline.wait_idle()
    assert offline.sync_processes() == []
    assert offline.emulator.calls == []
    [report] = offline.failed_reports()
    assert (report["code"], report["orgReason"], report["file"]) == (
        "org-not-served",
        "unknown",
        f"s3://{offline.bucket}/{key}",
    )
    assert "some-other-org is not registered with this deployment" in report["message"]
    moved = report["movedTo"].split(f"s3://{offline.bucket}/", 1)[1]
    assert moved.startswith("failed/some-other-org/")
    assert offline.staged_keys() == []
    assert offline.read(moved) == ROSTER


def test_utf8_with_bom_is_accepted(offline: Offline) -> None:
    offline.stage("roster.csv", b"\xef\xbb\xbf" + ROSTER)
    offline.wait_idle()
    [sync] = offline.sync_processes()
    assert offline.wait_for_process(sync["id"])["status"] == "DONE"
    assert offline.emulator.uploads[0].rows == 25
    assert offline.failed_reports() == []


def test_charthop_refusing_the_file_moves_it_to_failed(offline: Offline) -> None:
    offline.emulator.inject("importDataCsv", Fault.http(400))
    offline.stage("roster.csv", ROSTER)
    offline.wait_idle()
    [sync] = offline.sync_processes()
    process = offline.wait_for_process(sync["id"])
    assert process["message"].startswith("ChartHop refused roster.csv")
    assert offline.failed_reports()[0]["code"] == "rejected-by-target"
    assert offline.staged_keys() == []


def test_charthop_down_keeps_the_file_staged_for_a_retry(offline: Offline) -> None:
    offline.emulator.inject("importDataCsv", *[Fault.http(503)] * 4)
    offline.stage("roster.csv", ROSTER)
    offline.wait_idle()
    [sync] = offline.sync_processes()
    process = offline.wait_for_process(sync["id"])
    assert process["status"] == "ERROR"
    assert "press Sync Now (ChartHop) or stage it again to try again" in process["message"]
    assert offline.staged_keys() == [offline.staged_key("roster.csv")]
    assert offline.failed_reports() == []
