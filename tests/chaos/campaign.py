"""Runs one fault schedule over the whole offline stack, then checks I1-I5 (see invariants.py).

The stack runs with test-sized waits (1 s polls, 1 s imports, a 30 s import timeout, 1 s read timeouts), so
a schedule takes seconds. After the last action the faults still pinned keep firing until the stack is
quiet (no invocation pending, no execution running); executions that ended FAILED, TIMED_OUT or ABORTED are
handed to the finalizer as the template's EventBridge rule would. Then the faults stop, the failed-events
queue is redriven once (as the scheduled redriver does every 5 minutes) and the stack settles again, the
records are checked, and a probe (a fresh upload per target used, then a "Sync Now") shows whether an earlier failure
left something that refuses later syncs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

import boto3
import requests
from botocore.exceptions import ClientError

from offline.charthop_emulator import ImportBehaviour
from offline.elma365_emulator import ImportBehaviour as Elma365Behaviour
from offline.emulator_base import Fault, FaultInjectingServer
from offline.harness import Offline, offline_environment
from offline.lambda_runtime import ExternalCall, InvocationKilled
from offline.orgvue_emulator import ImportBehaviour as OrgvueBehaviour
from tests.chaos.invariants import Observed, PressRecord, StagedVersion, Violation, check_all, further_sync_id
from tests.chaos.schedule import Action, HttpFault, Schedule, Target

IMPORT_TIMEOUT_SECONDS = 30
#: How long after the import timeout every sync must be closed: a killed check's lease (it lasts the status
#: checker's remaining time: at most its 60 s timeout), the state machine's retries of a failing finalizer
#: and the watchdog's delivery fit inside it.
GRACE_SECONDS = 90
SLOW_ANSWER_SECONDS = 1.3  # past the clients' read timeout (CHARTHOP_READ_TIMEOUT_SECONDS below)
FOLDERS: dict[Target, str | None] = {"charthop": None, "orgvue": "orgvue", "elma365": "elma365"}


@dataclass
class Result:
    """What one schedule did and what the checkers found."""

    seed: int
    violations: list[Violation] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "seed": self.seed,
                "violations": [[violation.invariant, violation.message] for violation in self.violations],
                "faults": dict(self.faults),
                "crashes": dict(self.crashes),
                "seconds": self.seconds,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Result:
        data = json.loads(text)
        return cls(
            seed=data["seed"],
            violations=[Violation(invariant, message) for invariant, message in data["violations"]],
            faults=Counter(data["faults"]),
            crashes=Counter(data["crashes"]),
            seconds=data["seconds"],
        )


class FaultPlan:
    """The external-call hook: AWS faults by (API, call number), crashes by (function, invocation, call)."""

    def __init__(self, schedule: Schedule) -> None:
        self.active = True
        self._aws = {(fault.operation, fault.index): fault for fault in schedule.aws_faults}
        self._crashes = {(crash.function, crash.attempt, crash.call) for crash in schedule.crashes}
        self._counts: dict[str, int] = defaultdict(int)
        self._after: dict[int, ClientError] = {}
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.crashed: Counter[str] = Counter()

    def __call__(self, call: ExternalCall, phase: Literal["before", "after"]) -> None:
        if not self.active:
            return
        if phase == "after":
            with self._lock:
                error = self._after.pop(id(call), None)
            if error is not None:
                raise error
            return
        with self._lock:
            key = (call.function, call.attempt, call.index)
            if key in self._crashes:
                self._crashes.discard(key)
                self.crashed[call.function] += 1
                raise InvocationKilled("Sandbox.Timedout")
            if call.kind != "aws":
                return
            number = self._counts[call.name]
            self._counts[call.name] = number + 1
            fault = self._aws.pop((call.name, number), None)
            if fault is None:
                return
            self.injected[f"aws {call.name} {fault.code}{' after effect' if fault.after_effect else ''}"] += 1
            operation = call.name.split(".", 1)[1]
            status = 400 if fault.code == "ThrottlingException" else 503 if fault.code == "ServiceUnavailable" else 500
            response: Any = {  # what botocore parses from an error answer (the keys the app reads)
                "Error": {"Code": fault.code, "Message": f"injected {fault.code}"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            }
            error = ClientError(response, operation)
            if fault.after_effect:
                self._after[id(call)] = error
                return
        raise error


def _fault(spec: HttpFault) -> Fault:
    if spec.kind == "reset":
        return Fault(reset=True, after_effect=spec.after_effect)
    if spec.kind == "slow":
        return Fault.slow(SLOW_ANSWER_SECONDS)
    status = int(spec.kind)
    return Fault(status=status, retry_after=0 if status == 429 else None, after_effect=spec.after_effect)


def csv_body(target: Target, marker: str, rows: int, *, bad: bool) -> bytes:
    """A file whose version can be recognised wherever it lands: its row count and its marker are unique."""
    if target == "orgvue":
        lines = ["_action,employeeID,fullName,positionTitle"]
        lines += [f"create,{marker}-{i:03d},Person {i},Engineer" for i in range(rows)]
    else:
        lines = ["Employee ID,First Name,Last Name,Title,Department"]
        lines += [f"{marker}-{i:03d},Pat,Doe {i},Engineer,Engineering" for i in range(rows)]
    if bad:
        lines = lines[:1]  # header only: refused by the pre-flight checks
    return ("\n".join(lines) + "\n").encode()


class _ProgressLines(logging.Handler):
    """Collects the further targets' progress log lines (they have no progress bar of ours)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[dict[str, Any]] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        event = {
            "message": record.getMessage(),
            "sync_id": getattr(record, "sync_id", None),
            "progress": getattr(record, "progress", None),
            "status": getattr(record, "status", None),
            "text": getattr(record, "progress_message", None),
        }
        with self._guard:
            self.events.append(event)


