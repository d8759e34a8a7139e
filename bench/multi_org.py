"""(f) Many orgs at once through the offline stack:  python -m bench.multi_org [--orgs 200] [--window 60]

One stack serves `--orgs` orgs (each onboarded with the admin tool: its registry entry, its token in a
secret of its own, its own token and app user in the ChartHop emulator); each org stages one file, the
uploads spread evenly over `--window` seconds. This runs the offline stack itself, not a simulation: the
real handlers in the in-process Lambda runtime, the real state machine in moto's Step Functions, the
ChartHop emulator over loopback HTTP, all on this machine's wall clock.

Measured, from the stack's own records:
* every org's sync ends DONE (ChartHop's sync processes in the emulator);
* cross-org requests: calls whose Authorization header is not the token of the org their path names
  (the emulator records both for every call);
* upload -> "import started": from the moment the org's file was put into S3 to the moment ChartHop
  received the org's importDataCsv (the emulator's record of the call), median and p99 over orgs;
* the cost per sync: Lambda invocations (the runtime's record, per function), Step Functions state
  transitions (states entered, from each execution's history in moto), DynamoDB writes and reads and the
  other AWS calls the handlers made (every boto3 call inside an invocation, counted by the runtime's
  external-call hook), ChartHop requests.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]

import boto3  # noqa: E402

from offline.charthop_emulator import ImportBehaviour  # noqa: E402
from offline.harness import Offline, offline_environment  # noqa: E402
from offline.lambda_runtime import ExternalCall  # noqa: E402

DDB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
DDB_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
ROSTER_HEADER = "Employee ID,First Name,Last Name,Title,Department,Start Date\n"


@dataclass
class MultiOrgResult:
    orgs: int
    window_seconds: float
    #: seconds from the first upload to the last one
    staging_span: float
    #: seconds from the first upload until every org's sync had ended
    elapsed: float
    #: org -> status of its sync ("DONE", "ERROR", or "missing" when none ended in time)
    statuses: dict[str, str]
    cross_org_requests: int
    #: org -> seconds from its upload to ChartHop receiving its importDataCsv
    to_import_started: dict[str, float]
    invocations: Counter[str] = field(default_factory=Counter)
    transitions: int = 0
    aws_calls: Counter[str] = field(default_factory=Counter)
    charthop_requests: int = 0

    @property
    def done(self) -> int:
        return sum(1 for status in self.statuses.values() if status == "DONE")

    @property
    def ddb_writes(self) -> int:
        return sum(n for name, n in self.aws_calls.items() if name.startswith("dynamodb.") and name[9:] in DDB_WRITES)

    @property
    def ddb_reads(self) -> int:
        return sum(n for name, n in self.aws_calls.items() if name.startswith("dynamodb.") and name[9:] in DDB_READS)


def org_ids(count: int) -> list[str]:
    return [f"org-{index:04d}" for index in range(1, count + 1)]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def run(orgs: int, *, window: float = 60.0, import_seconds: float = 1.0, timeout: float = 900.0) -> MultiOrgResult:
    """Onboards `orgs` orgs, stages one file for each within `window` seconds, waits for every sync to end."""
    ids = org_ids(orgs)
    aws_calls: Counter[str] = Counter()

    def count(call: ExternalCall, phase: Literal["before", "after"]) -> None:
        if phase == "before" and call.kind == "aws":
            aws_calls[call.name] += 1

    with offline_environment(import_behaviour=ImportBehaviour(duration_s=import_seconds)) as offline:
        for org in ids:
            offline.add_org(org)
        offline.runtime.external_call_hook = count  # from here on: the syncs' own calls
        s3 = boto3.client("s3", region_name=offline.stack.region)
        uploaded: dict[str, float] = {}
        first = time.monotonic()
        for index, org in enumerate(ids):
            due = first + (window * index / orgs if orgs > 1 else 0.0)
            time.sleep(max(0.0, due - time.monotonic()))
            body = f"{ROSTER_HEADER}E{index:06d},Ada,{org},Engineer,Engineering,2024-01-01\n".encode()
            uploaded[org] = time.monotonic()
            s3.put_object(Bucket=offline.bucket, Key=offline.staged_key("roster.csv", folder=org), Body=body)
        staging_span = time.monotonic() - first
        statuses = _wait_for_syncs(offline, ids, deadline=first + timeout)
        elapsed = time.monotonic() - first
        offline.wait_idle()
        offline.runtime.external_call_hook = None
        names = {function.name: logical for logical, function in offline.stack.functions.items()}
        invocations = Counter(names[invocation.function] for invocation in offline.runtime.invocations)
        tokens = {f"Bearer {account.token}": org for org, account in offline.emulator.orgs.items()}
        calls = list(offline.emulator.calls)
        cross = sum(1 for call in calls if tokens.get(call.authorization) != call.org)
        started: dict[str, float] = {}
        for call in calls:
            if call.operation == "importDataCsv" and call.status < 300 and call.org in uploaded:
                started.setdefault(call.org, call.at - uploaded[call.org])
        return MultiOrgResult(
            orgs=orgs,
            window_seconds=window,
            staging_span=staging_span,
            elapsed=elapsed,
            statuses=statuses,
            cross_org_requests=cross,
            to_import_started=started,
            invocations=invocations,
            transitions=_state_transitions(offline),
            aws_calls=aws_calls,
            charthop_requests=sum(1 for call in calls if call.org in uploaded),
        )


def _wait_for_syncs(offline: Offline, ids: list[str], *, deadline: float) -> dict[str, str]:
    """Each org's sync status once every org has one ended sync (or the deadline passed)."""
    wanted = set(ids)
    while True:
        ended: dict[str, str] = {}
        for process in offline.sync_processes():
            if process["orgId"] in wanted and process["status"] in ("DONE", "ERROR"):
                ended[str(process["orgId"])] = str(process["status"])
        if len(ended) == len(wanted) or time.monotonic() > deadline:
            return {org: ended.get(org, "missing") for org in ids}
        time.sleep(0.5)


