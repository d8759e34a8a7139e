"""Pre-flight checks of a staged CSV, before a single byte goes to a target.

The file is read once as a stream (bounded memory at any size). Each problem has a stable `code`
and a message a person can act on; the first blocking problem stops the file.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import BaseModel, Field

#: Leading bytes of files people stage by mistake, and what they are.
BINARY_SIGNATURES = {
    b"PK\x03\x04": "an Excel workbook (.xlsx) or a zip archive",
    b"\xd0\xcf\x11\xe0": "a legacy Excel (.xls) or Office file",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
}
DELIMITER_NAMES = {";": "semicolons", "\t": "tabs", "|": "pipes"}
#: Letters, digits, spaces and common punctuation; no control characters, slashes or shell metacharacters.
SAFE_NAME = re.compile(r"^[\w][\w .()\-+@,&']{0,199}$", re.UNICODE)
CHUNK = 1024 * 1024


class CsvRules(BaseModel):
    """Limits from the settings parameter (`csvRules`)."""

    max_bytes: int = Field(default=2 * 1024**3, alias="maxBytes")
    max_rows: int = Field(default=2_000_000, alias="maxRows")
    required_columns: list[str] = Field(default_factory=list, alias="requiredColumns")

    model_config = {"populate_by_name": True}


@dataclass
class CsvProblem:
    code: str
    message: str
    lines: list[int] = field(default_factory=list)


@dataclass
class CsvSummary:
    rows: int
    columns: list[str]
    size: int


class CsvRejected(Exception):
    """The file fails a pre-flight check; `problem.message` is meant for the ChartHop progress message."""

    def __init__(self, problem: CsvProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def check_name(name: str) -> None:
    stem, dot, extension = name.rpartition(".")
    if not dot or extension.lower() != "csv":
        raise CsvRejected(CsvProblem("not-csv-name", f"{name!r} is not a .csv file; export the data as CSV (UTF-8)."))
    if any(unicodedata.category(char).startswith("C") for char in name) or not SAFE_NAME.match(stem):
        raise CsvRejected(
            CsvProblem(
                "odd-file-name",
                f"The file name {name!r} has characters we do not accept; use letters, digits, spaces and -_.() only.",
            )
        )


def check_csv(stream: IO[bytes], size: int, name: str, rules: CsvRules) -> CsvSummary:
    """Raises CsvRejected with the first blocking problem; returns what the file holds otherwise."""
    check_name(name)
    if size == 0:
        raise CsvRejected(CsvProblem("empty-file", f"{name} is empty."))
    if size > rules.max_bytes:
        raise CsvRejected(
            CsvProblem("too-large", f"{name} is {size:,} bytes; the limit is {rules.max_bytes:,} bytes. Split it.")
        )
    chunks = _chunks(stream)
    first = next(chunks, b"")
    for signature, what in BINARY_SIGNATURES.items():
        if first.startswith(signature):
            raise CsvRejected(CsvProblem("not-csv", f"{name} is {what}, not a CSV; export it as CSV (UTF-8)."))
    if b"\x00" in first[:65536]:
        raise CsvRejected(CsvProblem("not-csv", f"{name} contains binary data, not CSV text."))
    text = io.TextIOWrapper(io.BufferedReader(_ChunkReader(first, chunks), CHUNK), encoding="utf-8-sig", newline="")
    return _check_rows(csv.reader(text, strict=True), size, name, rules)


def _check_rows(reader: Any, size: int, name: str, rules: CsvRules) -> CsvSummary:
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise CsvRejected(CsvProblem("empty-file", f"{name} has no header row."))
        _check_header(header, name, rules)
        rows = 0
        ragged: list[int] = []
        for row in reader:
            if not row:
                continue
            rows += 1
            if len(row) != len(header) and len(ragged) < 5:
                ragged.append(reader.line_num)
            if rows > rules.max_rows:
                raise CsvRejected(
                    CsvProblem("too-many-rows", f"{name} has more than {rules.max_rows:,} rows. Split it.")
                )
    except UnicodeDecodeError as error:
        raise CsvRejected(
            CsvProblem("not-utf8", f"{name} is not UTF-8 text ({error.reason}); save it as CSV UTF-8.")
        ) from error
    except csv.Error as error:
        raise CsvRejected(CsvProblem("malformed-csv", f"{name} is not valid CSV: {error}.")) from error
    if rows == 0:
        raise CsvRejected(CsvProblem("header-only", f"{name} has a header row but no data rows."))
    if ragged:
        lines = ", ".join(str(line) for line in ragged)
        raise CsvRejected(
            CsvProblem(
                "ragged-rows",
                f"{name} has rows whose number of fields differs from the header's {len(header)} (lines {lines}).",
                ragged,
            )
        )
    return CsvSummary(rows=rows, columns=header, size=size)


def _check_header(header: list[str], name: str, rules: CsvRules) -> None:
    if len(header) == 1:
        for delimiter, what in DELIMITER_NAMES.items():
            if delimiter in header[0]:
                raise CsvRejected(
                    CsvProblem("wrong-delimiter", f"{name} looks separated by {what}; ChartHop needs commas.")
                )
    names = [column.strip() for column in header]
    if any(not column for column in names):
        raise CsvRejected(CsvProblem("blank-column", f"{name} has a column without a name in its header."))
    lowered = [column.lower() for column in names]
    duplicates = sorted({column for column in names if lowered.count(column.lower()) > 1})
    if duplicates:
        raise CsvRejected(CsvProblem("duplicate-columns", f"{name} repeats the columns {', '.join(duplicates)}."))
    present = {column.lower() for column in names}
    missing = [column for column in rules.required_columns if column.lower() not in present]
    if missing:
        raise CsvRejected(CsvProblem("missing-columns", f"{name} lacks the required columns {', '.join(missing)}."))


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


class _ChunkReader(io.RawIOBase):
    """A binary reader over the chunks still to come, after the first one was peeked at."""

    def __init__(self, first: bytes, rest: Iterator[bytes]) -> None:
        self._chunk = memoryview(first)
        self._offset = 0
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        while self._offset >= len(self._chunk):
            chunk = next(self._rest, None)
            if chunk is None:
                return 0
            self._chunk, self._offset = memoryview(chunk), 0
        size = min(len(target), len(self._chunk) - self._offset)
        target[:size] = self._chunk[self._offset : self._offset + size]
        self._offset += size
        return size
