"""Pre-flight CSV rules on in-memory streams (the end-to-end corpus is in tests/reliability)."""

from __future__ import annotations

import io

import pytest

from people_sync import csv_checks
from people_sync.csv_checks import CsvRejected, CsvRules, check_csv


def check(body: bytes, name: str = "roster.csv", rules: CsvRules | None = None) -> csv_checks.CsvSummary:
    return check_csv(io.BytesIO(body), len(body), name, rules or CsvRules())


def code_of(body: bytes, **kwargs: object) -> str:
    with pytest.raises(CsvRejected) as rejected:
        check(body, **kwargs)  # type: ignore[arg-type]
    return rejected.value.problem.code


def test_a_good_file_is_summarised() -> None:
    summary = check(b'Employee ID,Name\nE1,Ada\nE2,"Hopper, Grace"\n')
    assert (summary.rows, summary.columns) == (2, ["Employee ID", "Name"])


def test_multibyte_characters_split_across_read_chunks_are_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_checks, "CHUNK", 7)
    body = b"Employee ID,Name\n" + "E1,Jürgen Müller 東京\n".encode() * 50
    assert check(b"\xef\xbb\xbf" + body).rows == 50


def test_ragged_row_line_numbers_count_quoted_newlines() -> None:
    with pytest.raises(CsvRejected) as rejected:
        check(b'Employee ID,Note\nE1,"two\nlines"\nE2\nE3,ok\n')
    assert rejected.value.problem.lines == [4]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("roster.CSV", None),
        ("Roster 2026 (final).csv", None),
        ("Jürgen_export-1.csv", None),
        ("roster.txt", "not-csv-name"),
        (".csv", "odd-file-name"),
        ("../roster.csv", "odd-file-name"),
        ("roster$(id).csv", "odd-file-name"),
        ("roster\n.csv", "odd-file-name"),
    ],
)
def test_file_names(name: str, code: str | None) -> None:
    if code is None:
        csv_checks.check_name(name)
    else:
        with pytest.raises(CsvRejected) as rejected:
            csv_checks.check_name(name)
        assert rejected.value.problem.code == code


def test_required_columns_ignore_case_and_spaces() -> None:
    rules = CsvRules(requiredColumns=["employee id", "Name"])
    assert check(b" Employee ID ,NAME\nE1,Ada\n", rules=rules).rows == 1
    assert code_of(b"Employee ID\nE1\n", rules=rules) == "missing-columns"


def test_row_limit_stops_reading_early() -> None:
    body = b"Employee ID\n" + b"E\n" * 50
    assert code_of(body, rules=CsvRules(maxRows=10)) == "too-many-rows"


def read_all(upload: csv_checks.CheckedUpload, block: int = 5) -> bytes:
    received = b""
    while chunk := upload.read(block):
        received += chunk
    return received


def test_checked_upload_passes_a_good_file_through_unchanged() -> None:
    body = b"Employee ID,Name\nE1,Ada\nE2,Grace\n" * 3
    upload = csv_checks.CheckedUpload(io.BytesIO(body), len(body), "roster.csv", CsvRules())
    assert read_all(upload) == body
    assert upload.read(5) == b""  # reading past the end stays at the end
    assert upload.summary is not None
    assert upload.summary.rows == 8


def test_checked_upload_withholds_the_last_bytes_of_a_refused_file() -> None:
    body = b"Employee ID,Name\nE1,Ada\nE2\n"
    upload = csv_checks.CheckedUpload(io.BytesIO(body), len(body), "roster.csv", CsvRules())
    received: list[bytes] = []

    def send() -> None:
        while chunk := upload.read(5):
            received.append(chunk)

    with pytest.raises(CsvRejected) as rejected:
        send()
    assert rejected.value.problem.code == "ragged-rows"
    assert len(b"".join(received)) < len(body)  # the target never got the whole file


def test_checked_upload_refuses_cheap_problems_before_reading() -> None:
    class Unreadable(io.BytesIO):
        def read(self, *_: object) -> bytes:
            raise AssertionError("must not be read")

    with pytest.raises(CsvRejected, match="limit"):
        csv_checks.CheckedUpload(Unreadable(), 10, "roster.csv", CsvRules(maxBytes=5))
    with pytest.raises(CsvRejected, match="characters"):
        csv_checks.CheckedUpload(Unreadable(), 10, "ro$ter.csv", CsvRules())


def test_abandoned_checked_upload_stops_its_thread() -> None:
    body = b"Employee ID\n" + b"E\n" * 1000
    upload = csv_checks.CheckedUpload(io.BytesIO(body), len(body), "roster.csv", CsvRules())
    upload.read(10)
    upload.close()
    upload._thread.join(timeout=2)
    assert not upload._thread.is_alive()


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_blank_lines_are_not_rows_on_either_path(newline: str) -> None:
    single = f"Employee ID{newline}E1{newline}{newline}E2{newline}".encode()
    assert check(single).rows == 2
    wide = f"Employee ID,Name{newline}{newline}E1,Ada{newline}E2,Grace{newline}".encode()
    assert check(wide).rows == 2


def test_large_files_are_checked_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_checks, "CHUNK", 64)
    body = b"Employee ID,Note\n" + b'E1,"multi\nline, quoted"\n' * 20 + b"E2,plain\n" * 50 + b"E3\n"
    with pytest.raises(CsvRejected) as rejected:
        check(body)
    assert rejected.value.problem.lines == [1 + 20 * 2 + 50 + 1]  # header, quoted two-line rows, plain rows, E3
