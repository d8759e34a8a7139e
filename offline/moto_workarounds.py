"""Work-arounds for moto bugs and gaps that stand between us and running the real stack offline."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from moto.s3 import notifications
from moto.stepfunctions.parser.asl.component.common.catch.catcher_decl import CatcherDecl
from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.backend.execution import Execution

_original_catch_body = CatcherDecl._eval_body
_original_set_next = CommonStateField._set_next


def _catch_body(self: CatcherDecl, env: Any) -> None:
    """Marks that a catcher chose the next state (moto cannot tell when it names the state itself)."""
    _original_catch_body(self, env)
    env.catcher_chose_next = env.next_state_name == self.next_decl.name and bool(env.stack) and _caught(env.stack[-1])


def _caught(outcome: Any) -> bool:
    return type(outcome).__name__ == "CatcherOutcomeCaught"


def _set_next(self: CommonStateField, env: Any) -> None:
    """moto (5.2.1, still in 5.2.5) takes "the next state is still this state" to mean "no catcher chose
    one", so a catcher whose Next is its own state (the status loop's wait-ran-out catcher; valid ASL) falls
    through to the state's own Next instead. Honour the catcher's choice."""
    if getattr(env, "catcher_chose_next", False):
        env.catcher_chose_next = False
        return
    _original_set_next(self, env)


_original_s3_event = notifications._get_s3_event
#: One counter for every key: S3 only promises that a key's later event has the greater sequencer.
_sequencer = itertools.count(1)


def _s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, list[dict[str, Any]]]:
    """moto (5.2.1 and 5.2.5) leaves `versionId` and `sequencer` out of S3 event records. The import starter
    keys its idempotency on the object version, so without it two uploads of the same bytes to the same key
    would be one import offline and two in AWS. Adds them as S3 does: an ObjectCreated record names the new
    version (in a versioned bucket) and carries a hexadecimal sequencer that grows with each event."""
    event = _original_s3_event(event_name, bucket, key, notification_id)
    if event_name.startswith("s3:ObjectCreated:"):
        for record in event["Records"]:
            s3_object = record["s3"]["object"]
            if key.version_id != "null":  # moto's version of an object in an unversioned bucket
                s3_object["versionId"] = key.version_id
            s3_object["sequencer"] = f"{next(_sequencer):018X}"
    return event


def _execution_status(self: Execution) -> str:
    """moto (5.2.5) lists an execution before it starts it, and its status is None until then, so a
    ListExecutions on another thread in that window fails with `AttributeError: 'NoneType' object has no
    attribute 'value'` (the fault campaign's seed 770). StartExecution answers only once the execution
    runs, so what AWS would list there is a RUNNING execution."""
    return "RUNNING" if self.exec_status is None else str(self.exec_status.value)


_original_preprocessor_init = Preprocessor.__init__


def _preprocessor_init(self: Preprocessor, *args: Any, **kwargs: Any) -> None:
    """moto (5.2.5) keeps the ASL preprocessor's stack of QueryLanguage scopes in a list on the class, so every
    parse in the process shares it. Each execution parses the definition on a thread of its own: two executions
    that start together push and pop each other's scopes, and one dies with `IndexError: list index out of range`
    in `_get_current_query_language` before it enters a state (it stays listed RUNNING, its sync never starts;
    five files staged at once did it once in the suite). Step Functions has no such thing: each parse gets a stack
    of its own."""
    _original_preprocessor_init(self, *args, **kwargs)
    self._query_language_per_scope = []


@contextmanager
def moto_workarounds() -> Iterator[None]:
    with (
        mock.patch.object(notifications, "_get_s3_event", _s3_event),
        mock.patch.object(CatcherDecl, "_eval_body", _catch_body),
        mock.patch.object(CommonStateField, "_set_next", _set_next),
        mock.patch.object(Execution, "status", property(_execution_status)),
        mock.patch.object(Preprocessor, "__init__", _preprocessor_init),
    ):
        yield