@contextmanager
def _progress_lines() -> Iterator[_ProgressLines]:
    logger = logging.getLogger("people_sync.progress")
    handler = _ProgressLines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class Runner:
    """Plays a schedule's actions against a running offline stack and remembers what it did."""

    def __init__(self, offline: Offline, schedule: Schedule) -> None:
        self.offline = offline
        self.schedule = schedule
        self.versions: list[StagedVersion] = []
        self.presses: list[PressRecord] = []
        self._lambda = boto3.client("lambda", region_name=offline.stack.region)
        self._s3 = boto3.client("s3", region_name=offline.stack.region)

    def upload(self, target: Target, *, bad: bool = False, tag: str = "u") -> StagedVersion:
        number = len(self.versions)
        marker = f"S{self.schedule.seed}{tag}{number}"
        rows = 2 + number if tag == "u" else 40 + number
        name = f"{marker.lower()}.csv"
        key = self.offline.staged_key(name, FOLDERS[target])
        body = csv_body(target, marker, rows, bad=bad)
        answer = self._s3.put_object(Bucket=self.offline.bucket, Key=key, Body=body)
        version = StagedVersion(target, key, str(answer["VersionId"]), marker, rows, bad)
        if target != "charthop":
            version.sync_id = further_sync_id(target, name, f"s3://{self.offline.bucket}/{key}", version.version_id)
        self.versions.append(version)
        return version

    def press_sync_now(self) -> PressRecord:
        emulator = self.offline.emulator
        event = emulator.sync_now_event(emulator.create_sync_process())
        press = PressRecord(str(event["entityId"]), event, handed=self._deliver(event))
        self.presses.append(press)
        return press

    def _deliver(self, event: dict[str, Any]) -> bool:
        """ChartHop delivers a webhook until it gets a 2xx (three tries here)."""
        for _ in range(3):
            try:
                answer = requests.post(self.offline.authorised_webhook_url, json=event, timeout=30)
            except requests.RequestException:
                continue
            if answer.ok:
                return True
        return False

    def _invoke_async(self, logical_id: str, event: dict[str, Any]) -> None:
        self._lambda.invoke(
            FunctionName=self.offline.stack.function(logical_id).name,
            InvocationType="Event",
            Payload=json.dumps(event).encode(),
        )

    def act(self, action: Action) -> None:
        runtime = self.offline.runtime
        if action.kind == "upload":
            self.upload(action.target, bad=action.bad)
        elif action.kind == "sync_now":
            self.press_sync_now()
        elif action.kind == "replay_s3":  # a duplicate, late or reordered S3 event
            events = [inv.event for inv in runtime.invocations_of("ImportStarterFunction") if "Records" in inv.event]
            if events:
                self._invoke_async("ImportStarterFunction", events[action.ref % len(events)])
        elif action.kind == "replay_webhook" and self.presses:
            press = self.presses[action.ref % len(self.presses)]
            if self._deliver(press.event):
                press.handed = True
        elif action.kind == "overlap_check":  # the status checker again with a task event it already had
            checks = [inv.event for inv in runtime.invocations_of("StatusCheckerFunction")]
            if checks:
                self._invoke_async("StatusCheckerFunction", checks[-1 - action.ref % min(3, len(checks))])
        elif action.kind == "replay_callback" and self.offline.orgvue is not None:
            urls = [callback.url for callback in self.offline.orgvue.callbacks]
            if urls:
                with suppress(requests.RequestException):
                    requests.get(urls[action.ref % len(urls)], timeout=10)


