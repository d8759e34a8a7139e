"""Adversarial inputs to the pre-flight checker (issue 11): every file is decided in linear time with a
bounded buffer, and the message says what to fix.

Sizes stay modest by shrinking the limits (CsvRules) and the read size (CHUNK) instead of generating
huge files; "bounded" is shown by how many bytes the checker reads before deciding, and by tracemalloc.
Each check runs under a hang guard, so a quadratic or stuck checker fails the test instead of CI.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import threading
import tracemalloc
from collections.abc import Callable, Iterable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from people_sync import csv_checks
from people_sync.csv_checks import CsvRejected, CsvRules, CsvSummary, check_csv

HEADER = b"Employee ID,Name\n"
GUARD_SECONDS = 20.0


def within[T](seconds: float, run: Callable[[], T]) -> T:
    """Runs `run` on a thread; a hang (or a quadratic blow-up) fails the test instead of stalling CI."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = run()
        except BaseException as error:  # noqa: BLE001 - handed back to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"not decided within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


class LazyStream:
    """A stream generated as it is read (never held whole), counting the bytes handed out."""

    def __init__(self, parts: Iterable[bytes]) -> None:
        self._parts: Iterator[bytes] = iter(parts)
        self._pending = b""
        self.handed_out = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            part = next(self._parts, None)
            if part is None:
                break
            self._pending += part
        size = len(self._pending) if size < 0 else size
        chunk, self._pending = self._pending[:size], self._pending[size:]
        self.handed_out += len(chunk)
        return chunk


def repeated(piece: bytes, total: int) -> Iterator[bytes]:
    """`total` bytes of `piece` repeated, in pieces of about 64 KiB."""
    block = piece * max(1, 65536 // len(piece))
    produced = 0
    while produced < total:
        part = block[: total - produced]
        produced += len(part)
        yield part


def decide(body: bytes, rules: CsvRules | None = None) -> CsvSummary:
    return within(GUARD_SECONDS, lambda: check_csv(io.BytesIO(body), len(body), "roster.csv", rules or CsvRules()))


def rejection(body: bytes, rules: CsvRules | None = None) -> csv_checks.CsvProblem:
    with pytest.raises(CsvRejected) as rejected:
        decide(body, rules)
    return rejected.value.problem


def rejection_of_stream(stream: LazyStream, size: int, rules: CsvRules) -> csv_checks.CsvProblem:
    with pytest.raises(CsvRejected) as rejected:
        within(GUARD_SECONDS, lambda: check_csv(stream, size, "roster.csv", rules))
    return rejected.value.problem


SMALL = CsvRules(maxRecordBytes=4096, maxHeaderBytes=4096, maxColumns=64)
BIG = 4 * 1024 * 1024


@pytest.fixture
def small_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_checks, "CHUNK", 1024)


# --- 1. an unbalanced quote ------------------------------------------------------------------------


@pytest.mark.usefixtures("small_reads")
def test_an_unbalanced_quote_is_refused_after_a_bounded_read_naming_its_line() -> None:
    rows = b"".join(b"E%d,Ada\n" % index for index in range(50))
    head = HEADER + rows + b'E50,"Ada, still open\n'  # the quote opens on line 52
    stream = LazyStream(itertools.chain([head], repeated(b"E9,Grace\n", BIG)))
    problem = rejection_of_stream(stream, len(head) + BIG, SMALL)
    assert problem.code == "row-too-long"
    assert "the quote opened on line 52 is not closed within 4,096 bytes" in problem.message
    assert stream.handed_out <= len(head) + 4096 + 4 * 1024  # the rest of the file is never read


def test_an_unbalanced_quote_names_its_line_with_the_default_limits() -> None:
    """With the default 1 MiB record limit, csv's own field limit (128 Ki characters) is met first."""
    body = HEADER + b"E1,Ada\n" * 5 + b'E5,"Ada\n' + b"E6,Grace\n" * 40_000
    problem = rejection(body)
    assert problem.code == "field-too-long"
    assert "(line 7)" in problem.message
    assert "the quote opened on line 7 is not closed within 131,072 characters" in problem.message


