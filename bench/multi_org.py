"""(f) Many orgs at once:  python -m bench.multi_org [--clock wall|simulated] [--orgs 200] [--window 60]

One stack serves `--orgs` orgs (each onboarded with the admin tool: its registry entry, its token in a
secret of its own, its own token and app user in the ChartHop emulator); each org stages one file, the
uploads spread evenly over `--window` seconds. Two clocks:

* `--clock wall` runs the offline stack itself, not a simulation: the real handlers in the in-process Lambda
  runtime, the real state machine in moto's Step Functions, the ChartHop emulator over loopback HTTP, all on
  this machine's wall clock. Everything runs in one Python process (one core's worth of CPU: the GIL), which
  keeps up with about 1.5 syncs a second here (docs/performance.md (f)); past that the uploads themselves fall
  behind their schedule.
* `--clock simulated` (bench/simulated_clock.py) is the alternative the issue allows where the offline stack
  cannot reach the count: the same real handlers, moto and ChartHop emulator, but on a simulated clock, with
  the status loop's definition as deployed in moto stepped by the bench's driver instead of moto's
  interpreter. The uploads are on schedule by construction; each invocation takes on the clock the wall time
  it took here, run alone (as on a Lambda of its own).

Both run with the deployed timing (the template's poll schedule, the functions' default ChartHop timeouts
and queue wait), not the test-sized one of offline_environment's defaults: see `deployed_timing`.

Measured, from the stack's own records:
* every org's sync ends DONE (ChartHop's sync processes in the emulator);
* cross-org requests: calls whose Authorization header is not the token of the org their path names
  (the emulator records both for every call);
* upload -> "import started": from the moment the org's file was put into S3 to the moment ChartHop
  received the org's importDataCsv (the emulator's record of the call), median and p99 over orgs;
* the cost per sync: Lambda invocations (the runtime's record, per function), Step Functions state
  transitions (states entered: from each execution's history in moto, or counted by the simulated clock's
  driver), DynamoDB writes and reads and the other AWS calls the handlers made (every boto3 call inside an
  invocation, counted by the runtime's external-call hook), ChartHop requests.
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
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]

import boto3  # noqa: E402

from offline.aws_stack import load_template  # noqa: E402
from offline.charthop_emulator import ImportBehaviour  # noqa: E402
from offline.harness import Offline, offline_environment  # noqa: E402
from offline.lambda_runtime import ExternalCall, ExternalCallHook  # noqa: E402
from people_sync.config import AppSettings  # noqa: E402

DDB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
DDB_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
ROSTER_HEADER = "Employee ID,First Name,Last Name,Title,Department,Start Date\n"


Clock = Literal["wall", "simulated"]


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
    clock: Clock = "wall"
    #: simulated clock only: the most invocations of each function running at once on the clock
    peak_concurrency: dict[str, int] = field(default_factory=dict)
    #: each function's reserved concurrency in the template (0: unreserved)
    reserved_concurrency: dict[str, int] = field(default_factory=dict)

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


def deployed_timing() -> dict[str, Any]:
    """offline_environment's arguments for the deployed timing: the template's poll schedule, import timeout and
    settle time (PollInitialSeconds, PollMaxSeconds, ImportTimeoutSeconds, QueueSettleSeconds defaults) and the
    functions' own defaults for ChartHop's read timeout and retry backoff and a queued start's wait
    (config.AppSettings; the template sets none of them). offline_environment's defaults are sized for tests (a
    check every second, 2 s ChartHop timeouts): once a stack that runs in one process is busier than its CPU, a 1 s
    wait runs out before the check it started hands back, the loop enters its task again and starts another check,
    and no sync ends (docs/performance.md (f)). Deployed, each check has a Lambda of its own and a wait of 5 s or
    more."""
    parameters = load_template()["Parameters"]
    functions = AppSettings.from_env(
        {"CHARTHOP_ORG_ID": "-", "CHARTHOP_APP_NAME": "-", "CHARTHOP_TOKEN_SECRET": "-", "SETTINGS_PARAMETER": "-"}
    )
    return {
        "poll_initial_seconds": int(parameters["PollInitialSeconds"]["Default"]),
        "poll_max_seconds": int(parameters["PollMaxSeconds"]["Default"]),
        "import_timeout_seconds": int(parameters["ImportTimeoutSeconds"]["Default"]),
        "queue_settle_seconds": float(parameters["QueueSettleSeconds"]["Default"]),
        "extra_env": {
            "CHARTHOP_READ_TIMEOUT_SECONDS": str(functions.charthop_read_timeout_seconds),
            "CHARTHOP_RETRY_BACKOFF_SECONDS": str(functions.charthop_retry_backoff_seconds),
            "QUEUE_WAIT_SECONDS": str(functions.queue_wait_seconds),
        },
    }


def roster(index: int, org: str) -> bytes:
    return f"{ROSTER_HEADER}E{index:06d},Ada,{org},Engineer,Engineering,2024-01-01\n".encode()


def onboard(offline: Offline, ids: list[str]) -> Counter[str]:
    """Onboards the orgs, then counts every AWS call the handlers make from here on (the syncs' own)."""
    for org in ids:
        offline.add_org(org)
    aws_calls: Counter[str] = Counter()

    def count(call: ExternalCall, phase: Literal["before", "after"]) -> None:
        if phase == "before" and call.kind == "aws":
            aws_calls[call.name] += 1

    hook: ExternalCallHook = count
    offline.runtime.external_call_hook = hook
    return aws_calls


def run(orgs: int, *, window: float = 60.0, import_seconds: float = 1.0, timeout: float = 900.0) -> MultiOrgResult:
    """The offline stack on the wall clock: onboards `orgs` orgs, stages one file for each within `window`
    seconds, waits for every sync to end."""
    ids = org_ids(orgs)
    with offline_environment(
        import_behaviour=ImportBehaviour(duration_s=import_seconds), **deployed_timing()
    ) as offline:
        aws_calls = onboard(offline, ids)
        s3 = boto3.client("s3", region_name=offline.stack.region)
        uploaded: dict[str, float] = {}
        first = time.monotonic()
        for index, org in enumerate(ids):
            due = first + (window * index / orgs if orgs > 1 else 0.0)
            time.sleep(max(0.0, due - time.monotonic()))
            uploaded[org] = time.monotonic()
            s3.put_object(
                Bucket=offline.bucket, Key=offline.staged_key("roster.csv", folder=org), Body=roster(index, org)
            )
        staging_span = time.monotonic() - first
        statuses = _wait_for_syncs(offline, ids, deadline=first + timeout)
        elapsed = time.monotonic() - first
        offline.wait_idle()
        offline.runtime.external_call_hook = None
        return measure(
            offline,
            uploaded,
            window=window,
            staging_span=staging_span,
            elapsed=elapsed,
            statuses=statuses,
            transitions=_state_transitions(offline),
            aws_calls=aws_calls,
            clock="wall",
        )


def measure(
    offline: Offline,
    uploaded: dict[str, float],
    *,
    window: float,
    staging_span: float,
    elapsed: float,
    statuses: dict[str, str],
    transitions: int,
    aws_calls: Counter[str],
    clock: Clock,
    peak_concurrency: dict[str, int] | None = None,
) -> MultiOrgResult:
    """The result from the stack's records: the runtime's invocations, the emulator's calls (`uploaded` and the
    emulator's call records are on the same clock)."""
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
        orgs=len(uploaded),
        window_seconds=window,
        staging_span=staging_span,
        elapsed=elapsed,
        statuses=statuses,
        cross_org_requests=cross,
        to_import_started=started,
        invocations=invocations,
        transitions=transitions,
        aws_calls=aws_calls,
        charthop_requests=sum(1 for call in calls if call.org in uploaded),
        clock=clock,
        peak_concurrency=peak_concurrency or {},
        reserved_concurrency=reserved_concurrency(offline),
    )


