"""(f) on a simulated clock: the multi-org run where the offline stack cannot keep up on the wall clock.

`python -m bench.multi_org --clock simulated --orgs 200 --window 60`. The offline stack runs every function,
moto and the ChartHop emulator in one Python process; on this machine it keeps up with about 1.5 syncs a
second, and 200 orgs in a minute is 3.3 (docs/performance.md (f)). The issue allows "the real handlers on a
simulated clock" there, and this is it:

* the same real handlers, in the same in-process Lambda runtime, against the same moto (S3 with its bucket
  notifications, DynamoDB, Secrets Manager, SSM; Step Functions records each StartExecution, SendTaskSuccess
  goes to it) and the same ChartHop emulator over loopback HTTP, every org onboarded by the admin tool;
* what changes is time: one `SimulatedClock` for everything that decides by time. The sync contexts' clock and
  sleep (SyncContext.clock/.sleep), the staging time S3 events carry (eventTime), ChartHop's emulator (its imports
  run on it and it stamps each call with it). A wait (the settle time of a fresh upload, a poll wait, a Wait
  state, a retry interval) takes no wall time; an invocation takes on the clock the wall time it took here, run
  alone (as on a Lambda of its own), plus the sleeps it asked for. The uploads are on schedule by construction;
* and the status loop: moto only records each execution; `AslDriver` steps the state machine's definition as
  deployed in moto (describe_state_machine), state by state, on the clock. It supports what the template's ASL
  uses (Task on a function ARN and on lambda:invoke.waitForTaskToken with TimeoutSecondsPath, Parameters with
  paths and $$.Task.Token, ResultPath, Retry, Catch, Choice with IsPresent/BooleanEquals/And/Or/Not, Wait with
  Seconds/SecondsPath, Succeed, Fail) and refuses any other field, so it cannot quietly run something else. A
  task token handed back after its wait ran out is refused with TaskTimedOut, as Step Functions does. Retry
  intervals are taken without jitter.

Invocations that overlap on the clock run one after the other on the wall clock; orgs share nothing a sync
reads or writes (each its own items, queue and token), so the order cannot change what a sync does. Lambda's
throttling is not modelled: the run reports the most invocations of each function running at once on the
clock next to its reserved concurrency. ChartHop's `process.create` echoes reach the webhook on the emulator's
threads, as on the wall clock (the webhook ignores them; they are counted).
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any
from unittest import mock

import boto3
from moto.core.exceptions import AWSError
from moto.core.utils import utcnow
from moto.s3 import notifications
from moto.stepfunctions.models import Execution, StepFunctionBackend

from bench.multi_org import (
    MultiOrgResult,
    deployed_timing,
    measure,
    onboard,
    org_ids,
    roster,
    statuses_of,
)
from offline.charthop_emulator import ImportBehaviour
from offline.harness import Offline, offline_environment
from offline.lambda_runtime import Invocation
from people_sync import runtime as people_sync_runtime
from people_sync.sync_service import SyncContext

#: The ASL fields the driver implements, per state type; anything else in the definition is refused.
SUPPORTED_FIELDS = {
    "Task": {
        "Type",
        "Comment",
        "Resource",
        "Parameters",
        "ResultPath",
        "TimeoutSeconds",
        "TimeoutSecondsPath",
        "Retry",
        "Catch",
        "Next",
        "End",
    },
    "Choice": {"Type", "Comment", "Choices", "Default"},
    "Wait": {"Type", "Comment", "Seconds", "SecondsPath", "Next"},
    "Succeed": {"Type", "Comment"},
    "Fail": {"Type", "Comment", "Error", "Cause"},
}
SUPPORTED_TOP_LEVEL = {"Comment", "StartAt", "States", "TimeoutSeconds"}
WAIT_FOR_TASK_TOKEN = "arn:aws:states:::lambda:invoke.waitForTaskToken"


class UnsupportedAsl(ValueError):
    """The definition uses ASL the driver does not implement."""


class TaskTimedOut(AWSError):
    TYPE = "TaskTimedOut"
    STATUS = 400


class TaskDoesNotExist(AWSError):
    TYPE = "TaskDoesNotExist"
    STATUS = 400


# --- the clock ---------------------------------------------------------------------------------------


@dataclass
class _Running:
    """The invocation the clock is timing: where on the clock it began, when on the wall clock, its sleeps."""

    start: float
    wall_start: float
    thread: int
    slept: float = 0.0


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    action: Callable[[], None] = field(compare=False)


class SimulatedClock:
    """A discrete-event clock: actions run in the order of their time; `now` is the current action's time, or
    inside an invocation being timed, its start plus the wall time it has taken and the sleeps it asked for."""

    def __init__(self, start: float) -> None:
        self.start = start
        self._now = start
        self._events: list[_Event] = []
        self._sequence = itertools.count()
        self._running: _Running | None = None
        self._lock = threading.Lock()  # an action may be scheduled from the emulator's echo threads too

    def now(self) -> float:
        running = self._running
        if running is None:
            return self._now
        return running.start + (time.perf_counter() - running.wall_start) + running.slept

    def sleep(self, seconds: float) -> None:
        """Inside the invocation being timed, the clock moves on by `seconds` at once. Another thread (an echo
        the emulator delivers on its own) sleeps on the wall clock."""
        running = self._running
        if running is not None and running.thread == threading.get_ident():
            running.slept += max(0.0, seconds)
        else:
            time.sleep(seconds)

    def at(self, when: float, action: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._events, _Event(when, next(self._sequence), action))

    def timed[T](self, action: Callable[[], T]) -> tuple[T, float, float]:
        """Runs `action` as an invocation starting now; its result, and its start and end on the clock."""
        if self._running is not None:
            raise RuntimeError("the clock is already timing an invocation")
        start = self._now
        self._running = _Running(start, time.perf_counter(), threading.get_ident())
        try:
            result = action()
            end = self.now()
        finally:
            self._running = None
        return result, start, end

    def run(self) -> None:
        """Runs every action, and those they schedule, in the order of their time."""
        while True:
            with self._lock:
                if not self._events:
                    return
                event = heapq.heappop(self._events)
            self._now = max(self._now, event.at)
            event.action()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- paths, parameters, choices ----------------------------------------------------------------------


_MISSING = object()


def lookup(data: Any, path: str) -> Any:
    """A reference path: `$` or `$.a.b` (what the template's ASL uses). _MISSING when a field is absent."""
    if path == "$":
        return data
    if not path.startswith("$.") or any(mark in path for mark in "[]*@?()"):
        raise UnsupportedAsl(f"path {path!r}")
    value = data
    for key in path[2:].split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def resolve_parameters(template: Any, data: Any, context: dict[str, Any]) -> Any:
    """Parameters: a field named `x.$` takes the value its path names (`$$.` the context object)."""
    if isinstance(template, dict):
        resolved: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                found = lookup(context, "$" + value[2:]) if value.startswith("$$.") else lookup(data, value)
                if found is _MISSING:
                    raise AslError("States.Runtime", f"{value} is not in the state's input")
                resolved[key[:-2]] = found
            else:
                resolved[key] = resolve_parameters(value, data, context)
        return resolved
    if isinstance(template, list):
        return [resolve_parameters(item, data, context) for item in template]
    return template


def apply_result_path(data: Any, result: Any, result_path: str | None) -> Any:
    """ResultPath: null keeps the input, `$` replaces it, `$.a.b` sets the field (creating the way there)."""
    if result_path is None:
        return data
    if result_path == "$":
        return result
    if not isinstance(data, dict) or not result_path.startswith("$."):
        raise UnsupportedAsl(f"ResultPath {result_path!r}")
    output = copy.deepcopy(data)
    target = output
    *parents, last = result_path[2:].split(".")
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = result
    return output


def choose(state: dict[str, Any], data: Any) -> str:
    for rule in state["Choices"]:
        if _holds(rule, data):
            return str(rule["Next"])
    if "Default" not in state:
        raise AslError("States.NoChoiceMatched", "no choice rule matched and there is no Default")
    return str(state["Default"])


def _holds(rule: dict[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(_holds(inner, data) for inner in rule["And"])
    if "Or" in rule:
        return any(_holds(inner, data) for inner in rule["Or"])
    if "Not" in rule:
        return not _holds(rule["Not"], data)
    value = lookup(data, rule["Variable"])
    if "IsPresent" in rule:
        return (value is not _MISSING) == bool(rule["IsPresent"])
    if value is _MISSING:
        raise AslError(
            "States.Runtime", f"invalid path {rule['Variable']!r}: the choice state's input has no such field"
        )
    if "BooleanEquals" in rule:
        return isinstance(value, bool) and value == rule["BooleanEquals"]
    raise UnsupportedAsl(f"choice rule {sorted(rule)}")


def error_matches(names: list[str], error: str) -> bool:
    if error in names or "States.ALL" in names:
        return True
    return "States.TaskFailed" in names and error != "States.Timeout"


class AslError(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


def check_definition(definition: dict[str, Any]) -> None:
    """Refuses a definition that uses anything the driver does not implement."""
    extra = set(definition) - SUPPORTED_TOP_LEVEL
    if extra:
        raise UnsupportedAsl(f"top-level fields {sorted(extra)}")
    for name, state in definition["States"].items():
        supported = SUPPORTED_FIELDS.get(state["Type"])
        if supported is None:
            raise UnsupportedAsl(f"state {name}: type {state['Type']}")
        if set(state) - supported:
            raise UnsupportedAsl(f"state {name}: fields {sorted(set(state) - supported)}")
        for entry in [*state.get("Retry", []), *state.get("Catch", [])]:
            known = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds"}
            known |= {"JitterStrategy", "Comment", "ResultPath", "Next"}
            if set(entry) - known:
                raise UnsupportedAsl(f"state {name}: Retry/Catch fields {sorted(set(entry) - known)}")


# --- the driver -------------------------------------------------------------------------------------


@dataclass
class _Execution:
    arn: str
    record: Execution  # moto's record of it
    status: str = "RUNNING"
    states_entered: int = 0
    ended_at: float | None = None


@dataclass
class _Token:
    execution: _Execution
    name: str
    state: dict[str, Any]
    data: Any
    deadline: float
    attempt: int
    done: bool = False


class AslDriver:
    """Steps the status loops (moto records them, does not run them) on the clock, invoking the real functions
    through moto's Lambda (the in-process runtime answers)."""

    def __init__(self, offline: Offline, clock: SimulatedClock, definition: dict[str, Any]) -> None:
        check_definition(definition)
        self.offline, self.clock = offline, clock
        self.states: dict[str, dict[str, Any]] = definition["States"]
        self.start_at: str = definition["StartAt"]
        self.executions: dict[str, _Execution] = {}
        self.tokens: dict[str, _Token] = {}
        #: tokens whose wait ran out: a hand-back is refused with TaskTimedOut, as Step Functions does
        self.timed_out: set[str] = set()
        #: (start, end) on the clock of each invocation the driver ran, per function logical id
        self.intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self._lambda = boto3.client("lambda", region_name=offline.stack.region)
        self._logical = {function.arn: logical for logical, function in offline.stack.functions.items()}
        self._logical.update({function.name: logical for logical, function in offline.stack.functions.items()})

    @property
    def transitions(self) -> int:
        return sum(execution.states_entered for execution in self.executions.values())

    # hooks: moto's StartExecution and SendTaskSuccess/Failure, the runtime's asynchronous invocations

    def started(self, record: Execution) -> None:
        if record.execution_arn in self.executions:
            return  # StartExecution's idempotent repeat
        execution = _Execution(record.execution_arn, record)
        self.executions[execution.arn] = execution
        data = json.loads(record.execution_input or "{}")
        self.clock.at(self.clock.now(), lambda: self._enter(execution, self.start_at, data))

    def dispatch_async(self, function: Any, invocation: Invocation) -> None:
        def run() -> None:
            _, start, end = self.clock.timed(lambda: self.offline.runtime.run_invocation(function, invocation))
            self.intervals[function.logical_id].append((start, end))

        self.clock.at(self.clock.now(), run)

    def task_succeeded(self, task_token: str, output: str) -> None:
        self._handed_back(
            task_token,
            lambda token: self._continue(token.execution, token.state, token.data, json.loads(output or "null")),
        )

    def task_failed(self, task_token: str, error: str | None) -> None:
        self._handed_back(
            task_token,
            lambda token: self._task_error(
                token.execution, token.name, token.state, token.data, error or "", "", token.attempt
            ),
        )

    def _handed_back(self, task_token: str, then: Callable[[_Token], None]) -> None:
        token = self.tokens.get(task_token)
        if task_token in self.timed_out or (token is not None and self.clock.now() > token.deadline):
            raise TaskTimedOut("Task Timed Out")
        if token is None or token.done:
            raise TaskDoesNotExist("Task does not exist anymore")
        token.done = True
        del self.tokens[task_token]
        self.clock.at(self.clock.now(), lambda: then(token))

    # the states

    def _enter(self, execution: _Execution, name: str, data: Any) -> None:
        execution.states_entered += 1
        state = self.states[name]
        try:
            kind = state["Type"]
            if kind == "Task":
                self._task(execution, name, state, data, attempt=0)
            elif kind == "Choice":
                self._go(execution, choose(state, data), data, self.clock.now())
            elif kind == "Wait":
                seconds = state["Seconds"] if "Seconds" in state else lookup(data, state["SecondsPath"])
                self._go(execution, state["Next"], data, self.clock.now() + float(seconds))
            elif kind == "Succeed":
                self._end(execution, "SUCCEEDED", data)
            else:  # Fail
                self._end(execution, "FAILED", {"Error": state.get("Error"), "Cause": state.get("Cause")})
        except AslError as error:
            self._end(execution, "FAILED", {"Error": error.error, "Cause": error.cause})

    def _go(self, execution: _Execution, name: str, data: Any, when: float) -> None:
        self.clock.at(when, lambda: self._enter(execution, name, data))

    def _task(self, execution: _Execution, name: str, state: dict[str, Any], data: Any, *, attempt: int) -> None:
        resource = state["Resource"]
        if resource == WAIT_FOR_TASK_TOKEN:
            self._wait_for_token(execution, name, state, data, attempt)
            return
        if not resource.startswith("arn:aws:lambda:"):
            raise UnsupportedAsl(f"state {name}: resource {resource}")
        payload = resolve_parameters(state["Parameters"], data, {}) if "Parameters" in state else data
        result, error, end = self._invoke(resource, payload)
        if error is not None:
            self.clock.at(end, lambda: self._task_error(execution, name, state, data, *error, attempt))
            return
        self.clock.at(end, lambda: self._continue(execution, state, data, result))

    def _wait_for_token(self, execution: _Execution, name: str, state: dict[str, Any], data: Any, attempt: int) -> None:
        timeout = state.get("TimeoutSeconds")
        if "TimeoutSecondsPath" in state:
            timeout = lookup(data, state["TimeoutSecondsPath"])
        deadline = self.clock.now() + (float(timeout) if timeout is not None else 99999999.0)
        task_token = uuid.uuid4().hex
        token = _Token(execution, name, state, data, deadline, attempt)
        self.tokens[task_token] = token
        parameters = resolve_parameters(state["Parameters"], data, {"Task": {"Token": task_token}})
        _, error, end = self._invoke(parameters["FunctionName"], parameters.get("Payload", data))
        if token.done:
            return  # handed back during the invocation: the hand-back continues the loop
        if error is not None and end <= deadline:
            token.done = True
            del self.tokens[task_token]
            self.clock.at(end, lambda: self._task_error(execution, name, state, data, *error, attempt))
            return
        self.clock.at(deadline, lambda: self._timed_out(task_token))

    def _timed_out(self, task_token: str) -> None:
        token = self.tokens.pop(task_token, None)
        if token is None or token.done:
            return
        token.done = True
        self.timed_out.add(task_token)
        self._task_error(token.execution, token.name, token.state, token.data, "States.Timeout", "", token.attempt)

    def _continue(self, execution: _Execution, state: dict[str, Any], data: Any, result: Any) -> None:
        output = apply_result_path(data, result, state.get("ResultPath", "$"))
        if state.get("End"):
            self._end(execution, "SUCCEEDED", output)
        else:
            self._enter(execution, state["Next"], output)

    def _task_error(
        self, execution: _Execution, name: str, state: dict[str, Any], data: Any, error: str, cause: str, attempt: int
    ) -> None:
        for retrier in state.get("Retry", []):
            if error_matches(retrier["ErrorEquals"], error):
                if attempt < int(retrier.get("MaxAttempts", 3)):
                    interval = (
                        float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** attempt
                    )
                    interval = min(interval, float(retrier.get("MaxDelaySeconds", interval)))
                    self.clock.at(
                        self.clock.now() + interval,
                        lambda: self._task(execution, name, state, data, attempt=attempt + 1),
                    )
                    return
                break
        for catcher in state.get("Catch", []):
            if error_matches(catcher["ErrorEquals"], error):
                output = apply_result_path(data, {"Error": error, "Cause": cause}, catcher.get("ResultPath", "$"))
                self._enter(execution, catcher["Next"], output)
                return
        self._end(execution, "FAILED", {"Error": error, "Cause": cause})

    def _end(self, execution: _Execution, status: str, output: Any) -> None:
        execution.status, execution.ended_at = status, self.clock.now()
        record = execution.record
        record.status = status
        record.stop_date = utcnow()
        record.output = json.dumps(output)

    def _invoke(self, function: str, payload: Any) -> tuple[Any, tuple[str, str] | None, float]:
        """Invokes a function through moto's Lambda (RequestResponse), timed on the clock: its result, or its
        error (the errorType and errorMessage Lambda reports), and when on the clock it ended."""

        def invoke() -> dict[str, Any]:
            answer = self._lambda.invoke(
                FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
            )
            return {"error": answer.get("FunctionError"), "payload": json.loads(answer["Payload"].read() or b"null")}

        answer, start, end = self.clock.timed(invoke)
        self.intervals[self._logical.get(function, function)].append((start, end))
        if answer["error"]:
            body = answer["payload"] if isinstance(answer["payload"], dict) else {}
            return None, (str(body.get("errorType", "Lambda.Unknown")), str(body.get("errorMessage", ""))), end
        return answer["payload"], None, end

    def peak_concurrency(self) -> dict[str, int]:
        peaks: dict[str, int] = {}
        for function, intervals in self.intervals.items():
            edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
            running = peak = 0
            for _, step in edges:
                running += step
                peak = max(peak, running)
            peaks[function] = peak
        return peaks


@contextmanager
def simulated(offline: Offline, clock: SimulatedClock) -> Iterator[AslDriver]:
    """Puts the stack on the clock: the sync contexts' clock and sleep, S3 events' eventTime, moto's status loop
    records and task hand-backs, the runtime's asynchronous invocations (ChartHop's emulator is given the
    clock by offline_environment)."""
    sfn = boto3.client("stepfunctions", region_name=offline.stack.region)
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=offline.stack.state_machine_arn())["definition"])
    driver = AslDriver(offline, clock, definition)
    start_execution = StepFunctionBackend.start_execution
    s3_event = notifications._get_s3_event

    def starting(backend: StepFunctionBackend, state_machine_arn: str, name: str, execution_input: str) -> Execution:
        record = start_execution(backend, state_machine_arn, name, execution_input)
        driver.started(record)
        return record

    def event_on_the_clock(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event: dict[str, Any] = s3_event(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            record["eventTime"] = iso(clock.now())
        return event

    def succeed(backend: StepFunctionBackend, task_token: str, outcome: str) -> None:
        driver.task_succeeded(task_token, outcome)

    def fail(backend: StepFunctionBackend, task_token: str, error: str | None = None) -> None:
        driver.task_failed(task_token, error)

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(StepFunctionBackend, "start_execution", starting))
        patches.enter_context(mock.patch.object(StepFunctionBackend, "send_task_success", succeed))
        patches.enter_context(mock.patch.object(StepFunctionBackend, "send_task_failure", fail))
        patches.enter_context(mock.patch.object(notifications, "_get_s3_event", event_on_the_clock))
        patches.enter_context(
            mock.patch.object(
                people_sync_runtime, "SyncContext", partial(SyncContext, clock=clock.now, sleep=clock.sleep)
            )
        )
        people_sync_runtime.reset()  # no context built before the clock
        offline.runtime.async_dispatch = driver.dispatch_async
        try:
            yield driver
        finally:
            offline.runtime.async_dispatch = None


def run_simulated(orgs: int, *, window: float = 60.0, import_seconds: float = 1.0) -> MultiOrgResult:
    """Onboards `orgs` orgs, stages one file for each within `window` seconds on the simulated clock, and runs
    the clock until every sync has ended."""
    ids = org_ids(orgs)
    clock = SimulatedClock(time.time())
    with offline_environment(
        import_behaviour=ImportBehaviour(duration_s=import_seconds),
        execute_state_machine=False,
        emulator_clock=clock.now,
        **deployed_timing(),
    ) as offline:
        aws_calls = onboard(offline, ids)
        s3 = boto3.client("s3", region_name=offline.stack.region)
        uploaded: dict[str, float] = {}
        with simulated(offline, clock) as driver:
            first = clock.now()

            def upload(index: int, org: str) -> None:
                uploaded[org] = clock.now()
                s3.put_object(
                    Bucket=offline.bucket, Key=offline.staged_key("roster.csv", folder=org), Body=roster(index, org)
                )

            for index, org in enumerate(ids):
                clock.at(first + (window * index / orgs if orgs > 1 else 0.0), partial(upload, index, org))
            clock.run()
            offline.emulator.wait_for_echoes()
            offline.runtime.wait_idle()
        offline.runtime.external_call_hook = None
        running = [execution.arn for execution in driver.executions.values() if execution.status == "RUNNING"]
        if running:
            raise RuntimeError(f"{len(running)} status loops still running when the clock ran out of events")
        ends = [execution.ended_at for execution in driver.executions.values() if execution.ended_at is not None]
        return measure(
            offline,
            uploaded,
            window=window,
            staging_span=max(uploaded.values()) - first,
            elapsed=(max(ends) if ends else clock.now()) - first,
            statuses=statuses_of(offline, ids),
            transitions=driver.transitions,
            aws_calls=aws_calls,
            clock="simulated",
            peak_concurrency=driver.peak_concurrency(),
        )
