"""The whole sync, offline: S3 upload and "Sync Now" against a local ChartHop, through the real template.

    python -m offline.demo [--target charthop|orgvue|elma365|all] [--csv events/roster.csv] [--import-seconds 4]
    python -m offline.demo --orgs 3

Prints each sync's progress as the user would see it (ChartHop's app UI; for Orgvue and ELMA365 the
functions' progress log lines) and exits non-zero unless every sync ends DONE with progress strictly
increasing to 1.0.

With `--orgs N` (N >= 2) one stack serves N ChartHop orgs at once (issue 13): each org's file is staged and
each org presses "Sync Now" at the same time; the last org's token is wrong and ChartHop cannot hand the app a
fresh one, so its syncs fail alone (ChartHop refuses the token; the file stays staged; the org's entry is marked
for `orgs set-token`) while the others end DONE. It prints each org's bar and outcome and
exits non-zero unless the good orgs end DONE, the bad one imported nothing, and no request carried another
org's token.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from pathlib import Path
from typing import Any

from offline.aws_stack import REPO_ROOT
from offline.charthop_emulator import ImportBehaviour
from offline.elma365_emulator import ImportBehaviour as ElmaBehaviour
from offline.harness import Offline, offline_environment
from offline.orgvue_emulator import ImportBehaviour as OrgvueBehaviour
from offline.orgvue_emulator import OrgvueEmulator

DEFAULT_CSV = REPO_ROOT / "events" / "roster.csv"
ORGVUE_CSV = REPO_ROOT / "events" / "orgvue_people.csv"
TARGETS = ("charthop", "orgvue", "elma365")
#: The demo imports into ELMA365 in chunks this small, so even the sample roster shows chunking.
DEMO_ELMA365_CHUNK_ROWS = 10


class ProgressLog(logging.Handler):
    """Collects the progress lines syncs into Orgvue and ELMA365 log (targets/log_reporter.py)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[dict[str, Any]] = []
        self.printed = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(dict(record.__dict__))

    def flush_lines(self) -> None:
        while self.printed < len(self.records):
            entry = self.records[self.printed]
            self.printed += 1
            if "progress" not in entry and "status" not in entry:
                continue  # "sync started": its first progress line follows
            progress = f"{entry['progress'] * 100:5.1f}%" if "progress" in entry else "     -"
            status = entry.get("status", "")
            print(f"   [{entry['sync_id'][:16]}] {progress}  {status:<7} {entry.get('progress_message', '')}")

    def follow(self, target: str, timeout: float = 120.0) -> dict[str, Any]:
        """Prints the sync's lines until it finishes; returns its last ("sync finished") record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.flush_lines()
            done = [r for r in self.records if r.get("target") == target and r.get("status") in ("DONE", "ERROR")]
            if done:
                self.flush_lines()
                return done[-1]
            time.sleep(0.05)
        raise TimeoutError(f"the {target} sync did not finish")

    def progress_values(self, sync_id: str) -> list[float]:
        values = [r["progress"] for r in self.records if r.get("sync_id") == sync_id and "progress" in r]
        finished = [r for r in self.records if r.get("sync_id") == sync_id and r.get("status") == "DONE"]
        return values + ([1.0] if finished else [])


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


def run(csv_path: Path, import_seconds: float, *, targets: tuple[str, ...], verbose: bool = False) -> bool:
    further = any(target != "charthop" for target in targets)
    progress_log = ProgressLog()
    progress_logger = logging.getLogger("people_sync.progress")
    progress_logger.addHandler(progress_log)
    progress_logger.setLevel(logging.INFO)
    with offline_environment(
        import_behaviour=ImportBehaviour(duration_s=import_seconds),
        poll_initial_seconds=1,
        poll_max_seconds=1,
        import_timeout_seconds=600,
        extra_env={} if verbose else {"POWERTOOLS_LOG_LEVEL": "WARNING"},
        further_targets=further,
        parameters={"Elma365ChunkRows": str(DEMO_ELMA365_CHUNK_ROWS)} if further else None,
    ) as offline:
        print("people-sync offline demo (emulated targets + moto; no AWS account, no network)")
        print(f"  ChartHop emulator : {offline.emulator.base_url}  org {offline.org_id}")
        if offline.orgvue is not None:
            print(f"  Orgvue emulator   : {offline.orgvue.base_url}  tenant {offline.orgvue.config.tenant_id}")
        if offline.elma365 is not None:
            print(f"  ELMA365 emulator  : {offline.elma365.base_url}  app {offline.elma365.config.apps[0]}")
        print(f"  webhook (API GW)  : {offline.webhook_url}")
        print(f"  staging bucket    : s3://{offline.bucket}/{offline.stack.parameters['StagingPrefix']}")
        print(f"  state machine     : {offline.stack.state_machine_arn()}  (statemachine/sync_status.asl.json)")
        results = []
        if "charthop" in targets:
            results.append(_charthop(offline, csv_path))
        if "orgvue" in targets and offline.orgvue is not None:
            offline.orgvue.import_behaviour = OrgvueBehaviour(duration_s=import_seconds)
            results.append(_further(offline, progress_log, "orgvue", ORGVUE_CSV))
            print(
                f"   Orgvue called back {len(offline.orgvue.callbacks)} time(s); "
                f"the dataset holds {len(offline.orgvue.items)} items"
            )
            print(f"   Orgvue saw: {orgvue_protocol(offline.orgvue)}")
        if "elma365" in targets and offline.elma365 is not None:
            offline.elma365.import_behaviour = ElmaBehaviour(duration_s=import_seconds / 2)
            results.append(_further(offline, progress_log, "elma365", csv_path))
            chunks = [record.rows for record in offline.elma365.own_imports()]
            print(f"   ELMA365 imported {offline.elma365.imported_rows()} rows in {len(chunks)} chunks {chunks}")
        progress_logger.removeHandler(progress_log)
        return all(results)


def _charthop(offline: Offline, csv_path: Path) -> bool:
    printer = ProgressPrinter(offline)
    body = csv_path.read_bytes()
    print(f"\n1) ChartHop: an HR export drops {csv_path.name} into the staging bucket (no Sync Now pressed)")
    known = {p["id"] for p in offline.sync_processes()}
    offline.stage(csv_path.name, body)
    upload_sync = offline.wait_for_new_sync(known)
    ok_upload = verdict(offline, printer.follow(upload_sync["id"]))

    print('\n2) ChartHop: an admin presses "Sync Now" for the app')
    pressed = offline.emulator.press_sync_now()
    print(f"   webhook answered HTTP {pressed['status']} {pressed['body']}")
    ok_sync_now = verdict(offline, printer.follow(pressed["process"]["id"]))

    offline.wait_idle()
    echoes = offline.emulator.wait_for_echoes()
    offline.wait_idle()
    expected = 2  # one per staged file (1) and per "Sync Now" press (1)
    extra = len(offline.emulator.uploads) - expected
    print(f"\nChartHop received {len(offline.emulator.uploads)} imports; every updateProcess call is shown above.")
    print(
        f"ChartHop echoed process.create for {len(echoes)} processes the app created "
        f"(webhook answers {sorted({status for _, status in echoes}, key=str)}); extra imports: {extra}"
    )
    return ok_upload and ok_sync_now and extra == 0


def orgvue_protocol(orgvue: OrgvueEmulator) -> str:
    """How the app spoke to Orgvue: the import's method, how uploads were sent, ticket polls, callbacks."""
    imports = sorted({call.method for call in orgvue.calls_of("import")})
    uploads = orgvue.uploads
    sized = sum(1 for upload in uploads if not upload.chunked and upload.content_length == upload.size)
    return (
        f"import {'/'.join(imports) or 'none'}, {sized}/{len(uploads)} uploads with Content-Length, "
        f"{len(orgvue.chunked_requests())} chunked requests, {len(orgvue.calls_of('ticket'))} job-ticket polls, "
        f"{len(orgvue.callbacks)} callback(s)"
    )


