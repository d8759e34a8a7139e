"""Rows a finished import skipped: the report written beside the file, the log entries attached to the sync
process, and the words of the final message. Pure functions; sync_service does the writing."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

from people_sync.models import RowError
from people_sync.staging import REPORTS_PREFIX

REPORT_COLUMNS = ("row", "column", "message")
#: Cells starting with these are read as formulas by spreadsheets: such text is prefixed with a quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def report_key(folder: str, file_name: str) -> str:
    """One report per staged file name, overwritten by the next import of that name (the bucket keeps
    versions), so a retried close writes the same object again."""
    return f"{REPORTS_PREFIX}{folder}/{file_name}.errors.csv"


def report_csv(errors: list[RowError]) -> bytes:
    """row, column, message: what the target said, nothing of the file's values added."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for error in errors:
        writer.writerow(["" if error.row is None else error.row, _cell(error.column), _cell(error.message)])
    return out.getvalue().encode()


def _cell(text: str | None) -> str:
    if not text:
        return ""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def timestamp(epoch: float) -> str:
    """LogData's `at` (found example: 2017-01-24T13:57:52Z)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def describe(summary: dict[str, Any], *, dry_run: bool) -> str:
    """The final message's words for the skipped rows, e.g. "2 rows skipped with errors, see reports/...".

    `summary`: skipped (count), listed, truncated, report (key or None), unreadable (reason or None)."""
    skipped = int(summary.get("skipped") or 0)
    rows = f"{skipped}{'+' if summary.get('atLeast') else ''} row{'' if skipped == 1 else 's'}"
    what = f"{rows} with errors" if dry_run else f"{rows} skipped with errors"
    if summary.get("unreadable"):
        return f"{what} (the details could not be read: {summary['unreadable']})"
    report = summary.get("report")
    listed = int(summary.get("listed") or 0)
    first = f" (the first {listed} are listed)" if summary.get("truncated") else ""
    if report:
        return f"{what}, see {report}{first}"
    if summary.get("reportFailed"):
        return f"{what}; the report could not be written, see the sync's log{first}"
    return what


def log_entries(
    errors: list[RowError], summary: dict[str, Any], *, file_name: str, dry_run: bool, at: str, max_rows: int
) -> list[dict[str, Any]]:
    """AppendLogRequest entries (LogData: level, at, message, data): one summary, then one per listed row,
    at most `max_rows` of them."""
    shown = errors[:max_rows]
    headline = f"{file_name}: {describe(summary, dry_run=dry_run)}"
    if len(shown) < len(errors) or summary.get("truncated"):
        headline += f"; {len(shown)} of them are in this log"
    data: dict[str, Any] = {
        "file": file_name,
        "skippedRows": int(summary.get("skipped") or 0),
        "listedRows": len(shown),
    }
    if summary.get("report"):
        data["report"] = summary["report"]
    entries = [{"level": "WARN", "at": at, "message": headline, "data": data}]
    for error in shown:
        where = f"row {error.row}" if error.row is not None else "a row"
        column = f", column {error.column}" if error.column else ""
        row_data: dict[str, Any] = {"message": error.message}
        if error.row is not None:
            row_data["row"] = error.row
        if error.column:
            row_data["column"] = error.column
        entries.append({"level": "ERROR", "at": at, "message": f"{where}{column}: {error.message}", "data": row_data})
    return entries


def batches(entries: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    size = max(1, size)
    return [entries[start : start + size] for start in range(0, len(entries), size)]