def test_a_quote_still_open_at_the_end_of_the_file_names_its_line() -> None:
    problem = rejection(HEADER + b'E1,Ada\nE2,"Grace\nE3,Hopper\n')
    assert problem.code == "malformed-csv"
    assert "not valid CSV" in problem.message
    assert "line 3" in problem.message
    assert "never closed" in problem.message


def test_quoted_fields_spanning_reads_are_still_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_checks, "CHUNK", 7)
    body = HEADER + b'E1,"Lovelace,\nAda"\n' * 30 + b"E2,Grace\n" * 5
    assert decide(body).rows == 35


# --- 2. CR-only line endings -----------------------------------------------------------------------


def test_cr_only_line_endings_are_named_as_such() -> None:
    problem = rejection(b"Employee ID,Name\rE1,Ada\rE2,Grace\r")
    assert problem.code == "cr-line-endings"
    assert "old Mac (CR-only) line endings" in problem.message
    assert "Windows" in problem.message
    assert "Unix" in problem.message
    assert "universal-newline" not in problem.message


@pytest.mark.parametrize("width", [1, 2])
def test_a_lone_carriage_return_in_a_data_block_is_refused(width: int) -> None:
    header = b"Employee ID\n" if width == 1 else HEADER
    row = b"E1\n" if width == 1 else b"E1,Ada\n"
    problem = rejection(header + row * 3 + row.replace(b"\n", b"\r") + row * 3)
    assert problem.code == "cr-line-endings"
    assert "line 5" in problem.message


@pytest.mark.usefixtures("small_reads")
def test_a_large_cr_only_file_is_refused_after_a_bounded_read() -> None:
    stream = LazyStream(itertools.chain([b"Employee ID,Name\r"], repeated(b"E1,Ada\r", BIG)))
    problem = rejection_of_stream(stream, BIG, SMALL)
    assert problem.code == "cr-line-endings"
    assert stream.handed_out <= 4096 + 4 * 1024


# --- 3. long rows and wide headers -----------------------------------------------------------------


@pytest.mark.usefixtures("small_reads")
def test_a_row_over_the_record_limit_is_refused_after_a_bounded_read() -> None:
    head = HEADER + b"E1,Ada\n" * 10 + b"E2,"  # the long row is line 12
    stream = LazyStream(itertools.chain([head], repeated(b"x", BIG), [b"\n"]))
    problem = rejection_of_stream(stream, len(head) + BIG + 1, SMALL)
    assert problem.code == "row-too-long"
    assert "line 12" in problem.message
    assert "4,096 bytes" in problem.message
    assert stream.handed_out <= len(head) + 4096 + 4 * 1024


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(min_value=8, max_value=120),
    chunk=st.integers(min_value=1, max_value=150),
    before=st.integers(min_value=0, max_value=40),
    extra=st.integers(min_value=-3, max_value=3),
    quoted=st.booleans(),
    crlf=st.booleans(),
)
def test_the_record_limit_is_exact_wherever_the_reads_fall(
    limit: int, chunk: int, before: int, extra: int, quoted: bool, crlf: bool
) -> None:
    """A record of exactly maxRecordBytes bytes (line ending included) passes; one byte more is refused."""
    newline = b"\r\n" if crlf else b"\n"
    length = limit + extra  # of the record under test, line ending included
    lead = b'E,"' if quoted else b"E,"
    fill = length - len(lead) - len(newline) - (1 if quoted else 0)
    if fill < 0:
        return
    record = lead + b"x" * fill + (b'"' if quoted else b"") + newline
    body = b"ID,Name" + newline + (b"E,y" + newline) * before + record + b"E,z" + newline
    rules = CsvRules(maxRecordBytes=limit, maxHeaderBytes=64)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_checks, "CHUNK", chunk)
        if length <= limit:
            assert decide(body, rules).rows == before + 2
        else:
            problem = rejection(body, rules)
            assert problem.code == "row-too-long", problem.message
            assert f"line {before + 2}" in problem.message