def reserved_concurrency(offline: Offline) -> dict[str, int]:
    """Each function's ReservedConcurrentExecutions as the template resolves with its defaults (0: none)."""
    reserved: dict[str, int] = {}
    for logical_id, resource in offline.stack.template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            value = offline.stack.resolve(resource.get("Properties", {}).get("ReservedConcurrentExecutions", 0))
            reserved[logical_id] = int(value) if str(value).isdigit() else 0
    return reserved


def statuses_of(offline: Offline, ids: list[str]) -> dict[str, str]:
    """Each org's sync status in ChartHop ("missing" when none ended)."""
    ended: dict[str, str] = {}
    for process in offline.sync_processes():
        if process["orgId"] in ids and process["status"] in ("DONE", "ERROR"):
            ended[str(process["orgId"])] = str(process["status"])
    return {org: ended.get(org, "missing") for org in ids}


def _wait_for_syncs(offline: Offline, ids: list[str], *, deadline: float) -> dict[str, str]:
    """Each org's sync status once every org has one ended sync (or the deadline passed)."""
    while True:
        statuses = statuses_of(offline, ids)
        if "missing" not in statuses.values() or time.monotonic() > deadline:
            return statuses
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
    window = f"window {result.window_seconds:g} s"
    staged = f"(f) {n} orgs, one file each, staged over {result.staging_span:.1f} s ({window})"
    if result.clock == "wall":
        print(
            f"{staged}, through the offline stack\n"
            "    (the real handlers in the in-process Lambda runtime, the real state machine in moto, the ChartHop"
            " emulator; wall clock, not simulated; deployed timing)"
        )
    else:
        print(
            f"{staged}, on a SIMULATED clock\n"
            "    (the real handlers in the in-process Lambda runtime, moto, the ChartHop emulator; the state machine as"
            " deployed in moto, stepped by the bench's driver; each invocation takes the wall time it took here,"
            " alone; waits take none; deployed timing)"
        )
    verdict = "ok" if result.done == n and result.cross_org_requests == 0 and len(waits) == n else "FAILED"
    others = Counter(status for status in result.statuses.values() if status != "DONE")
    print(
        f"    syncs DONE {result.done}/{n}{'' if not others else ' ' + str(dict(others))}, "
        f"cross-org requests {result.cross_org_requests}, all ended {result.elapsed:.1f} s after the first upload"
        f"{' (on the clock)' if result.clock == 'simulated' else ''}  {verdict}"
    )
    if waits:
        print(
            f"    upload -> import started: median {statistics.median(waits):5.2f} s, "
            f"p99 {percentile(waits, 0.99):5.2f} s, max {max(waits):5.2f} s  ({len(waits)} orgs)"
        )
    if result.peak_concurrency:
        peaks = ", ".join(
            f"{name} {peak}"
            + (f" of {result.reserved_concurrency[name]} reserved" if result.reserved_concurrency.get(name) else "")
            for name, peak in sorted(result.peak_concurrency.items())
        )
        print(f"    most invocations running at once on the clock: {peaks}")
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
    parser.add_argument(
        "--clock",
        choices=("wall", "simulated"),
        default="wall",
        help="the offline stack on the wall clock (default), or the real handlers on a simulated clock",
    )
    parser.add_argument("--orgs", type=int, default=200, help="orgs, one staged file each (default 200)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds the uploads are spread over (default 60)")
    parser.add_argument("--import-seconds", type=float, default=1.0, help="how long each ChartHop import runs")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="wall clock: give up this long after the first upload"
    )
    parser.add_argument("--quick", action="store_true", help="5 orgs, all staged at once (what the tests run)")
    args = parser.parse_args()
    if args.quick:
        args.orgs, args.window = 5, 0.0
    started = time.monotonic()
    if args.clock == "simulated":
        from bench.simulated_clock import run_simulated

        result = run_simulated(args.orgs, window=args.window, import_seconds=args.import_seconds)
    else:
        result = run(args.orgs, window=args.window, import_seconds=args.import_seconds, timeout=args.timeout)
    report(result)
    print(f"    (this run: {time.monotonic() - started:.0f} s of wall time, onboarding included)")
    if result.done != result.orgs or result.cross_org_requests:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
