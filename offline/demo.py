"""The whole sync, offline: S3 upload and "Sync Now" against a local ChartHop, through the real template.

    python -m offline.demo [--csv events/roster.csv] [--import-seconds 4]

Prints each sync's progress as ChartHop's app UI would show it and exits non-zero unless every sync
ends DONE with progress strictly increasing to 1.0.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

from offline.aws_stack import REPO_ROOT
from offline.charthop_emulator import ImportBehaviour
from offline.harness import Offline, offline_environment

DEFAULT_CSV = REPO_ROOT / "events" / "roster.csv"


class ProgressPrinter:
    """Prints updateProcess calls as they reach the emulator: what the user sees in ChartHop."""

    def __init__(self, offline: Offline) -> None:
        self.offline = offline
        self.seen = 0

    def follow(self, process_id: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.flush()
            process = self.offline.emulator.process(process_id)
            if process["status"] in ("DONE", "ERROR") and not self.offline.execution_running(process_id):
                self.flush()
                return process
            time.sleep(0.05)
        raise TimeoutError(f"sync {process_id} did not finish")

    def flush(self) -> None:
        updates = self.offline.emulator.updates
        while self.seen < len(updates):
            update = updates[self.seen]
            self.seen += 1
            body = update.body
            progress = f"{body['progress'] * 100:5.1f}%" if "progress" in body else "     -"
            print(
                f"   [sync {update.process_id[:8]}] {progress}  {body.get('status', ''):<7} {body.get('message', '')}"
            )


def verdict(offline: Offline, process: dict[str, Any]) -> bool:
    values = offline.progress_values(process["id"])
    increasing = all(b > a for a, b in itertools.pairwise(values))
    ok = process["status"] == "DONE" and increasing and values[-1:] == [1.0]
    print(f"   => {process['status']}: {process.get('message')}")
    print(f"      results {process.get('results')}")
    print(f"      progress {values} ({'strictly increasing to 1.0' if ok else 'NOT as expected'})")
    return ok


def run(csv_path: Path, import_seconds: float, *, verbose: bool = False) -> bool:
    body = csv_path.read_bytes()
    with offline_environment(
        import_behaviour=ImportBehaviour(duration_s=import_seconds),
        poll_initial_seconds=1,
        poll_max_seconds=1,
        import_timeout_seconds=600,
        extra_env={} if verbose else {"POWERTOOLS_LOG_LEVEL": "WARNING"},
    ) as offline:
        printer = ProgressPrinter(offline)
        print("people-sync offline demo (ChartHop emulator + moto; no AWS account, no network)")
        print(f"  ChartHop emulator : {offline.emulator.base_url}  org {offline.org_id}")
        print(f"  webhook (API GW)  : {offline.webhook_url}")
        print(f"  staging bucket    : s3://{offline.bucket}/{offline.staged_key('')}")
        print(f"  state machine     : {offline.stack.state_machine_arn()}  (statemachine/sync_status.asl.json)")

        print(f"\n1) An HR export drops {csv_path.name} into the staging bucket (no Sync Now pressed)")
        known = {p["id"] for p in offline.sync_processes()}
        offline.stage(csv_path.name, body)
        upload_sync = offline.wait_for_new_sync(known)
        ok_upload = verdict(offline, printer.follow(upload_sync["id"]))

        print('\n2) A ChartHop admin presses "Sync Now" for the app')
        pressed = offline.emulator.press_sync_now()
        print(f"   webhook answered HTTP {pressed['status']} {pressed['body']}")
        ok_sync_now = verdict(offline, printer.follow(pressed["process"]["id"]))

        offline.runtime.wait_idle()
        imports = len(offline.emulator.uploads)
        print(f"\nChartHop received {imports} imports; every updateProcess call is shown above.")
        return ok_upload and ok_sync_now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="CSV to stage (default: events/roster.csv)")
    parser.add_argument("--import-seconds", type=float, default=4.0, help="how long the emulated ChartHop import takes")
    parser.add_argument("--verbose", action="store_true", help="also print the functions' JSON logs")
    args = parser.parse_args(argv)
    ok = run(args.csv, args.import_seconds, verbose=args.verbose)
    print("\nDEMO OK: every sync ended DONE" if ok else "\nDEMO FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