def _further(offline: Offline, progress_log: ProgressLog, target: str, csv_path: Path) -> bool:
    name = {"orgvue": "Orgvue", "elma365": "ELMA365"}[target]
    key = offline.stage(csv_path.name, csv_path.read_bytes(), folder=target)
    print(f"\n{name}: {csv_path.name} is dropped at s3://{offline.bucket}/{key}")
    finished = progress_log.follow(target)
    offline.wait_idle()
    values = progress_log.progress_values(finished["sync_id"])
    ok = finished["status"] == "DONE" and all(b > a for a, b in itertools.pairwise(values)) and values[-1:] == [1.0]
    print(f"   => {finished['status']}: {finished.get('progress_message')}")
    print(f"      progress {values} ({'strictly increasing to 1.0' if ok else 'NOT as expected'})")
    return ok


def run_orgs(csv_path: Path, import_seconds: float, orgs: int, *, verbose: bool = False) -> bool:
    """N orgs in one stack; the last one's token is wrong."""
    with offline_environment(
        import_behaviour=ImportBehaviour(duration_s=import_seconds),
        poll_initial_seconds=1,
        poll_max_seconds=1,
        import_timeout_seconds=600,
        extra_env={} if verbose else {"POWERTOOLS_LOG_LEVEL": "WARNING"},
    ) as offline:
        names = [offline.org_id, *(f"org-{number}" for number in range(2, orgs + 1))]
        bad = names[-1]
        print(f"people-sync offline demo: one stack, {orgs} ChartHop orgs (the token of {bad} is wrong)")
        print(f"  ChartHop emulator : {offline.emulator.base_url}")
        for org in names[1:]:
            offline.add_org(org, token="mistyped-token" if org == bad else None)
        offline.emulator.revoke_token(bad, mintable=False)  # ChartHop cannot hand the app a fresh one either
        for org in names:
            print(f"  org {org:<26} folder s3://{offline.bucket}/{offline.staged_key('', folder=org)}")
        body = csv_path.read_bytes()
        print(f"\n1) every org's HR export drops {csv_path.name} into its own folder at once")
        for org in names:
            offline.stage(csv_path.name, body, folder=org)
        uploads = _follow_orgs(offline, names[:-1], count=1)
        offline.wait_idle()
        print('\n2) an admin of every org presses "Sync Now" at once')
        for org in names:
            pressed = offline.emulator.press_sync_now(org_id=org)
            print(f"   {org}: webhook answered HTTP {pressed['status']}")
        presses = _follow_orgs(offline, names[:-1], count=2)
        offline.wait_idle()
        print("\nEach org's syncs:")
        ok = True
        for org in names[:-1]:
            for process in (uploads[org], presses[org]):
                values = offline.progress_values(process["id"])
                done = process["status"] == "DONE" and all(b > a for a, b in itertools.pairwise(values))
                ok = ok and done and values[-1:] == [1.0]
                print(f"   {org:<26} {_bar(values[-1] if values else 0.0)} {process['status']:<5} {process['message']}")
        refused = [call for call in offline.emulator.calls if call.org == bad and call.operation != "getAccessToken"]
        asked = offline.emulator.calls_of("getAccessToken")  # the stack's own org asking for a fresh token
        imported_bad = offline.emulator.uploads_of(bad)
        staged = offline.staged_key(csv_path.name, folder=bad) in offline.staged_keys()
        print(
            f"   {bad:<26} {_bar(0.0)} ERROR ChartHop refused its token ({len(refused)} calls answered "
            f"{sorted({call.status for call in refused})}): nothing could be shown or imported there; the file stays "
            f"staged ({staged}) and the upload's failure is in the failed-events queue; a fresh token was asked for "
            f"{len(asked)} time(s) ({sorted({call.status for call in asked})}), and the org's entry is marked "
            "`token refused` for `orgs set-token`"
        )
        tokens = {f"Bearer {account.token}": org for org, account in offline.emulator.orgs.items()}
        crossed = [
            c
            for c in offline.emulator.calls
            if c.org != bad and c.operation != "getAccessToken" and tokens.get(c.authorization) != c.org
        ]
        crossed += [c for c in asked if tokens.get(c.authorization) != offline.org_id]
        crossed += [c for c in refused if tokens.get(c.authorization) not in (None, bad)]
        print(f"\nRequests to ChartHop: {len(offline.emulator.calls)}, with another org's token: {len(crossed)}")
        return ok and not imported_bad and staged and bool(refused) and not crossed


