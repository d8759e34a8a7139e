"""Benchmarks, measured side by side in one run on this machine:  python -m bench.run

(b) cold import of each handler module against a bare `import boto3` + client creation;
(c) state transitions and detection delay of the status loop for 10 s, 5 min and 1 h imports
    (the loop's own backoff code, on a simulated clock);
(d) end-to-end time of the offline demo with a 10,000-row CSV.

(a), the 1 GB streaming upload against a raw loopback upload, is `python -m bench.upload` (make bench runs both).
Every line prints the measured values and the ratio or target it is held to.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]

from people_sync.models import PollState  # noqa: E402 - after the layer is on the path
from people_sync.progress import next_poll  # noqa: E402

HANDLERS = ["webhook", "import_starter", "status_checker", "sync_finalizer"]
#: States entered per turn of the loop (WaitBeforeCheck, CheckImportStatus, IsImportFinished), and
#: the states around it (start, FinishSync).
TRANSITIONS_PER_TURN = 3
TRANSITIONS_OUTSIDE_LOOP = 1


def _environment() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "CHARTHOP_APP_NAME": "people-sync",
        "IDEMPOTENCY_TABLE": "bench",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def _timed_python(code: str) -> float:
    """Wall time a fresh interpreter reports for `code` (it prints its own elapsed seconds)."""
    result = subprocess.run(
        [sys.executable, "-c", code], env=_environment(), capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    return float(result.stdout.strip().splitlines()[-1])


FLOOR = "import time; t = time.perf_counter(); import boto3; boto3.client('s3'); print(time.perf_counter() - t)"


def _handler_import(path: Path) -> str:
    return (
        "import time, importlib.util as u; t = time.perf_counter(); "
        f"s = u.spec_from_file_location('handler', {str(path)!r}); m = u.module_from_spec(s); "
        "s.loader.exec_module(m); print(time.perf_counter() - t)"
    )


def cold_imports(runs: int) -> None:
    """Floor and handlers are measured interleaved, round after round, so machine load hits both alike."""
    print("(b) cold import of each handler module vs. `import boto3` + boto3.client('s3')  [target: <= 1.3x]")
    samples: dict[str, list[float]] = {"floor": [], **{name: [] for name in HANDLERS}}
    for _ in range(runs):
        samples["floor"].append(_timed_python(FLOOR))
        for name in HANDLERS:
            samples[name].append(_timed_python(_handler_import(REPO_ROOT / "functions" / name / "app.py")))
    floor = statistics.median(samples["floor"])
    print(f"    boto3 floor                 {floor * 1000:7.0f} ms   (median of {runs})")
    for name in HANDLERS:
        seconds = statistics.median(samples[name])
        verdict = "ok" if seconds <= 1.3 * floor else "OVER"
        print(f"    {name:<27} {seconds * 1000:7.0f} ms   ratio {seconds / floor:4.2f}  {verdict}")


def polling(initial: int, cap: int) -> None:
    print(
        f"(c) status loop with the template defaults (first wait {initial} s, doubling to max({cap} s, 10% of "
        "elapsed)), simulated clock"
    )
    print("    [target for 1 h: <= 60 transitions, completion noticed within max(60 s, 10% of elapsed)]")
    for duration in (10, 300, 3600):
        poll = PollState(
            wait_seconds=initial, initial_seconds=initial, max_seconds=cap, timeout_seconds=7200, started_at=0
        )
        now, turns = 0, 0
        while True:
            now += poll.wait_seconds
            turns += 1
            if now >= duration:
                break
            poll = next_poll(poll, now)
        transitions = turns * TRANSITIONS_PER_TURN + TRANSITIONS_OUTSIDE_LOOP
        delay, allowed = now - duration, max(60, 0.1 * duration)
        verdict = "ok" if delay <= allowed and (duration < 3600 or transitions <= 60) else "OVER"
        print(
            f"    import {duration:>5} s: {turns:3d} checks, {transitions:3d} transitions, noticed after "
            f"{delay:4d} s (allowed {allowed:4.0f} s)  {verdict}"
        )


def demo_with_rows(rows: int) -> None:
    print(f"(d) offline demo end to end with a {rows:,}-row CSV  [target: <= 15 s]")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "roster-10k.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["Employee ID", "First Name", "Last Name", "Title", "Department", "Start Date"])
            for index in range(rows):
                writer.writerow([f"E{index:06d}", "Ada", f"Person{index}", "Engineer", "Engineering", "2024-01-01"])
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "offline.demo", "--csv", str(path), "--import-seconds", "2"],
            env=_environment(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
    ok = result.returncode == 0 and "DEMO OK" in result.stdout
    print(
        f"    {elapsed:5.1f} s for two syncs (upload-driven and Sync Now), demo {'OK' if ok else 'FAILED'}  "
        f"{'ok' if ok and elapsed <= 15 else 'OVER'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per cold-import measurement")
    args = parser.parse_args()
    cold_imports(args.runs)
    polling(initial=5, cap=60)
    demo_with_rows(10_000)


if __name__ == "__main__":
    main()