def _busy(offline: Offline) -> bool:
    with offline.runtime._lock:
        return any(not future.done() for future in offline.runtime._pending)


def settle(offline: Offline, deadline: float) -> bool:
    """Waits until nothing runs any more (True), or the deadline (False); meanwhile plays the watchdog."""
    sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
    delivered: set[str] = set()
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        executions = sfn.list_executions(stateMachineArn=offline.stack.state_machine_arn())["executions"]
        for execution in executions:
            arn = execution["executionArn"]
            if execution["status"] in ("FAILED", "TIMED_OUT", "ABORTED") and arn not in delivered:
                delivered.add(arn)
                offline.deliver_execution_end(arn)
        running = any(execution["status"] == "RUNNING" for execution in executions)
        if running or _busy(offline):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 1.0:
            return True
        time.sleep(0.2)
    return False


def _servers(offline: Offline) -> dict[Target, FaultInjectingServer]:
    servers: dict[Target, FaultInjectingServer] = {"charthop": offline.emulator}
    if offline.orgvue is not None:
        servers["orgvue"] = offline.orgvue
    if offline.elma365 is not None:
        servers["elma365"] = offline.elma365
    return servers


def observe(offline: Offline, runner: Runner, lines: _ProgressLines, settled: bool) -> Observed:
    """A snapshot of everything the checkers read: emulators' records, the bucket, the sync table."""
    emulator = offline.emulator
    with emulator._lock:
        processes = {pid: dict(process) for pid, process in emulator.processes.items()}
        updates = [(update.process_id, dict(update.body)) for update in emulator.updates]
        uploads = [(upload.import_process_id, upload.rows) for upload in emulator.uploads]
    charthop_imports = [(rows, processes.get(import_id, {}).get("parentProcessId")) for import_id, rows in uploads]
    orgvue_imports: list[str] = []
    if offline.orgvue is not None:
        for record in list(offline.orgvue.imports):
            content = offline.orgvue.file_content(record.body["importLocation"]["url"]) or b""
            orgvue_imports.append(content.decode(errors="replace"))
    elma_imports: list[int | None] = []
    if offline.elma365 is not None:
        rows_of = {upload.hash: upload.rows for upload in offline.elma365.uploads}
        elma_imports = [rows_of.get(run.hash) for run in offline.elma365.own_imports()]
    s3 = boto3.client("s3", region_name=offline.stack.region)
    failed: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=offline.bucket, Prefix="failed/"):
        for item in page.get("Contents", []):
            failed[item["Key"]] = s3.get_object(Bucket=offline.bucket, Key=item["Key"])["Body"].read()
    staged: dict[str, str] = {}
    for version in runner.versions:
        try:
            head = s3.head_object(Bucket=offline.bucket, Key=version.key)
            staged[version.key] = str(head.get("VersionId"))
        except ClientError:
            pass
    now = time.time()
    locks = [
        {key: next(iter(value.values())) for key, value in item.items()}
        for item in offline.sync_table_items()
        if item.get("id", {}).get("S", "").startswith(("slot#", "sync-now#"))
        and "owner" in item
        and float(item.get("expiration", {}).get("N", "0")) > now
    ]
    with lines._guard:
        log_events = list(lines.events)
    return Observed(
        versions=list(runner.versions),
        presses=list(runner.presses),
        processes=processes,
        updates=updates,
        charthop_imports=charthop_imports,
        orgvue_imports=orgvue_imports,
        elma_imports=elma_imports,
        log_events=log_events,
        failed_objects=failed,
        staged_current=staged,
        locks=locks,
        app_user_id=emulator.config.app_user_id,
        settled=settled,
        faulty=runner.schedule.faulty,
    )


