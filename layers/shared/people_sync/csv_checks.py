"""Pre-flight checks of a staged CSV, before a single byte goes to a target.

The file is read once as a stream, in time linear in its size and with a buffer bounded by the limits
in CsvRules, whatever its bytes: an unclosed quote, CR-only line endings or a 50 MB line is refused
once it runs past a limit instead of being held and rescanned. Each problem has a stable `code` and a
message a person can act on; the first blocking problem stops the file.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import queue
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

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
#: Blocks the check may lag behind the upload: its memory, and how far an upload runs ahead of a verdict.
READ_AHEAD = 8
#: How much of the file's start is looked at for signatures and UTF-16.
SNIFF_BYTES = 4096
#: How many ragged rows a refusal lists (the check stops once it has them).
RAGGED_SHOWN = 5
NEWLINE = b"\n"
_NOT_COMMA_OR_NEWLINE = bytes(range(256)).translate(None, b",\n")
_BLANK_LINE_RUNS = re.compile(rb"\n\n+")
_LONE_CR = re.compile(rb"\r(?!\n)")
#: Whole fields and their separators from the start of a record, as csv.reader(strict=True) reads them.
#: Where the match stops on a quote, that quote opened a field that is never closed.
_WHOLE_FIELDS = re.compile(rb'(?:(?:"(?:[^"]++|"")*+"|[^",\r\n][^,\r\n]*+|)(?:,|\r\n|\n|\r))*+')


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _Records(Protocol):
    """What the checker uses of csv.reader: its rows and how many lines it has read."""

    @property
    def line_num(self) -> int: ...

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


class CsvRules(BaseModel):
    """Limits from the settings parameter (`csvRules`).

    The record and header limits bound the checker's memory and make every file decidable in one
    linear pass: nothing is held beyond one unfinished record (or header) of at most that size.
    """

    max_bytes: int = Field(default=2 * 1024**3, alias="maxBytes")
    max_rows: int = Field(default=2_000_000, alias="maxRows")
    required_columns: list[str] = Field(default_factory=list, alias="requiredColumns")
    max_columns: int = Field(default=10_000, alias="maxColumns", ge=1)
    max_header_bytes: int = Field(default=1024**2, alias="maxHeaderBytes", ge=1)
    #: A data row's bytes, its line ending and any quoted line breaks included.
    max_record_bytes: int = Field(default=1024**2, alias="maxRecordBytes", ge=1)

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


class CsvCheckFailed(Exception):
    """The check could not reach a verdict: the staged stream failed or the checker itself did.

    Not a refusal (nothing is known to be wrong with the file, so it must not be moved to failed/), but
    the upload must not complete either: CheckedUpload raises this instead of delivering the end of the
    file. The cause is chained (`__cause__`).
    """


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
    first = b""
    for chunk in chunks:  # at least SNIFF_BYTES (or the whole file) to recognise what the file is
        first += chunk
        if len(first) >= SNIFF_BYTES:
            break
    _sniff(first, name)
    if first.startswith(codecs.BOM_UTF8):
        first = first[len(codecs.BOM_UTF8) :]
    return _Scan(name, rules, size).run(itertools.chain([first], chunks))


def _sniff(first: bytes, name: str) -> None:
    for signature, what in BINARY_SIGNATURES.items():
        if first.startswith(signature):
            raise CsvRejected(CsvProblem("not-csv", f"{name} is {what}, not a CSV; export it as CSV (UTF-8)."))
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _looks_utf16(first):
        raise CsvRejected(
            CsvProblem(
                "utf16",
                f'{name} is saved as UTF-16 text (Excel\'s "Unicode Text"), not UTF-8; open it in Excel and '
                'save it with "Save As" as "CSV UTF-8 (Comma delimited) (*.csv)".',
            )
        )


def _looks_utf16(data: bytes) -> bool:
    """UTF-16 without a BOM: mostly-ASCII text has a NUL in every other byte (odd ones LE, even ones BE)."""
    sample = data[: SNIFF_BYTES - SNIFF_BYTES % 2]
    sample = sample[: len(sample) - len(sample) % 2]
    if len(sample) < 4:
        return False
    even, odd = sample[0::2], sample[1::2]
    return any(
        nuls.count(0) >= len(nuls) / 2 and others.count(0) <= len(others) / 20
        for nuls, others in ((odd, even), (even, odd))
    )


class _Scan:
    """One pass over the records of a file: the header, row counts, ragged rows, line numbers.

    `pending` holds the start of one unfinished record (the header's limit before the header is read,
    the record limit after it) and the data is taken in pieces no larger than either limit, so every
    record is measured exactly while nothing bigger than a limit plus a piece is ever held. Blocks of
    whole lines without a quote are checked at C speed; blocks with quotes go through csv.reader.
    """

    def __init__(self, name: str, rules: CsvRules, size: int) -> None:
        self.name, self.rules, self.size = name, rules, size
        self.header: list[str] | None = None
        self.width = 0
        self.rows = 0
        self.ragged: list[int] = []
        self.line = 1  # the line `pending` starts on
        self.pending = b""

    def run(self, chunks: Iterable[bytes]) -> CsvSummary:
        piece_size = max(1, min(CHUNK, self.rules.max_record_bytes, self.rules.max_header_bytes))
        for chunk in chunks:
            for start in range(0, len(chunk), piece_size):
                self._feed(chunk if len(chunk) <= piece_size else chunk[start : start + piece_size])
        if self.pending:
            self._consume(self.pending, carried=0, at_end=True)
        if self.header is None:
            raise CsvRejected(CsvProblem("empty-file", f"{self.name} has no header row."))
        if self.rows == 0:
            raise CsvRejected(CsvProblem("header-only", f"{self.name} has a header row but no data rows."))
        if self.ragged:
            self._refuse_ragged()
        return CsvSummary(rows=self.rows, columns=self.header, size=self.size)

    @property
    def limit(self) -> int:
        return self.rules.max_header_bytes if self.header is None else self.rules.max_record_bytes

    def _feed(self, piece: bytes) -> None:
        nul = piece.find(b"\x00")
        if nul >= 0:
            line = self.line + self.pending.count(b"\n") + piece.count(b"\n", 0, nul)
            self._refuse("not-csv", f"{self.name} contains binary data (a NUL byte on line {line}), not CSV text.")
        cut = piece.rfind(b"\n")
        buffer = self.pending + piece
        if cut >= 0:
            cut += len(self.pending) + 1
            block = buffer[:cut] if cut < len(buffer) else buffer
            done = self._consume(block, carried=len(self.pending), at_end=False)
            buffer = buffer[done:] if done else buffer
        self.pending = buffer
        if len(buffer) > self.limit:
            self._refuse_unfinished(buffer)

    def _consume(self, block: bytes, *, carried: int, at_end: bool) -> int:
        """Checks the complete records at the start of `block` (whole lines, or the file's last bytes);
        returns their length. `carried` bytes of the first record came from earlier pieces."""
        done = 0
        if self.header is None:
            done = self._take_header(block, at_end=at_end)
            if not done or done == len(block):
                return done
            carried = 0
        rows = block[done:] if done else block
        if b'"' in rows:
            done += self._quoted_rows(rows, carried=carried, at_end=at_end)
        else:
            self._plain_rows(rows, carried=carried)
            done = len(block)
        if self.rows > self.rules.max_rows:
            self._refuse("too-many-rows", f"{self.name} has more than {self.rules.max_rows:,} rows. Split it.")
        if len(self.ragged) >= RAGGED_SHOWN:
            self._refuse_ragged()
        return done

    # --- the header ------------------------------------------------------------------------------

    def _take_header(self, block: bytes, *, at_end: bool) -> int:
        end = block.find(b"\n") + 1 or len(block)
        if b'"' in block[:end]:
            header, end, lines = self._first_quoted_record(block, at_end=at_end)
            if header is None:
                return 0
        else:
            if end > self.rules.max_header_bytes:
                self._refuse_header_too_long()
            if block.count(b",", 0, end) >= self.rules.max_columns:
                self._refuse_columns(block.count(b",", 0, end) + 1)
            text = self._decode(block[:end], self.line)
            header, lines = self._parse_one_line(text), 1
        if end > self.rules.max_header_bytes:
            self._refuse_header_too_long()
        if len(header) > self.rules.max_columns:
            self._refuse_columns(len(header))
        if not any(cell.strip() for cell in header):
            raise CsvRejected(CsvProblem("empty-file", f"{self.name} has no header row."))
        _check_header(header, self.name, self.rules)
        self.header, self.width = header, len(header)
        self.line += lines
        return end

    def _parse_one_line(self, text: str) -> list[str]:
        try:
            return next(csv.reader([text], strict=True), [])
        except csv.Error as error:
            self._refuse_malformed(error, self.line)

    def _first_quoted_record(self, block: bytes, *, at_end: bool) -> tuple[list[str] | None, int, int]:
        """The header when it has quotes: (fields, bytes, lines), or None while it is unfinished."""
        text = self._decode(block, self.line)
        reader, exhausted = _reader(text)
        try:
            header = next(reader, [])
        except csv.Error as error:
            if not exhausted:
                self._refuse_malformed(error, self.line + reader.line_num - 1, block, self.line)
            if at_end:
                self._refuse_open_quote(block, self.line)
            return None, 0, 0
        return header, _line_offset(block, reader.line_num), reader.line_num

    # --- data rows -------------------------------------------------------------------------------

    def _plain_rows(self, block: bytes, *, carried: int) -> None:
        """Whole lines without a quote, at C speed: with everything but commas and newlines deleted, a
        well-formed block is exactly `width - 1` commas and a newline per row. Blank lines are removed
        first where there are any; a block that still differs has ragged rows and is read line by line
        (at most RAGGED_SHOWN such blocks: the check stops there)."""
        self._decode(block, self.line)  # validates every byte (whole lines: no character is cut)
        if carried:  # the first line began in earlier pieces
            self._limit_record(block.find(b"\n") + 1 or len(block), self.line)
        data = block if block.endswith(b"\n") else block + b"\n"
        if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
            lone = _LONE_CR.search(data)
            assert lone is not None
            self._refuse_cr_line_endings(self.line + data.count(b"\n", 0, lone.start()))
        counted = data.translate(None, _NOT_COMMA_OR_NEWLINE)
        lines = counted.count(b"\n")
        row = b"," * (self.width - 1) + b"\n"
        if counted == row * lines and (self.width > 1 or not _has_blank_line(data)):
            self.rows += lines
        else:
            kept = _without_blank_lines(data)
            kept_lines = kept.count(b"\n")
            if kept is not data and kept.translate(None, _NOT_COMMA_OR_NEWLINE) == row * kept_lines:
                self.rows += kept_lines
            else:
                self._ragged_lines(data)
        self.line += lines

    def _ragged_lines(self, data: bytes) -> None:
        for index, line in enumerate(data.decode("utf-8").split("\n")):
            if line in ("", "\r"):
                continue
            self.rows += 1
            if line.count(",") != self.width - 1 and len(self.ragged) < RAGGED_SHOWN:
                self.ragged.append(self.line + index)

    def _quoted_rows(self, block: bytes, *, carried: int, at_end: bool) -> int:
        """Rows through csv.reader; returns the bytes of the complete ones (an unfinished last record
        stays pending). Only a record that began in earlier pieces can exceed the record limit."""
        text = self._decode(block, self.line)
        reader, exhausted = _reader(text)
        done = 0  # lines of the complete records
        try:
            for row in reader:
                if carried:
                    carried = 0
                    self._limit_record(_line_offset(block, reader.line_num), self.line)
                if row:
                    self.rows += 1
                    if len(row) != self.width and len(self.ragged) < RAGGED_SHOWN:
                        self.ragged.append(self.line + done)
                done = reader.line_num
        except csv.Error as error:
            start = _line_offset(block, done)
            if not exhausted:
                self._refuse_malformed(error, self.line + reader.line_num - 1, block[start:], self.line + done)
            if at_end:
                self._refuse_open_quote(block[start:], self.line + done)
            self.line += done
            return start
        self.line += done
        return len(block)

    # --- refusals --------------------------------------------------------------------------------

    def _refuse(self, code: str, message: str, lines: list[int] | None = None) -> NoReturn:
        raise CsvRejected(CsvProblem(code, message, lines or []))

    def _decode(self, data: bytes, line: int) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            at = line + data.count(b"\n", 0, error.start)
            self._refuse(
                "not-utf8", f"{self.name} is not UTF-8 text ({error.reason}, line {at}); save it as CSV UTF-8."
            )

    def _limit_record(self, length: int, line: int) -> None:
        if length > self.rules.max_record_bytes:
            self._refuse_row_too_long(line)

    def _refuse_unfinished(self, pending: bytes) -> NoReturn:
        """An unfinished record ran past its limit: say why, as precisely as its bytes allow."""
        lone = _LONE_CR.search(pending, 0, len(pending) - 1)
        if lone is not None and b"\n" not in pending:
            self._refuse_cr_line_endings(self.line)
        opened = _open_quote(pending)
        # an unbalanced quote, most likely, where one is open: name where it opened
        why = self._quote_not_closed(pending, self.line, opened, self.limit) if opened >= 0 else ""
        if self.header is None:
            self._refuse_header_too_long(why)
        self._refuse_row_too_long(self.line, why)

    def _refuse_open_quote(self, record: bytes, line: int) -> NoReturn:
        opened = _open_quote(record)
        if opened >= 0:
            where = f"the quote opened on line {line + record.count(NEWLINE, 0, opened)}"
        else:
            where = f"a quote in the row on line {line}"
        self._refuse(
            "malformed-csv",
            f"{self.name} is not valid CSV: {where} is never closed (a quote inside a field is written as two quotes).",
        )

    def _refuse_malformed(self, error: csv.Error, line: int, record: bytes = b"", record_line: int = 0) -> NoReturn:
        """csv.reader's error in words for the file's author; `record` is the record it stopped in."""
        if str(error).startswith("new-line character seen in unquoted field"):
            self._refuse_cr_line_endings(line)
        if str(error).startswith("field larger than field limit"):  # csv's own, process-wide limit
            limit = csv.field_size_limit()
            opened = _open_quote(record)
            # an unbalanced quote, most likely, where one is open: name where it opened
            why = self._quote_not_closed(record, record_line, opened, limit, "characters") if opened >= 0 else "."
            self._refuse(
                "field-too-long",
                f"{self.name} has a field longer than {limit:,} characters (line {record_line}){why}",
            )
        self._refuse("malformed-csv", f"{self.name} is not valid CSV: {error} (line {line}).")

    def _quote_not_closed(self, record: bytes, line: int, opened: int, within: int, unit: str = "bytes") -> str:
        return (
            f": the quote opened on line {line + record.count(NEWLINE, 0, opened)} is not closed within "
            f"{within:,} {unit}; is a closing quote missing? (a quote inside a field is written as two quotes.)"
        )

    def _refuse_cr_line_endings(self, line: int) -> NoReturn:
        self._refuse(
            "cr-line-endings",
            f"{self.name} uses old Mac (CR-only) line endings (line {line} ends in a carriage return alone); "
            "save it with Windows (CRLF) or Unix (LF) line endings.",
        )

    def _refuse_header_too_long(self, why: str = "") -> NoReturn:
        self._refuse(
            "header-too-long",
            f"{self.name} has a header row longer than {self.rules.max_header_bytes:,} bytes{why or '.'}",
        )

    def _refuse_columns(self, count: int) -> NoReturn:
        self._refuse(
            "too-many-columns",
            f"{self.name} has {count:,} columns; the limit is {self.rules.max_columns:,}.",
        )

    def _refuse_row_too_long(self, line: int, why: str = "") -> NoReturn:
        self._refuse(
            "row-too-long",
            f"{self.name} has a row longer than {self.rules.max_record_bytes:,} bytes (line {line})"
            + (why or "; is a line break or a closing quote missing?"),
        )

    def _refuse_ragged(self) -> NoReturn:
        lines = ", ".join(str(line) for line in self.ragged)
        self._refuse(
            "ragged-rows",
            f"{self.name} has rows whose number of fields differs from the header's {self.width} (lines {lines}).",
            self.ragged,
        )


def _reader(text: str) -> tuple[_Records, list[bool]]:
    """A strict csv.reader over whole lines, and a flag list that gets an entry once every line was read:
    an error raised after that is an unfinished last record, not a malformed one."""
    exhausted: list[bool] = []
    lines = itertools.chain(io.StringIO(text), iter(lambda: exhausted.append(True), None))
    return csv.reader(lines, strict=True), exhausted


def _line_offset(block: bytes, lines: int) -> int:
    """Bytes in the first `lines` lines of `block` (counted at C speed, one line object at a time)."""
    return sum(map(len, itertools.islice(io.BytesIO(block), lines)))


def _open_quote(record: bytes) -> int:
    """Where the quote that opens a never-closed field is, in bytes starting at a record; -1 if none."""
    match = _WHOLE_FIELDS.match(record)
    end = match.end() if match else 0
    return end if record[end : end + 1] == b'"' else -1


def _has_blank_line(block: bytes) -> bool:
    return block.startswith((b"\n", b"\r\n")) or b"\n\n" in block or b"\n\r\n" in block


def _without_blank_lines(block: bytes) -> bytes:
    """The block without its blank lines (the same object when it has none); every CR in it is part of
    a CRLF (lone ones are refused before)."""
    if not _has_blank_line(block):
        return block
    lines = block.replace(b"\r\n", b"\n") if b"\r" in block else block
    lines = _BLANK_LINE_RUNS.sub(b"\n", lines)
    return lines[1:] if lines.startswith(b"\n") else lines


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
    counts = Counter(column.lower() for column in names)  # one pass: wide headers stay linear
    duplicates = sorted({column for column in names if counts[column.lower()] > 1})
    if duplicates:
        raise CsvRejected(CsvProblem("duplicate-columns", f"{name} repeats the columns {', '.join(duplicates)}."))
    missing = [column for column in rules.required_columns if column.lower() not in counts]
    if missing:
        raise CsvRejected(CsvProblem("missing-columns", f"{name} lacks the required columns {', '.join(missing)}."))


def _chunks(stream: Readable) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


class CheckedUpload(io.RawIOBase):
    """The staged file as the target reads it, checked by `check_csv` on a thread as the bytes go by.

    One read of S3 serves both the upload and the check. The end of the stream is only delivered once
    the check has passed. A failed check raises `CsvRejected` from `read`, which aborts the upload: a
    refused file never fully reaches the target, so the target never imports it. Anything else that
    goes wrong (the staged stream fails, is shorter or longer than its size, or the checker breaks)
    raises from `read` too, `CsvCheckFailed` or the stream's own error first, and every later `read`
    raises again: the target never gets a silently complete body, and `read` never waits forever.
    """

    def __init__(self, raw: Readable, size: int, name: str, rules: CsvRules) -> None:
        super().__init__()
        check_before_reading(name, size, rules)
        self._raw = raw
        self._size = size
        self._name = name
        self._received = 0
        self._delivered = 0
        self._ended = False
        self._block = memoryview(b"")
        self._offset = 0
        self._failure: BaseException | None = None
        # None ends the file for the checker; b"" (never a block) tells it to stop without a verdict
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=READ_AHEAD)
        self._verdict: CsvSummary | BaseException | None = None
        self._checked = threading.Event()
        self._thread = threading.Thread(target=self._check, args=(size, name, rules), daemon=True, name="csv-check")
        self._thread.start()

    @property
    def summary(self) -> CsvSummary | None:
        return self._verdict if isinstance(self._verdict, CsvSummary) else None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        self._raise_if_failed()
        if size == 0:
            return b""
        if self._offset >= len(self._block):
            # S3 is read, and the check fed, in large blocks; the upload takes them in whatever size it asks
            self._block, self._offset = memoryview(self._next_block()), 0
        end = len(self._block) if size < 0 else self._offset + size
        chunk = bytes(self._block[self._offset : end])
        self._offset += len(chunk)
        self._delivered += len(chunk)
        if (not chunk or self._delivered >= self._size) and not self._ended:
            # the last bytes leave only with a passed check (readers that know the length stop here)
            self._ended = True
            self._hand_over(None)
            self._await_verdict()
        self._raise_if_failed()
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        """Stops the checking thread if the upload is abandoned (a retry re-reads from the start)."""
        if not hasattr(self, "_thread"):  # refused before reading (__init__ raised): nothing started or owned
            super().close()
            return
        if not self._checked.is_set():
            self._stop_checker()
        close = getattr(self._raw, "close", None)
        if close:
            close()
        super().close()

    def _next_block(self) -> bytes:
        try:
            block = self._raw.read(CHUNK)
        except BaseException as error:
            # the stream's own error goes up first; every later read raises CsvCheckFailed
            self._stop(CsvCheckFailed(f"reading {self._name} failed ({type(error).__name__})"), error)
            raise
        if not block:
            if self._received < self._size:
                self._fail(CsvCheckFailed(f"{self._name} ended after {self._received:,} of {self._size:,} bytes"))
            return b""
        self._received += len(block)
        if self._received > self._size:
            self._fail(CsvCheckFailed(f"{self._name} is longer than its size of {self._size:,} bytes"))
        self._hand_over(block)
        return block

    def _hand_over(self, chunk: bytes | None) -> None:
        while True:
            try:
                self._chunks.put(chunk, timeout=0.05)
                return
            except queue.Full:
                if self._checked.is_set():  # the check stopped reading: it has a verdict before the end
                    self._raise_if_failed()
                    self._fail(CsvCheckFailed(f"the check of {self._name} ended before the end of the file"))

    def _await_verdict(self) -> None:
        while not self._checked.wait(0.5):
            if not self._thread.is_alive():
                break
        if not isinstance(self._verdict, CsvSummary):
            self._raise_if_failed()
            self._fail(CsvCheckFailed(f"the check of {self._name} ended without a verdict"))

    def _raise_if_failed(self) -> None:
        if self._failure is None and isinstance(self._verdict, BaseException):
            self._failure = self._verdict
        if self._failure is not None:
            raise self._failure

    def _fail(self, failure: CsvCheckFailed) -> NoReturn:
        self._stop(failure)
        raise failure

    def _stop(self, failure: CsvCheckFailed, cause: BaseException | None = None) -> None:
        failure.__cause__ = cause
        self._failure = failure
        self._stop_checker()

    def _stop_checker(self) -> None:
        while True:
            try:
                self._chunks.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):  # the reader side is the only producer, so there is room
            self._chunks.put_nowait(b"")

    def _check(self, size: int, name: str, rules: CsvRules) -> None:
        try:
            self._verdict = check_csv(_QueueReader(self._chunks), size, name, rules)
        except CsvRejected as rejected:
            self._verdict = rejected
        except BaseException as error:  # noqa: BLE001 - whatever breaks the check, the upload must not complete
            failed = CsvCheckFailed(f"the pre-flight check of {name} failed ({type(error).__name__})")
            failed.__cause__ = error
            self._verdict = failed
        finally:
            self._checked.set()


class _Stopped(Exception):
    """The upload was abandoned or failed: the check stops without a verdict."""


class _QueueReader(io.RawIOBase):
    """The reading end of CheckedUpload's hand-over queue; None marks the end of the file, b"" a stop."""

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
        if not chunk:
            raise _Stopped
        return chunk
