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