def probe(offline: Offline, runner: Runner, targets: set[Target], lines: _ProgressLines) -> list[Violation]:
    """With the faults off: a fresh upload per target used must import, then a "Sync Now" must be DONE. A
    refusal here is an earlier failure still holding something (I5)."""
    found: list[Violation] = []
    probed: list[Target] = sorted(targets | {"charthop"})
    versions = [runner.upload(target, tag="p") for target in probed]
    deadline = time.monotonic() + 45
    settled = settle(offline, deadline)
    for version in versions:
        outcome = _outcome(offline, version, lines)
        if outcome != "DONE":
            found.append(Violation("I5", f"probe upload {version.key} after the faults stopped ended {outcome}"))
    if not settled:
        return found
    press = runner.press_sync_now()
    settle(offline, time.monotonic() + 45)
    status = offline.emulator.process(press.process_id)
    if status["status"] != "DONE":
        found.append(Violation("I5", f"probe Sync Now ended {status['status']}: {status.get('message')}"))
    return found


def _outcome(offline: Offline, version: StagedVersion, lines: _ProgressLines) -> str:
    if version.target == "charthop":
        processes = list(offline.emulator.processes.values())
        syncs = [p for p in processes if (p.get("options") or {}).get("versionId") == version.version_id]
        if not syncs:
            return "no sync"
        return " ".join(f"{p['status']} ({p.get('message')})" if p["status"] != "DONE" else "DONE" for p in syncs)
    with lines._guard:
        finals = [e for e in lines.events if e["sync_id"] == version.sync_id and e["message"] == "sync finished"]
    if not finals:
        return "no final status"
    return str(finals[-1]["status"]) if finals[-1]["status"] == "DONE" else f"ERROR ({finals[-1]['text']})"


def run_schedule(schedule: Schedule, *, probe_after: bool = True) -> Result:
    """Plays a schedule and checks I1-I5 on what it left behind."""
    began = time.monotonic()
    result = Result(schedule.seed)
    plan = FaultPlan(schedule)
    with (
        _progress_lines() as lines,
        offline_environment(
            import_behaviour=ImportBehaviour(duration_s=1.0),
            import_timeout_seconds=IMPORT_TIMEOUT_SECONDS,
            further_targets=True,
            extra_env={"MAX_UNAVAILABLE_CHECKS": "2", "CHARTHOP_READ_TIMEOUT_SECONDS": "1"},
        ) as offline,
    ):
        assert offline.orgvue is not None
        assert offline.elma365 is not None
        offline.orgvue.import_behaviour = OrgvueBehaviour(duration_s=1.0)
        offline.elma365.import_behaviour = Elma365Behaviour(duration_s=1.0)
        servers = _servers(offline)
        for spec in schedule.http_faults:
            for step in range(spec.burst):
                servers[spec.target].inject_at(spec.operation, spec.index + step, _fault(spec))
        offline.runtime.external_call_hook = plan
        runner = Runner(offline, schedule)
        start = time.monotonic()
        for action in schedule.actions:
            time.sleep(max(0.0, start + action.at - time.monotonic()))
            runner.act(action)
        settled = settle(offline, time.monotonic() + IMPORT_TIMEOUT_SECONDS + GRACE_SECONDS)
        plan.active = False
        for server in servers.values():
            server.clear_faults()
            for _operation, _index, fault in server.applied_faults:
                result.faults[f"http {_describe(fault)}"] += 1
        result.faults.update(plan.injected)
        result.crashes.update(plan.crashed)
        if settled and offline.failed_events():
            # The faults stopped: the scheduled redriver sends what failed meanwhile to its function again.
            offline.redrive_failed_events()
            settled = settle(offline, time.monotonic() + IMPORT_TIMEOUT_SECONDS + GRACE_SECONDS)
        result.violations = check_all(observe(offline, runner, lines, settled))
        if probe_after and settled:
            result.violations += probe(offline, runner, schedule.targets(), lines)
        offline.runtime.external_call_hook = None
    result.seconds = time.monotonic() - began
    return result


def _describe(fault: Fault) -> str:
    kind = "reset" if fault.reset else f"{fault.status}" if fault.status else "slow answer"
    return f"{kind} after effect" if fault.after_effect else kind
