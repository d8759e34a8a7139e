"""A fault schedule, generated up front from one seed: what happens (uploads, Sync Now presses, replays) and
which calls fail or crash.

Faults are pinned to call numbers, never to wall-clock times: an HTTP fault to the Nth request an emulator
receives for an operation, an AWS fault to the Nth call of an API made inside the functions, a crash to the
Nth external call of the Nth invocation of a function. The offline stack's threads do not interleave the
same way twice, but a replay of a seed injects the same faults at the same call numbers.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Literal

Target = Literal["charthop", "orgvue", "elma365"]
ActionKind = Literal["upload", "sync_now", "replay_s3", "replay_webhook", "overlap_check", "replay_callback"]
HttpFaultKind = Literal["429", "500", "502", "503", "504", "reset", "slow"]

#: Every endpoint the app calls, per emulator (the emulators' own operation names).
ENDPOINTS: dict[Target, tuple[str, ...]] = {
    "charthop": (
        "createProcess",
        "importDataCsv",
        "getProcess",
        "updateProcess",
        "findProcesses",
        "getProcessEvents",
        "appendToProcessLogFile",
    ),
    "orgvue": ("generate", "tempPut", "import", "tempGet", "ticket"),
    "elma365": ("upload", "startImport", "importStatus"),
}
#: The AWS calls the functions make whose failure the campaign injects.
AWS_OPERATIONS = (
    "s3.GetObject",
    "s3.CopyObject",
    "s3.DeleteObject",
    "s3.PutObject",
    "s3.ListObjectsV2",
    "stepfunctions.StartExecution",
    "stepfunctions.SendTaskSuccess",
    "dynamodb.PutItem",
    "dynamodb.UpdateItem",
    "dynamodb.GetItem",
    "dynamodb.DeleteItem",
    "lambda.Invoke",
)
AWS_ERROR_CODES = ("ThrottlingException", "InternalError", "ServiceUnavailable")
FUNCTIONS = (
    "ImportStarterFunction",
    "StatusCheckerFunction",
    "SyncFinalizerFunction",
    "WebhookFunction",
    "TargetCallbackFunction",
)


@dataclass(frozen=True)
class Action:
    """One thing the outside world does, `at` seconds after the schedule starts."""

    at: float
    kind: ActionKind
    target: Target = "charthop"
    #: Which earlier upload / press / check / callback a replay repeats (taken modulo how many there are).
    ref: int = 0
    #: Uploads only: a file the pre-flight checks refuse (header only), to exercise failed/.
    bad: bool = False


@dataclass(frozen=True)
class HttpFault:
    """Requests `index` .. `index + burst - 1` an emulator receives for `operation` fail this way."""

    target: Target
    operation: str
    index: int
    kind: HttpFaultKind
    burst: int = 1
    #: The emulator does the work before it fails the answer (the request took effect).
    after_effect: bool = False


@dataclass(frozen=True)
class AwsFault:
    """The `index`th call of `operation` made inside the functions raises a ClientError `code`."""

    operation: str
    index: int
    code: str
    #: The call is made (and takes effect) before the error is raised: the answer was lost.
    after_effect: bool = False


@dataclass(frozen=True)
class Crash:
    """The `attempt`th invocation of `function` is killed (no error handling runs) at its `call`th
    external call, before the call is made."""

    function: str
    attempt: int
    call: int


@dataclass
class Schedule:
    seed: int
    actions: list[Action] = field(default_factory=list)
    http_faults: list[HttpFault] = field(default_factory=list)
    aws_faults: list[AwsFault] = field(default_factory=list)
    crashes: list[Crash] = field(default_factory=list)

    @property
    def faulty(self) -> bool:
        return bool(self.http_faults or self.aws_faults or self.crashes)

    def targets(self) -> set[Target]:
        return {action.target for action in self.actions if action.kind == "upload"}

    def describe(self) -> str:
        return json.dumps(asdict(self), indent=1)


def generate(seed: int) -> Schedule:
    """The schedule of a seed: everything random comes from `random.Random(seed)`."""
    rng = random.Random(seed)
    schedule = Schedule(seed)
    at = 0.0
    uploads = rng.randint(1, 3)
    presses = rng.choice((0, 0, 1, 1, 2))
    upload: ActionKind = "upload"
    press: ActionKind = "sync_now"
    kinds: list[ActionKind] = [upload] * uploads + [press] * presses
    replays: list[ActionKind] = ["replay_s3", "replay_webhook", "overlap_check", "replay_callback"]
    kinds += rng.choices(replays, k=rng.choice((0, 1, 1, 2, 3)))
    rng.shuffle(kinds)
    if "upload" in kinds:  # the first thing is an upload, so later presses and replays have something
        kinds.remove("upload")
        kinds.insert(0, "upload")
    for kind in kinds:
        at += round(rng.choice((0.0, 0.1, 0.3, 0.6, 1.0, 1.5)), 2)
        target: Target = "charthop"
        bad = False
        if kind == "upload":
            everywhere: list[Target] = ["charthop", "orgvue", "elma365"]
            target = rng.choices(everywhere, weights=[3, 1, 1])[0]
            bad = target == "charthop" and rng.random() < 0.15
        schedule.actions.append(Action(at, kind, target, rng.randint(0, 5), bad))
    if rng.random() < 0.12:
        return schedule  # a fault-free schedule: every invariant must hold exactly
    targets: list[Target] = sorted(schedule.targets() | {"charthop"})
    kinds_of_fault: tuple[HttpFaultKind, ...] = ("429", "500", "502", "503", "504", "reset", "slow")
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4))):
        target = rng.choice(targets)
        operation = rng.choice(ENDPOINTS[target])
        fault_kind = rng.choice(kinds_of_fault)
        # bursts long enough to outlast the clients' retries (6 tries) now and then
        burst = rng.choice((1, 1, 1, 2, 3, 6, 7))
        after = fault_kind not in ("429", "slow") and rng.random() < 0.4
        schedule.http_faults.append(HttpFault(target, operation, rng.randint(0, 6), fault_kind, burst, after))
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        schedule.aws_faults.append(
            AwsFault(rng.choice(AWS_OPERATIONS), rng.randint(0, 4), rng.choice(AWS_ERROR_CODES), rng.random() < 0.3)
        )
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        schedule.crashes.append(Crash(rng.choice(FUNCTIONS), rng.randint(0, 4), rng.randint(0, 8)))
    return schedule
