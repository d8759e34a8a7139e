"""(e) Invariant I6: adversarial CSVs through the pre-flight check, against a clean file of the same size.

    python -m bench.adversarial [--size-mb 1024] [--repeat 3]     (or BENCH_I6_MB=64 for a quick run)

Every file is generated as it is read, from a few repeated blocks of at most 1 MiB (never the file
itself, whatever its size), and every case runs in a fresh interpreter that resets its peak-RSS counter
(VmHWM) right before the check and reports the growth and the wall time to the verdict. The check runs
the way the import starter runs it: `CheckedUpload` (the checker on its own thread, fed by the reads)
read in 1 MiB blocks to its end or to its refusal.

I6: each adversarial file is decided in at most 2x the time of the clean file, with a peak RSS growth
of at most 64 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
HEADER = b"Employee ID,First Name,Last Name,Title,Department,Location,Manager Employee ID,Start Date,Work Email\n"
RSS_LIMIT_MB = 64.0
TIME_LIMIT = 2.0


def _rows(first: int, end: bytes = b"\n") -> bytes:
    """Whole rows filling about 1 MiB (the same block is repeated, so generation costs nothing)."""
    rows, size, index = [], 0, first
    while size < MIB - 200:
        row = (
            f"E{index:09d},Ada,Lovelace{index},Engineer,Engineering,London,E000000001,2024-01-01,ada{index}@example.com"
        ).encode() + end
        rows.append(row)
        size += len(row)
        index += 1
    return b"".join(rows)


#: A file is its segments in order: (block, times).
Segments = list[tuple[bytes, int]]


def cases(size: int) -> dict[str, Segments]:
    """Each case about `size` bytes: what goes around the repeated clean block, and how many of it fit."""
    clean = _rows(0)
    lead = _rows(10_000_000)[:65_536]
    lead = lead[: lead.rfind(b"\n") + 1]  # the first 64 KiB of rows: later problems are past any sniffing
    shapes: dict[str, tuple[Segments, Segments]] = {
        "clean": ([(HEADER, 1)], []),
        # one quote opens a field that never closes: every later line looks quoted
        "unbalanced-quote": ([(HEADER, 1), (lead, 1), (b'E1,"Ada,Lovelace,Engineer\n', 1)], []),
        "cr-only": ([(HEADER.replace(b"\n", b"\r"), 1)], []),  # filled with CR rows below
        "one-50MB-line": ([(HEADER, 1), (lead, 1), (b"E2,", 1), (b"x" * MIB, 50), (b"\n", 1)], []),
        "50MB-header": ([(HEADER[:-1], 1), (b",a" * (MIB // 2), 50), (b"\n", 1)], []),
        "NUL-after-64KiB": ([(HEADER, 1), (lead, 1), (b"E3,\x00\n", 1)], []),
        "NUL-at-the-end": ([(HEADER, 1)], [(b"E4,Gr\x00ce\n", 1)]),
    }
    files: dict[str, Segments] = {}
    for name, (before, after) in shapes.items():
        block = _rows(0, b"\r") if name == "cr-only" else clean
        around = sum(len(part) * times for part, times in before + after)
        files[name] = [*before, (block, max(0, (size - around) // len(block))), *after]
    return files


class GeneratedFile:
    """A file read from its segments; a read of exactly one block returns the block itself (no copy)."""

    def __init__(self, segments: Segments) -> None:
        self.size = sum(len(part) * times for part, times in segments)
        self._parts: Iterator[bytes] = (part for part, times in segments for _ in range(times))
        self._pending = b""

    def read(self, amount: int = -1) -> bytes:
        if not self._pending:
            part = next(self._parts, b"")
            if amount < 0 or len(part) == amount:
                return part
            self._pending = part
        while amount < 0 or len(self._pending) < amount:
            more = next(self._parts, None)
            if more is None:
                break
            self._pending += more
        amount = len(self._pending) if amount < 0 else amount
        chunk, self._pending = self._pending[:amount], self._pending[amount:]
        return chunk

    def close(self) -> None:
        pass


def _child(case: str, size: int) -> dict[str, Any]:
    """One case in this (fresh) interpreter: the verdict, its wall time and the peak RSS growth."""
    from people_sync.csv_checks import CHUNK, CheckedUpload, CsvRejected, CsvRules

    stream = GeneratedFile(cases(size)[case])
    rules = CsvRules(maxRows=1_000_000_000, maxBytes=64 * 1024**3)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM)
    before = _status_kb("VmRSS")
    started = time.perf_counter()
    upload = CheckedUpload(stream, stream.size, "adversarial.csv", rules)
    try:
        while upload.read(CHUNK):
            pass
        verdict = f"accepted ({upload.summary.rows:,} rows)" if upload.summary else "accepted"
        refused = None
    except CsvRejected as rejected:
        verdict, refused = f"refused: {rejected.problem.code}", rejected.problem.message
    finally:
        upload.close()
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "rss_growth_mb": (_status_kb("VmHWM") - before) / 1024,
        "size": stream.size,
        "verdict": verdict,
        "message": refused,
    }


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _run_child(case: str, size: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)])}
    out = subprocess.run(
        [sys.executable, "-m", "bench.adversarial", "--child", case, "--size-mb", str(size // MIB)],
        env=env,
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def adversarial(size_mb: int, repeat: int) -> bool:
    """Prints the I6 lines; True when every adversarial case holds."""
    size = size_mb * MIB
    print(
        f"(e) I6: adversarial CSVs of about {size_mb:,} MB through the pre-flight check as the upload runs it "
        "(CheckedUpload), vs. a clean file of the same size\n"
        f"    [target: decided in <= {TIME_LIMIT:.0f}x the clean file's time, "
        f"peak RSS growth <= {RSS_LIMIT_MB:.0f} MB]",
        flush=True,
    )
    names = list(cases(MIB))
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(repeat):  # alternated, so machine load hits every case alike
        for name in names:
            samples[name].append(_run_child(name, size))
    clean = statistics.median(run["seconds"] for run in samples["clean"])
    held = True
    for name in names:
        runs = samples[name]
        seconds = statistics.median(run["seconds"] for run in runs)
        growth = max(run["rss_growth_mb"] for run in runs)
        ratio = seconds / clean
        ok = (ratio <= TIME_LIMIT or name == "clean") and growth <= RSS_LIMIT_MB
        held = held and ok
        print(
            f"    {name:<17} {runs[0]['size'] / MIB:7,.0f} MB {seconds:7.2f} s  ratio {ratio:5.2f}  "
            f"peak RSS growth {growth:5.1f} MB  {runs[0]['verdict']:<30} {'ok' if ok else 'OVER'}",
            flush=True,
        )
    for name in names:
        message = samples[name][0]["message"]
        if message:
            print(f"      {name}: {message}")
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=int(os.environ.get("BENCH_I6_MB", "1024")))
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each case (median is shown)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path[:0] = [str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]
        print(json.dumps(_child(args.child, args.size_mb * MIB)))
        return
    adversarial(args.size_mb, args.repeat)


if __name__ == "__main__":
    main()