def test_too_many_columns_are_refused() -> None:
    header = ",".join(f"C{index}" for index in range(65)).encode() + b"\n"
    problem = rejection(header + b"," * 64 + b"\n", SMALL)
    assert problem.code == "too-many-columns"
    assert "65" in problem.message
    assert "64" in problem.message


def test_a_wide_header_within_the_limits_is_checked_in_linear_time() -> None:
    """200,000 columns: the duplicate search was quadratic (a 100 KB header took 23.5 s)."""
    columns = 200_000
    header = ",".join(f"C{index}" for index in range(columns)).encode() + b"\n"
    rules = CsvRules(maxColumns=columns, maxHeaderBytes=len(header), maxRecordBytes=len(header))
    assert decide(header + b"," * (columns - 1) + b"\n", rules).rows == 1


def test_duplicates_in_a_wide_header_are_still_named() -> None:
    header = ",".join(f"C{index}" for index in range(5000)).encode() + b",c17\n"
    problem = rejection(header + b"," * 5000 + b"\n")
    assert problem.code == "duplicate-columns"
    assert "C17, c17" in problem.message


@pytest.mark.usefixtures("small_reads")
def test_a_huge_header_is_refused_after_a_bounded_read() -> None:
    stream = LazyStream(itertools.chain([b"Employee ID"], repeated(b",a", BIG), [b"\n"]))
    problem = rejection_of_stream(stream, BIG, SMALL)
    assert problem.code == "header-too-long"
    assert "4,096 bytes" in problem.message
    assert stream.handed_out <= 4096 + 4 * 1024


# --- 4. NUL bytes and UTF-16 -----------------------------------------------------------------------


def test_a_nul_byte_after_the_first_64_kib_is_binary_data() -> None:
    body = HEADER + b"E1,Ada\n" * 20_000 + b"E2,Gr\x00ce\n"
    problem = rejection(body)
    assert problem.code == "not-csv"
    assert "binary data" in problem.message
    assert "line 20002" in problem.message


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_nul_byte_anywhere_is_binary_data(data: st.DataObject) -> None:
    body = HEADER + b'E1,"Ada\nLovelace"\n' * 50 + b"E2,Grace\r\n" * 50
    at = data.draw(st.integers(min_value=1, max_value=len(body)))
    chunk = data.draw(st.integers(min_value=1, max_value=300))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_checks, "CHUNK", chunk)
        problem = rejection(body[:at] + b"\x00" + body[at:])
    assert (problem.code, "binary data" in problem.message) == ("not-csv", True)


@pytest.mark.parametrize(
    "body",
    [
        "Employee ID,Name\r\nE1,Ada\r\n".encode("utf-16"),  # with its BOM, as Excel's "Unicode Text"
        b"\xfe\xff" + "Employee ID,Name\nE1,Ada\n".encode("utf-16-be"),
        "Employee ID,Name\nE1,Ada\n".encode("utf-16-le"),  # no BOM: the alternating NULs give it away
        "Employee ID,Name\nE1,Ada\n".encode("utf-16-be"),
    ],
    ids=["bom-le", "bom-be", "no-bom-le", "no-bom-be"],
)
def test_utf16_is_named_with_how_to_save_utf8(body: bytes) -> None:
    problem = rejection(body)
    assert problem.code == "utf16"
    assert "UTF-16" in problem.message
    assert "CSV UTF-8" in problem.message


def test_binary_data_with_a_few_nuls_is_still_binary() -> None:
    assert rejection(b"Employee ID\x00\x01\x02").code == "not-csv"


# --- 5. any bytes: a verdict, nothing else, and a bounded buffer -------------------------------------