def _state_transitions(offline: Offline) -> int:
    """States entered over every execution of the status loop (what Step Functions bills as transitions)."""
    sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
    arn = offline.stack.state_machine_arn()
    executions = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
        executions.extend(page["executions"])
    total = 0
    for execution in executions:
        pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution["executionArn"])
        total += sum(1 for page in pages for event in page["events"] if event["type"].endswith("StateEntered"))
    return total


def report(result: MultiOrgResult) -> None:
    n = result.orgs
    waits = list(result.to_import_started.values())
    print(
        f"(f) {n} orgs, one file each, staged over {result.staging_span:.1f} s (window {result.window_seconds:g} s), "
        "through the offline stack\n"
        "    (the real handlers in the in-process Lambda runtime, the real state machine in moto, the ChartHop"
        " emulator; wall clock, not simulated)"
    )
    verdict = "ok" if result.done == n and result.cross_org_requests == 0 and len(waits) == n else "FAILED"
    others = Counter(status for status in result.statuses.values() if status != "DONE")
    print(
        f"    syncs DONE {result.done}/{n}{'' if not others else ' ' + str(dict(others))}, "
        f"cross-org requests {result.cross_org_requests}, all ended {result.elapsed:.1f} s after the first upload  "
        f"{verdict}"
    )
    if waits:
        print(
            f"    upload -> import started: median {statistics.median(waits):5.2f} s, "
            f"p99 {percentile(waits, 0.99):5.2f} s, max {max(waits):5.2f} s  ({len(waits)} orgs)"
        )
    print("    cost per sync (totals / syncs):")
    rows: list[tuple[str, int]] = [
        (f"Lambda invocations: {name}", count) for name, count in sorted(result.invocations.items())
    ]
    rows.append(("Lambda invocations, all", sum(result.invocations.values())))
    rows.append(("Step Functions state transitions", result.transitions))
    rows.append(("DynamoDB writes (Put/Update/Delete)", result.ddb_writes))
    rows.append(("DynamoDB reads (Get/Query)", result.ddb_reads))
    for name, count in sorted(result.aws_calls.items()):
        if name.startswith("dynamodb."):
            rows.append((f"  of which {name}", count))
    for name, count in sorted(result.aws_calls.items()):
        if not name.startswith("dynamodb."):
            rows.append((f"AWS calls: {name}", count))
    rows.append(("ChartHop requests", result.charthop_requests))
    for label, total in rows:
        print(f"      {label:<44} {total:7d}   {total / n:6.1f} per sync")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orgs", type=int, default=200, help="orgs, one staged file each (default 200)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds the uploads are spread over (default 60)")
    parser.add_argument("--import-seconds", type=float, default=1.0, help="how long each ChartHop import runs")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up this long after the first upload")
    parser.add_argument("--quick", action="store_true", help="5 orgs, all staged at once (what the tests run)")
    args = parser.parse_args()
    if args.quick:
        args.orgs, args.window = 5, 0.0
    result = run(args.orgs, window=args.window, import_seconds=args.import_seconds, timeout=args.timeout)
    report(result)
    if result.done != result.orgs or result.cross_org_requests:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
