"""Benchmarks, measured side by side in one run on this machine:  python -m bench.run

(b) cold import of each handler as deployed (the layer `sam build` makes, an interpreter that sees only it)
    against a bare `import boto3` + client creation from the same layer;
(c) state transitions and detection delay of the status loop for 10 s, 5 min and 1 h imports
    (the loop's own backoff code, on a simulated clock);
(d) end-to-end time of the offline demo with a 10,000-row CSV;
(e) invariant I6: adversarial CSVs (unbalanced quote, CR-only, a 50 MB line, a 50 MB header, NULs) through
    the pre-flight check against a clean file of the same size (bench/adversarial.py; BENCH_I6_MB or
    --i6-size-mb for a smaller quick run, 1024 by default).

(a), the 1 GB streaming upload against a raw loopback upload, is `python -m bench.upload`, (f), 200 orgs
staging a file each within a minute (the real handlers on a simulated clock; fewer orgs through the offline
stack on the wall clock), is `python -m bench.multi_org`, and (g), one org's flood of 300 files on a simulated
clock, is `python -m bench.org_flood` (make bench runs them all).
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
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]

from bench.adversarial import adversarial  # noqa: E402
from people_sync.config import AppSettings  # noqa: E402 - after the layer is on the path
from people_sync.loop_memory import InMemoryLoopMemory  # noqa: E402
from people_sync.models import ImportJob, ImportStatus, SyncState  # noqa: E402
from people_sync.status_loop import follow_import  # noqa: E402
from people_sync.sync_service import SyncContext  # noqa: E402
from people_sync.targets.log_reporter import LogProgressReporter  # noqa: E402
from tools.deployed import build_layer, run_as_lambda, without_bytecode  # noqa: E402

HANDLERS = ["webhook", "import_starter", "status_checker", "sync_finalizer", "target_callback"]


def _environment() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }


#: Each snippet times itself in a fresh Lambda-like interpreter (tools/deployed.py) and prints the seconds.
FLOOR = "import time; t = time.perf_counter(); import boto3; boto3.client('s3'); print(time.perf_counter() - t)"
HANDLER_IMPORT = "import time; t = time.perf_counter(); import app; print(time.perf_counter() - t)"
#: What the import starter's first invocation adds to its cold start: the AWS clients it uses, created at first
#: use (people_sync.aws_clients), after the handler module has been imported. Not part of the (b) ratios.
FIRST_USE_CLIENTS = ("dynamodb", "s3", "stepfunctions", "secretsmanager", "ssm")
FIRST_USE = (
    "import time, app; from people_sync import aws_clients; t = time.perf_counter(); "
    f"[getattr(aws_clients, name)() for name in {FIRST_USE_CLIENTS!r}]; print(time.perf_counter() - t)"
)


def _timed(code: str, path: list[Path]) -> float:
    return float(run_as_lambda(code, path).strip().splitlines()[-1])


def cold_imports(runs: int) -> None:
    """Cold imports of the package `sam build` makes, in an interpreter that sees only it (as Lambda does).

    Floor and handlers import from the same built layer (boto3 included) and are measured interleaved,
    round after round, so machine load hits both alike. Each handler is also imported from the same layer
    without bytecode, as SAM's python3.13 builder ships a layer (Lambda cannot write .pyc files itself).
    """
    print(
        "(b) cold import of each handler as deployed (built layer, stdlib-only interpreter, tracing on)\n"
        "    vs. `import boto3` + boto3.client('s3') from the same layer  [target: <= 1.3x]"
    )
    with tempfile.TemporaryDirectory() as scratch:
        layer = build_layer(Path(scratch) / "layer")
        source_only = without_bytecode(layer, Path(scratch) / "source-only" / "python")
        samples: dict[str, list[float]] = {"floor": [], **{name: [] for name in HANDLERS}}
        from_source: dict[str, list[float]] = {name: [] for name in HANDLERS}
        first_use: list[float] = []
        for _ in range(runs):
            samples["floor"].append(_timed(FLOOR, [layer]))
            for name in HANDLERS:
                code = REPO_ROOT / "functions" / name
                samples[name].append(_timed(HANDLER_IMPORT, [code, layer]))
                from_source[name].append(_timed(HANDLER_IMPORT, [code, source_only]))
            first_use.append(_timed(FIRST_USE, [REPO_ROOT / "functions" / "import_starter", layer]))
    floor = statistics.median(samples["floor"])
    print(f"    boto3 floor                 {floor * 1000:7.0f} ms   (median of {runs})")
    for name in HANDLERS:
        seconds = statistics.median(samples[name])
        verdict = "ok" if seconds <= 1.3 * floor else "OVER"
        uncompiled = statistics.median(from_source[name])
        print(
            f"    {name:<27} {seconds * 1000:7.0f} ms   ratio {seconds / floor:4.2f}  {verdict:<4}   "
            f"layer without bytecode {uncompiled * 1000:4.0f} ms ({uncompiled / seconds:.1f}x)"
        )
    print(
        f"    import starter's first invocation then creates its AWS clients ({', '.join(FIRST_USE_CLIENTS)}): "
        f"{statistics.median(first_use) * 1000:.0f} ms, once per container (not in the ratios)"
    )


class _SimulatedImport:
    """An import target on the simulated clock: running until `duration` seconds after the start."""

    name = "simulated"
    display_name = "Simulated"
    calls_back = False
    min_check_interval_seconds = 1

    def __init__(self, clock: list[float], duration: float) -> None:
        self.clock, self.duration, self.checks = clock, duration, 0

    def start_import(self, staged: Any, open_body: Any, *, sync_id: str, callback_url: str | None = None) -> Any:
        raise AssertionError("the loop never starts imports")

    def abandon(self, job: ImportJob) -> None:
        pass

    def import_status(self, job: ImportJob, open_body: Any) -> tuple[ImportStatus, ImportJob]:
        self.checks += 1
        if self.clock[0] >= self.duration:
            return ImportStatus(state="done", progress=1.0), job
        return ImportStatus(state="running", progress=self.clock[0] / self.duration), job


class _StateMachine:
    """Stands in for Step Functions around the status checker: collects hand-overs."""

    exceptions = None

    def __init__(self) -> None:
        self.handed: list[str] = []

    def send_task_success(self, *, taskToken: str, output: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.handed.append(output)
        return {}


def simulate_status_loop(duration: float, initial: int, cap: int) -> tuple[int, int, int, float]:
    """Runs the real status checker code (status_loop.follow_import) as the ASL drives it, on a simulated
    clock: FollowImport is entered, the checker hands a state back (then IsImportFinished, and FinishSync
    or FollowImport again) or leaves the token unanswered (the wait runs out, FollowImport is entered
    again). Returns (checks, state transitions, Lambda invocations, seconds from completion to notice)."""
    clock = [0.0]
    target = _SimulatedImport(clock, duration)
    machine = _StateMachine()
    settings = AppSettings(
        org_id="org", app_name="bench", app_user_id="u", charthop_base_url="http://unused", token_secret_name="-",
        settings_parameter_name="-", staging_bucket="b", staging_prefix="staging/", state_machine_arn="-",
        import_starter_function="-", poll_initial_seconds=initial, poll_max_seconds=cap, import_timeout_seconds=7200,
    )  # fmt: skip
    ctx = SyncContext(
        settings=settings,
        charthop=cast(Any, None),
        target=target,
        reporter=LogProgressReporter("bench"),
        s3=cast(Any, None),
        stepfunctions=cast(Any, machine),
        loop_memory=InMemoryLoopMemory(),
        clock=lambda: clock[0],
    )
    state = SyncState.model_validate(
        {
            "orgId": "org", "syncProcessId": "s", "importId": "i",
            "file": {"bucket": "b", "key": "staging/org/f.csv", "orgId": "org"},
            "poll": {"waitSeconds": initial, "initialSeconds": initial, "maxSeconds": cap, "timeoutSeconds": 7200,
                     "startedAt": 0, "checkedAt": 0},
        }
    )  # fmt: skip
    transitions, invocations = 2, 1  # the start: StartImport (one invocation) and IsImportStarted
    while True:
        transitions += 1  # FollowImport entered
        invocations += 1
        outcome = follow_import(ctx, state, "token")
        if outcome == "waiting":
            clock[0] += state.poll.wait_seconds  # the wait runs out; the same data enters the task again
            continue
        transitions += 1  # IsImportFinished
        state = SyncState.model_validate_json(machine.handed[-1])
        if state.finished:
            return target.checks, transitions + 1, invocations + 1, clock[0] - duration  # + FinishSync
        clock[0] += 0.1  # straight back into FollowImport


def polling(initial: int, cap: int) -> None:
    print(
        f"(c) status loop with the template defaults (first wait {initial} s, stepping up to {cap} s, then to 10% of "
        "the import's age), the real status checker code on a simulated clock"
    )
    print("    [target for 1 h: <= 60 transitions, completion noticed within max(60 s, 10% of elapsed)]")
    for duration in (10, 300, 3600):
        checks, transitions, invocations, delay = simulate_status_loop(duration, initial, cap)
        allowed = max(60, 0.1 * duration)
        verdict = "ok" if delay <= allowed and (duration < 3600 or transitions <= 60) else "OVER"
        print(
            f"    import {duration:>5} s: {checks:3d} checks, {transitions:3d} transitions, "
            f"{invocations:3d} invocations, noticed after {delay:5.1f} s (allowed {allowed:4.0f} s)  {verdict}"
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
    # 15, not 5: single cold imports vary by +-15% on a 2-core machine, so medians of 5 swung by more than the
    # margin of handlers near the target and flipped their verdicts from run to run.
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per cold-import measurement")
    parser.add_argument(
        "--i6-size-mb", type=int, default=int(os.environ.get("BENCH_I6_MB", "1024")), help="size of the (e) files"
    )
    args = parser.parse_args()
    cold_imports(args.runs)
    polling(initial=5, cap=60)
    demo_with_rows(10_000)
    adversarial(args.i6_size_mb, repeat=3)


if __name__ == "__main__":
    main()
