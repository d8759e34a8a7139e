"""Pre-flight checks of a staged CSV, before a single byte goes to a target.

The file is read once as a stream (bounded memory at any size). Each problem has a stable `code`
and a message a person can act on; the first blocking problem stops the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import queue
import re
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

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
_NOT_COMMA_OR_NEWLINE = bytes(range(256)).translate(None, b",\n")


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


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


def check_before_reading(name: str, size: int, rules: CsvRules) -> None:
    """What can be refused from the name and size alone, before a byte is read."""
    check_name(name)
    if size == 0:
        raise CsvRejected(CsvProblem("empty-file", f"{name} is empty."))
    if size > rules.max_bytes:
        raise CsvRejected(
            CsvProblem("too-large", f"{name} is {size:,} bytes; the limit is {rules.max_bytes:,} bytes. Split it.")
        )


def check_csv(stream: Readable, size: int, name: str, rules: CsvRules) -> CsvSummary:
    """Raises CsvRejected with the first blocking problem; returns what the file holds otherwise."""
    check_before_reading(name, size, rules)
    chunks = _chunks(stream)
    first = next(chunks, b"")
    for signature, what in BINARY_SIGNATURES.items():
        if first.startswith(signature):
            raise CsvRejected(CsvProblem("not-csv", f"{name} is {what}, not a CSV; export it as CSV (UTF-8)."))
    if b"\x00" in first[:65536]:
        raise CsvRejected(CsvProblem("not-csv", f"{name} contains binary data, not CSV text."))
    if first.startswith(codecs.BOM_UTF8):
        first = first[len(codecs.BOM_UTF8) :]
    return _check_rows(_record_blocks(itertools.chain([first], chunks)), size, name, rules)


def _check_rows(blocks: Iterator[tuple[bytes, int]], size: int, name: str, rules: CsvRules) -> CsvSummary:
    header: list[str] | None = None
    rows = 0
    ragged: list[int] = []
    try:
        for block, first_line in blocks:
            if header is None:
                header, block, first_line = _take_header(block, first_line, name, rules)
            block_rows, block_ragged = _count_rows(block, first_line, len(header))
            rows += block_rows
            ragged.extend(block_ragged[: 5 - len(ragged)])
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
    if header is None:
        raise CsvRejected(CsvProblem("empty-file", f"{name} has no header row."))
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


def _record_blocks(chunks: Iterator[bytes]) -> Iterator[tuple[bytes, int]]:
    """Large blocks of whole records, with their first line number. Cut at newlines outside quotes:
    UTF-8 never puts a newline or quote byte inside a character, so no character is split either."""
    carry, line = b"", 1
    for chunk in chunks:
        data = carry + chunk
        cut = _last_record_end(data)
        if cut < 0:
            carry = data
            continue
        complete, carry = data[: cut + 1], data[cut + 1 :]
        yield complete, line
        line += complete.count(b"\n")
    if carry:
        yield carry, line


def _last_record_end(data: bytes) -> int:
    cut = data.rfind(b"\n")
    if b'"' in data:
        while cut >= 0 and data.count(b'"', 0, cut) % 2:
            cut = data.rfind(b"\n", 0, cut)
    return cut


def _take_header(block: bytes, first_line: int, name: str, rules: CsvRules) -> tuple[list[str], bytes, int]:
    reader = csv.reader(io.StringIO(block.decode("utf-8")), strict=True)
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        raise CsvRejected(CsvProblem("empty-file", f"{name} has no header row."))
    _check_header(header, name, rules)
    position = -1
    for _ in range(reader.line_num):
        position = block.find(b"\n", position + 1)
        if position < 0:
            return header, b"", first_line + reader.line_num
    return header, block[position + 1 :], first_line + reader.line_num


def _count_rows(block: bytes, first_line: int, width: int) -> tuple[int, list[int]]:
    """Data rows in a block and the line numbers of ragged ones.

    The common case (no quotes, no blank lines) is checked at C speed: with everything but commas and
    newlines deleted, a well-formed block is exactly `width - 1` commas and a newline per row. With more
    than one column that comparison also fails on a blank line (no commas), so only single-column files
    search the block for blank lines (a search that costs more than the rest of this check).
    """
    text = block.decode("utf-8")  # validates the encoding of every byte
    if b'"' in block:
        reader = csv.reader(io.StringIO(text), strict=True)
        rows, ragged = 0, []
        for row in reader:
            if row:
                rows += 1
                if len(row) != width:
                    ragged.append(first_line + reader.line_num - 1)
        return rows, ragged
    terminated = block if block.endswith(b"\n") or not block else block + b"\n"
    commas_and_newlines = terminated.translate(None, _NOT_COMMA_OR_NEWLINE)
    lines = commas_and_newlines.count(b"\n")
    if commas_and_newlines == (b"," * (width - 1) + b"\n") * lines and (width > 1 or not _has_blank_line(terminated)):
        return lines, []
    split = text.split("\n")
    if split and split[-1] == "":
        split.pop()
    data_lines = [(index, line) for index, line in enumerate(split) if line not in ("", "\r")]
    ragged = [first_line + index for index, line in data_lines if line.count(",") != width - 1]
    return len(data_lines), ragged


def _has_blank_line(block: bytes) -> bool:
    return block.startswith((b"\n", b"\r\n")) or b"\n\n" in block or b"\n\r\n" in block


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


def _chunks(stream: Readable) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


class CheckedUpload(io.RawIOBase):
    """The staged file as the target reads it, checked by `check_csv` on a thread as the bytes go by.

    One read of S3 serves both the upload and the check. The end of the stream is only delivered once
    the check has passed, and a failed check raises `CsvRejected` from `read`, which aborts the upload:
    a refused file never fully reaches the target, so the target never imports it.
    """

    def __init__(self, raw: IO[bytes], size: int, name: str, rules: CsvRules) -> None:
        super().__init__()
        check_before_reading(name, size, rules)
        self._raw = raw
        self._size = size
        self._delivered = 0
        self._block = memoryview(b"")
        self._offset = 0
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._verdict: CsvSummary | CsvRejected | None = None
        self._checked = threading.Event()
        self._thread = threading.Thread(target=self._check, args=(size, name, rules), daemon=True, name="csv-check")
        self._thread.start()

    @property
    def summary(self) -> CsvSummary | None:
        return self._verdict if isinstance(self._verdict, CsvSummary) else None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        self._raise_if_rejected()
        if self._offset >= len(self._block):
            # S3 is read, and the check fed, in large blocks; the upload takes them in whatever size it asks
            block = self._raw.read(CHUNK)
            if block:
                self._hand_over(block)
            self._block, self._offset = memoryview(block), 0
        end = len(self._block) if size < 0 else self._offset + size
        chunk = bytes(self._block[self._offset : end])
        self._offset += len(chunk)
        self._delivered += len(chunk)
        if (not chunk or self._delivered >= self._size) and not self._checked.is_set():
            # the last bytes leave only with a passed check (readers that know the length stop here)
            self._hand_over(None)
            self._checked.wait()
        self._raise_if_rejected()
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        """Stops the checking thread if the upload is abandoned (a retry re-reads from the start)."""
        if not self._checked.is_set():
            while True:
                try:
                    self._chunks.get_nowait()
                except queue.Empty:
                    break
            self._chunks.put_nowait(None)
        close = getattr(self._raw, "close", None)
        if close:
            close()
        super().close()

    def _hand_over(self, chunk: bytes | None) -> None:
        while True:
            try:
                self._chunks.put(chunk, timeout=0.1)
                return
            except queue.Full:
                self._raise_if_rejected()  # the check stopped reading: it has a verdict

    def _raise_if_rejected(self) -> None:
        if isinstance(self._verdict, CsvRejected):
            raise self._verdict

    def _check(self, size: int, name: str, rules: CsvRules) -> None:
        try:
            self._verdict = check_csv(_QueueReader(self._chunks), size, name, rules)
        except CsvRejected as rejected:
            self._verdict = rejected
        finally:
            self._checked.set()


class _QueueReader(io.RawIOBase):
    """The reading end of CheckedUpload's hand-over queue; None marks the end of the file."""

    def __init__(self, chunks: queue.Queue[bytes | None]) -> None:
        super().__init__()
        self._chunks = chunks
        self._ended = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if self._ended:
            return b""
        chunk = self._chunks.get()
        if chunk is None:
            self._ended = True
            return b""
        return chunk
