"""Many files for one target on a simulated clock: the status loop's start, turn and follow-up as the state
machine runs them, driven through the real domain code (sync_start, sync_service, the target queue) without
sleeping.

The offline stack runs everything for real but at wall-clock speed, so a flood of hundreds of files staged in one
minute, each waiting hours for its turn, is out of its reach. Here the state machine is interpreted from
statemachine/sync_status.asl.json (its overall `TimeoutSeconds`, and whether `WaitForTurn` is a plain wait or a
task that parks the start until it is woken), the AWS side is a few fakes (S3 objects in a dict, Step Functions
that schedules executions and task tokens on the simulated clock, the EventBridge watchdog), and the target is an
import that takes a set time per file. What happens is recorded: when each import started and ended at the target,
every invocation of the import starter, each sync's final status and message, executions that reached the state
machine's time limit, and imports of one target that ran at the same time.

With `concurrency` set, the import starter has that many execution environments (its reserved concurrency): each
invocation (an upload's trigger, a loop's StartImport, a parked start's WaitForTurn) holds one for its duration,
and one that finds none free is throttled. A throttled trigger is retried by Lambda a second later; a throttled
task is retried as the state machine's retrier for `Lambda.TooManyRequestsException` says (its full jitter from a
seeded generator), then caught: a StartImport by ReportWorkflowFailure (the sync is closed ERROR), a WaitForTurn
by its catcher (the start asks again after its wait).
"""

from __future__ import annotations

import heapq
import io
import itertools
import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from people_sync import sync_service, sync_start
from people_sync.config import AppSettings
from people_sync.loop_memory import InMemoryLoopMemory
from people_sync.models import ImportJob, ImportStatus, StagedFile, StartRequest, SyncState
from people_sync.slots import InMemorySlots
from people_sync.start_journal import InMemoryStartJournal
from people_sync.sync_service import SyncContext
from people_sync.target_queue import InMemoryTargetQueue, TargetQueue

ASL = Path(__file__).resolve().parent.parent / "statemachine" / "sync_status.asl.json"
BUCKET = "sim-staging"
#: Seconds Step Functions takes to move from one state to the next (a task's start, a woken task's end).
TRANSITION_SECONDS = 0.05


@dataclass
class SimImport:
    org: str
    sync_id: str
    name: str
    started_at: float
    ends_at: float


@dataclass
class SimSync:
    org: str
    name: str
    staged_at: float
    sync_id: str = ""
    #: The import starter's invocations for this sync (the loop's first task, and parking, if any): times.
    asks: list[float] = field(default_factory=list)
    import_started_at: float | None = None
    closed_at: float | None = None
    status: str | None = None
    message: str = ""
    #: The execution reached the state machine's TimeoutSeconds (the watchdog closed what was left).
    timed_out: bool = False
    #: The execution ended without closing the sync (a task raised past its retries): the finalizer's catch.
    failed: str | None = None


class StepFunctionsExceptions:
    """The boto3 Step Functions client's exceptions the sync code catches (a fake client's `exceptions`)."""

    class ExecutionAlreadyExists(Exception):
        pass

    class TaskTimedOut(Exception):
        pass

    class TaskDoesNotExist(Exception):
        pass

    class InvalidToken(Exception):
        pass