ADVERSARIAL_BYTES = st.lists(
    st.one_of(
        st.sampled_from([b'"', b",", b"\r", b"\n", b"\r\n", b"\x00", b"a", b'""', b"\xc3\xa9", b"\xff", b" "]),
        st.tuples(st.sampled_from([b'"', b",", b"\r", b"\n", b"a"]), st.integers(1, 300)).map(lambda t: t[0] * t[1]),
    ),
    max_size=60,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(body=ADVERSARIAL_BYTES, chunk=st.integers(min_value=1, max_value=200), prefix=st.booleans())
def test_any_bytes_get_a_verdict_and_nothing_else(body: bytes, chunk: int, prefix: bool) -> None:
    body = (b"Employee ID,Name\n" if prefix else b"") + body
    if not body:
        return
    rules = CsvRules(maxRecordBytes=64, maxHeaderBytes=64, maxColumns=8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_checks, "CHUNK", chunk)
        try:
            summary = within(5.0, lambda: check_csv(io.BytesIO(body), len(body), "roster.csv", rules))
        except CsvRejected as rejected:
            problem = rejected.problem
            assert problem.message
        else:
            assert summary.rows > 0


ADVERSARIES = {
    "unbalanced-quote": (HEADER + b'E1,"Ada\n', b"E2,Grace\n"),
    "cr-only": (b"Employee ID,Name\r", b"E2,Grace\r"),
    "long-line": (HEADER + b"E1,", b"x"),
    "long-header": (b"Employee ID", b",a"),
    "blank-lines": (HEADER, b"\n"),
    "quoted-newlines": (HEADER + b'E1,"', b"\n"),
    "nul-at-the-end": (HEADER, b"E2,Grace\n"),
}


@pytest.mark.parametrize("case", sorted(ADVERSARIES))
def test_adversarial_files_are_decided_with_a_bounded_buffer(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """2 MB of each adversary with 16 KiB limits and reads: the checker's peak allocation stays near the
    limits, whatever the size of the file (it had held the whole rest of the file)."""
    monkeypatch.setattr(csv_checks, "CHUNK", 16 * 1024)
    head, repeat = ADVERSARIES[case]
    total = 2 * 1024 * 1024
    tail = [b"E3,\x00\n"] if case == "nul-at-the-end" else []
    stream = LazyStream(itertools.chain([head], repeated(repeat, total), tail))
    rules = CsvRules(maxRecordBytes=16 * 1024, maxHeaderBytes=16 * 1024)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with contextlib.suppress(CsvRejected):
            within(GUARD_SECONDS, lambda: check_csv(stream, total + 100, "roster.csv", rules))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 512 * 1024, f"peak {peak:,} bytes"


# --- 6. valid files agree with the csv module read whole ----------------------------------------------

CELL = st.one_of(
    st.text(alphabet="abc ", max_size=5),
    st.text(alphabet='ab,"\n é', max_size=6).map(lambda cell: '"' + cell.replace('"', '""') + '"'),
)


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(min_value=1, max_value=4),
    rows=st.lists(
        st.one_of(st.lists(CELL, min_size=1, max_size=5), st.just([])),  # [] is a blank line
        max_size=25,
    ),
    crlf=st.booleans(),
    chunk=st.integers(min_value=1, max_value=64),
    final_newline=st.booleans(),
)
def test_valid_files_agree_with_the_csv_module(
    width: int, rows: list[list[str]], crlf: bool, chunk: int, final_newline: bool
) -> None:
    """Row count and ragged line numbers match csv.reader over the whole text, however the reads fall."""
    newline = "\r\n" if crlf else "\n"
    header = ",".join(f"C{index}" for index in range(width))
    text = newline.join([header, *(",".join(row) for row in rows)]) + (newline if final_newline else "")
    expected_rows, expected_ragged = 0, []
    reader = csv.reader(io.StringIO(text), strict=True)
    next(reader)
    start = reader.line_num + 1
    for record in reader:
        if record:
            expected_rows += 1
            if len(record) != width:
                expected_ragged.append(start)
        start = reader.line_num + 1
    body = text.encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_checks, "CHUNK", chunk)
        if expected_ragged:
            problem = rejection(body)
            assert (problem.code, problem.lines) == ("ragged-rows", expected_ragged[:5])
        elif expected_rows == 0:
            assert rejection(body).code == "header-only"
        else:
            assert decide(body).rows == expected_rows