def _follow_orgs(offline: Offline, orgs: list[str], *, count: int, timeout: float = 120.0) -> dict[str, dict[str, Any]]:
    """Prints every org's progress updates as they reach ChartHop until each org's `count`-th sync finished;
    returns that sync per org."""
    seen, deadline = len(offline.emulator.updates), time.monotonic() + timeout
    finished: dict[str, dict[str, Any]] = {}
    while len(finished) < len(orgs):
        if time.monotonic() > deadline:
            raise TimeoutError(f"syncs of {sorted(set(orgs) - set(finished))} did not finish")
        updates = offline.emulator.updates
        for update in updates[seen:]:
            org = offline.emulator.process(update.process_id)["orgId"]
            progress = f"{update.body['progress'] * 100:5.1f}%" if "progress" in update.body else "     -"
            print(
                f"   [{org[:12]:<12} {update.process_id[:8]}] {progress}  {update.body.get('status', ''):<7} "
                f"{update.body.get('message', '')}"
            )
        seen = len(updates)
        for org in orgs:
            syncs = sorted(offline.sync_processes_of(org), key=lambda p: str(p["createAt"]))
            if len(syncs) >= count and org not in finished:
                process = offline.emulator.process(syncs[count - 1]["id"])
                if process["status"] in ("DONE", "ERROR") and not offline.execution_running(process["id"]):
                    finished[org] = process
        time.sleep(0.05)
    return finished


def _bar(fraction: float, width: int = 20) -> str:
    filled = round(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="CSV to stage (default: events/roster.csv)")
    parser.add_argument("--import-seconds", type=float, default=4.0, help="how long the emulated ChartHop import takes")
    parser.add_argument("--verbose", action="store_true", help="also print the functions' JSON logs")
    parser.add_argument(
        "--target",
        choices=[*TARGETS, "all"],
        default="charthop",
        help="which target(s) to sync into (default charthop)",
    )
    parser.add_argument(
        "--orgs", type=int, default=1, help="serve this many ChartHop orgs at once, the last with a bad token"
    )
    args = parser.parse_args(argv)
    targets = TARGETS if args.target == "all" else (args.target,)
    if args.orgs > 1:
        ok = run_orgs(args.csv, args.import_seconds, args.orgs, verbose=args.verbose)
        print(f"\nDEMO OK: {args.orgs} orgs, each in its own org" if ok else "\nDEMO FAILED")
        return 0 if ok else 1
    ok = run(args.csv, args.import_seconds, targets=targets, verbose=args.verbose)
    print("\nDEMO OK: every sync ended DONE" if ok else "\nDEMO FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