class SimStepFunctions:
    """start_execution and send_task_success, scheduled on the simulation's clock."""

    exceptions = StepFunctionsExceptions

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim

    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:  # noqa: N803
        self._sim.start_execution(name, json.loads(input))
        return {"executionArn": f"{stateMachineArn}:{name}"}

    def send_task_success(self, *, taskToken: str, output: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self._sim.task_success(taskToken)
        return {}


class SimS3:
    """The staged objects; an object stays until something deletes it."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.deleted: list[str] = []

    def get_object(self, *, Bucket: str, Key: str, VersionId: str | None = None) -> dict[str, Any]:  # noqa: N803
        body = self.objects[(Key, VersionId or "")]
        return {"Body": io.BytesIO(body), "ContentLength": len(body)}

    def delete_object(self, *, Bucket: str, Key: str, VersionId: str | None = None) -> dict[str, Any]:  # noqa: N803
        self.deleted.append(Key)
        self.objects = {found: body for found, body in self.objects.items() if found[0] != Key}
        return {}


class SimReporter:
    """Where syncs are shown (ChartHop's sync processes): ids handed out in order, every update recorded."""

    def __init__(self, sim: Simulation, org: str) -> None:
        self._sim, self._org = sim, org

    def start_sync(self, name: str, source: str, version_id: str | None) -> str:
        sync_id = f"{self._org}-sync-{next(self._sim.ids)}"
        self._sim.process_files[sync_id] = (self._org, name)
        return sync_id

    def is_closed(self, sync_id: str) -> bool:
        return sync_id in self._sim.finals

    def report_progress(self, sync_id: str, progress: float, message: str) -> None:
        self._sim.progress.append((self._sim.clock(), sync_id, progress, message))

    def finish(self, sync_id: str, *, succeeded: bool, message: str, results: dict[str, Any], summary: str) -> None:
        self._sim.finals.setdefault(sync_id, (self._sim.clock(), "DONE" if succeeded else "ERROR", message))


class SimTarget:
    """A target whose imports each take `import_seconds`; it keeps importing whatever the app gives up on."""

    name = "charthop"
    display_name = "ChartHop"
    calls_back = False
    min_check_interval_seconds = 1

    def __init__(self, sim: Simulation, org: str) -> None:
        self._sim, self._org = sim, org

    def start_import(
        self, staged: StagedFile, open_body: Any, *, sync_id: str, callback_url: str | None = None
    ) -> ImportJob:
        body, _size = open_body()
        body.read()  # the pre-flight checks read the whole file
        now = self._sim.clock()
        running = [i for i in self._sim.imports if i.org == self._org and i.started_at <= now < i.ends_at]
        started = SimImport(self._org, sync_id, staged.name, now, now + self._sim.import_seconds(staged.name))
        self._sim.overlaps.extend((earlier, started) for earlier in running)
        self._sim.imports.append(started)
        return ImportJob(import_id=f"import-{len(self._sim.imports)}", detail={"sync": sync_id})

    def import_status(self, job: ImportJob, open_body: Any) -> tuple[ImportStatus, ImportJob]:
        started = next(i for i in self._sim.imports if i.sync_id == job.detail["sync"])
        now = self._sim.clock()
        if now >= started.ends_at:
            return ImportStatus(state="done", progress=1.0, results={"rows": 1}), job
        share = (now - started.started_at) / max(started.ends_at - started.started_at, 1e-9)
        return ImportStatus(state="running", progress=share), job

    def abandon(self, job: ImportJob) -> None:
        return None  # a ChartHop import cannot be stopped


class SimClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Execution:
    sync_id: str
    org: str
    started_at: float
    data: dict[str, Any]
    state: SyncState | None = None
    token: str | None = None
    done: bool = False
    #: The last task's throttle retries were spent (its catcher takes over).
    spent: bool = False


class Simulation:
    """Stage files with `stage`, then `run` until everything is closed (or a time limit)."""

    def __init__(
        self,
        *,
        import_seconds: float | Callable[[str], float] = 20.0,
        trigger_seconds: float = 0.5,
        settings: dict[str, Any] | None = None,
        start: float = 1_700_000_000.0,
        queue: TargetQueue | None = None,
        asl: Path = ASL,
        concurrency: int | None = None,
        invoke_seconds: float = 0.1,
        seed: int = 13,
    ) -> None:
        definition = json.loads(asl.read_text())
        self.time_limit = float(definition["TimeoutSeconds"])
        self.parks = definition["States"]["WaitForTurn"]["Type"] == "Task"
        self._retriers = {name: _throttle_retrier(state) for name, state in definition["States"].items()}
        self.concurrency = concurrency
        self.invoke_seconds = invoke_seconds
        self._busy: list[float] = []
        self._random = random.Random(seed)
        #: Throttled import-starter invocations: (time, org, "trigger" | "start" | "park").
        self.throttled: list[tuple[float, str, str]] = []
        self._duration = import_seconds
        self.trigger_seconds = trigger_seconds
        self.clock = SimClock(start)
        self.ids = itertools.count(1)
        self.queue = queue or InMemoryTargetQueue()
        self._memory, self._journal, self._slots = InMemoryLoopMemory(), InMemoryStartJournal(), InMemorySlots()
        self._settings = settings or {}
        self._s3 = SimS3()
        self._sfn = SimStepFunctions(self)
        self._contexts: dict[str, SyncContext] = {}
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._executions: dict[str, _Execution] = {}
        self._tokens = itertools.count(1)
        self.syncs: list[SimSync] = []
        self._by_id: dict[str, SimSync] = {}
        self.imports: list[SimImport] = []
        self.overlaps: list[tuple[SimImport, SimImport]] = []
        self.progress: list[tuple[float, str, float, str]] = []
        self.finals: dict[str, tuple[float, str, str]] = {}
        self.process_files: dict[str, tuple[str, str]] = {}
        #: Every invocation of the import starter by a status loop: (time, org, sync id, "start" | "park").
        self.invocations: list[tuple[float, str, str, str]] = []

    # --- set-up ----------------------------------------------------------------------------------

    @property
    def deleted_objects(self) -> list[str]:
        """Staged keys something deleted (a file moved to failed/ is deleted from staging)."""
        return list(self._s3.deleted)

    def import_seconds(self, name: str) -> float:
        return self._duration(name) if callable(self._duration) else self._duration

    def context(self, org: str) -> SyncContext:
        if org not in self._contexts:
            values: dict[str, Any] = {
                "org_id": org,
                "app_name": "people-sync",
                "app_user_id": "app-user",
                "charthop_base_url": "http://unused",
                "token_secret_name": "unused",
                "settings_parameter_name": "unused",
                "staging_bucket": BUCKET,
                "staging_prefix": "staging/",
                "state_machine_arn": "arn:aws:states:sim:0:stateMachine:sync-status",
                "import_starter_function": "unused",
                "poll_initial_seconds": 5,
                "poll_max_seconds": 60,
                "import_timeout_seconds": 3900,
                # A start that sleeps out its settle time moves the one simulated clock for every sync (one
                # invocation runs at a time here), so the settle is test-sized: 1 s (QueueSettleSeconds, 2 s
                # deployed), as offline.
                "queue_settle_seconds": 1.0,
            }
            self._contexts[org] = SyncContext(
                settings=AppSettings(**{**values, **self._settings}),
                charthop=cast("Any", None),
                target=SimTarget(self, org),
                reporter=SimReporter(self, org),
                s3=cast("Any", self._s3),
                stepfunctions=cast("Any", self._sfn),
                loop_memory=self._memory,
                journal=self._journal,
                queue=self.queue,
                slots=self._slots,
                org_id=org,
                folder=org,
                clock=self.clock,
                sleep=self.clock.sleep,
                history=None,
            )
        return self._contexts[org]

    def stage(self, org: str, name: str, at: float) -> SimSync:
        """`name` lands in staging/<org>/ at `at` (epoch seconds); its trigger runs `trigger_seconds` later."""
        sync = SimSync(org=org, name=name, staged_at=at)
        self.syncs.append(sync)
        key = f"staging/{org}/{name}"
        version = f"v{len(self.syncs)}"
        self._s3.objects[(key, version)] = f"Employee ID,Name\nE{len(self.syncs)},{name}\n".encode()
        staged = StagedFile(bucket=BUCKET, key=key, version_id=version, org_id=org, size=None)

        def trigger() -> None:
            if not self._slot(self.trigger_seconds):  # Lambda retries a throttled asynchronous event
                self.throttled.append((self.clock(), org, "trigger"))
                self._at(self.clock() + 1, trigger)
                return
            self._at(self.clock() + self.trigger_seconds, opened)

        def opened() -> None:
            sync.sync_id = sync_start.file_dropped(self.context(org), staged, staged_at=at)

        self._at(at, trigger)
        return sync

    def _slot(self, seconds: float) -> bool:
        """An execution environment of the import starter for `seconds`, if one is free."""
        if self.concurrency is None:
            return True
        while self._busy and self._busy[0] <= self.clock():
            heapq.heappop(self._busy)
        if len(self._busy) >= self.concurrency:
            return False
        heapq.heappush(self._busy, self.clock() + seconds)
        return True

    def _throttled(self, execution: _Execution, state: str, attempt: int, retry: Callable[[int], None]) -> bool:
        """Whether the task's invocation was throttled. If so, its retry is scheduled, or, once the retrier's
        attempts are spent, `execution.spent` is set for the caller's catcher."""
        if self._slot(self.invoke_seconds):
            return False
        self.throttled.append((self.clock(), execution.org, "start" if state == "StartImport" else "park"))
        retrier = self._retriers.get(state)
        if retrier is None or attempt >= retrier["MaxAttempts"]:
            execution.spent = True
            return True
        ceiling = min(
            retrier["IntervalSeconds"] * retrier.get("BackoffRate", 2.0) ** attempt,
            retrier.get("MaxDelaySeconds", float("inf")),
        )
        delay = self._random.uniform(0, ceiling) if retrier.get("JitterStrategy") == "FULL" else ceiling
        self._at(self.clock() + delay, lambda: retry(attempt + 1))
        return True

    # --- running ---------------------------------------------------------------------------------

    def run(self, *, until: float | None = None) -> None:
        """Runs every scheduled event (up to `until`, epoch seconds)."""
        quiet = logging.getLogger("people_sync")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)  # hundreds of "queued" lines say nothing new (restored after the run)
        metrics = os.environ.get("POWERTOOLS_METRICS_DISABLED")
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # nor do hundreds of EMF lines on stdout
        try:
            self._run(until)
        finally:
            quiet.setLevel(level)
            if metrics is None:
                os.environ.pop("POWERTOOLS_METRICS_DISABLED")
            else:
                os.environ["POWERTOOLS_METRICS_DISABLED"] = metrics

    def _run(self, until: float | None) -> None:
        while self._events:
            at, _, action = heapq.heappop(self._events)
            if until is not None and at > until:
                heapq.heappush(self._events, (at, next(self._seq), action))
                return
            self.clock.now = max(self.clock.now, at)
            action()
        self._settle()

    def _settle(self) -> None:
        by_id = {sync.sync_id: sync for sync in self.syncs}
        for sync_id, (at, status, message) in self.finals.items():
            if sync_id in by_id:
                by_id[sync_id].closed_at, by_id[sync_id].status, by_id[sync_id].message = at, status, message
        for started in self.imports:
            if started.sync_id in by_id and by_id[started.sync_id].import_started_at is None:
                by_id[started.sync_id].import_started_at = started.started_at

    def _at(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (at, next(self._seq), action))

    # --- the state machine -----------------------------------------------------------------------

    def start_execution(self, name: str, data: dict[str, Any]) -> None:
        sync_id = data["syncProcessId"]
        if sync_id in self._executions:
            raise StepFunctionsExceptions.ExecutionAlreadyExists(name)
        execution = _Execution(sync_id, data["orgId"], self.clock(), data)
        self._executions[sync_id] = execution
        self._at(self.clock() + TRANSITION_SECONDS, lambda: self._start_import(execution))
        self._at(execution.started_at + self.time_limit, lambda: self._time_limit(execution))

    def task_success(self, token: str) -> None:
        woken = next((e for e in self._executions.values() if e.token == token and not e.done), None)
        if woken is None:
            raise StepFunctionsExceptions.TaskTimedOut(token)
        woken.token = None
        self._at(self.clock() + TRANSITION_SECONDS, lambda: self._start_import(woken))

    def _sync(self, execution: _Execution) -> SimSync | None:
        if execution.sync_id not in self._by_id:
            self._by_id = {sync.sync_id: sync for sync in self.syncs if sync.sync_id}
        return self._by_id.get(execution.sync_id)

    def _invoked(self, execution: _Execution, kind: str) -> None:
        self.invocations.append((self.clock(), execution.org, execution.sync_id, kind))
        sync = self._sync(execution)
        if sync is not None:
            sync.asks.append(self.clock())

    def _start_import(self, execution: _Execution, attempt: int = 0) -> None:
        """StartImport, then IsImportStarted."""
        if execution.done:
            return
        request = StartRequest.model_validate(execution.data)
        if self._throttled(execution, "StartImport", attempt, lambda next_try: self._start_import(execution, next_try)):
            if execution.spent:
                throttled = {"Error": "Lambda.TooManyRequestsException", "Cause": "Rate Exceeded."}
                self._failed(execution, request, throttled)
            return
        self._invoked(execution, "start")
        ctx = self.context(execution.org)
        try:
            outcome = sync_start.begin_sync(ctx, request)
        except Exception as error:  # noqa: BLE001 - past the task's retries: ReportWorkflowFailure
            self._failed(execution, request, {"Error": type(error).__name__, "Cause": str(error)})
            return
        if outcome is None:
            execution.done = True
            return
        if isinstance(outcome, SyncState):
            execution.state = outcome
            self._at(self.clock() + outcome.poll.wait_seconds, lambda: self._check(execution))
            return
        execution.data = {**request.to_json_dict(), "queued": True, "queueWaitSeconds": outcome.wait_seconds}
        if not self.parks:  # WaitForTurn is a Wait state
            self._at(self.clock() + outcome.wait_seconds, lambda: self._start_import(execution))
            return
        token = f"token-{next(self._tokens)}"
        execution.token = token
        self._at(self.clock() + outcome.wait_seconds, lambda: self._park_ran_out(execution, token))
        self._at(self.clock() + TRANSITION_SECONDS, lambda: self._park(execution, token))

    def _park(self, execution: _Execution, token: str, attempt: int = 0) -> None:
        if execution.done or execution.token != token:
            return
        if self._throttled(execution, "WaitForTurn", attempt, lambda next_try: self._park(execution, token, next_try)):
            if execution.spent:  # its catcher: WaitAfterFailedPark, then StartImport
                execution.spent = False
            return
        self._invoked(execution, "park")
        await_turn = cast("Any", sync_start).await_turn
        try:
            await_turn(self.context(execution.org), StartRequest.model_validate(execution.data), token)
        except Exception:  # the park's catcher waits and asks again
            logging.getLogger(__name__).exception("parking failed")

    def _park_ran_out(self, execution: _Execution, token: str) -> None:
        if execution.token == token and not execution.done:
            execution.token = None
            self._start_import(execution)

    def _check(self, execution: _Execution) -> None:
        """FollowImport (one check per wait), then FinishSync."""
        if execution.done or execution.state is None:
            return
        ctx = self.context(execution.org)
        state = sync_service.check_import(ctx, execution.state)
        if state.finished:
            execution.done = True
            sync_service.finish_sync(ctx, state)
            return
        execution.state = state
        self._at(self.clock() + state.poll.wait_seconds, lambda: self._check(execution))

    def _failed(self, execution: _Execution, request: StartRequest, error: dict[str, str]) -> None:
        """The start task's catcher: ReportWorkflowFailure closes the sync with the error."""
        execution.done = True
        sync = self._sync(execution)
        if sync is not None:
            sync.failed = f"{error['Error']}: {error['Cause']}"
        sync_service.start_failed(self.context(execution.org), request, error)

    def _time_limit(self, execution: _Execution) -> None:
        """The execution reached TimeoutSeconds; the EventBridge watchdog closes what it left open."""
        if execution.done:
            return
        execution.done, execution.token = True, None
        sync = self._sync(execution)
        if sync is not None:
            sync.timed_out = True
        request = StartRequest.model_validate(execution.data)

        def watchdog() -> None:
            ctx = self.context(execution.org)
            sync_service.execution_ended(ctx, execution.sync_id, "TIMED_OUT", request.file, request)

        self._at(self.clock() + 1, watchdog)


def peak_invocations(times: list[float], window: float) -> int:
    """The most invocations that fall within any `window` seconds (how many run at once, if each takes that
    long)."""
    ordered, peak, first = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - window:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def _throttle_retrier(state: dict[str, Any]) -> dict[str, Any] | None:
    """The state's retrier for a throttled Lambda invocation, if it has one."""
    for retrier in state.get("Retry", []):
        if {"Lambda.TooManyRequestsException", "States.ALL"} & set(retrier["ErrorEquals"]):
            return dict(retrier)
    return None
