"""Work-arounds for moto bugs that stand between us and running the real state machine offline."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from moto.stepfunctions.models import StateMachine
from moto.stepfunctions.parser.asl.component.common.catch.catcher_decl import CatcherDecl
from moto.stepfunctions.parser.asl.component.state.state import CommonStateField


def _state_machine_deepcopy(self: StateMachine, memo: dict[int, Any]) -> StateMachine:
    """moto 5.2.1 deep-copies the state machine, past executions included, at every StartExecution;
    a finished execution holds a lock, so the second execution of any state machine fails with
    "cannot pickle '_thread.RLock'". The copy never needs past executions: leave them out."""
    clone = StateMachine.__new__(type(self))
    memo[id(self)] = clone
    for key, value in self.__dict__.items():
        setattr(clone, key, [] if key == "executions" else copy.deepcopy(value, memo))
    return clone  # type: ignore[return-value]


_original_catch_body = CatcherDecl._eval_body
_original_set_next = CommonStateField._set_next


def _catch_body(self: CatcherDecl, env: Any) -> None:
    """Marks that a catcher chose the next state (moto cannot tell when it names the state itself)."""
    _original_catch_body(self, env)
    env.catcher_chose_next = env.next_state_name == self.next_decl.name and bool(env.stack) and _caught(env.stack[-1])


def _caught(outcome: Any) -> bool:
    return type(outcome).__name__ == "CatcherOutcomeCaught"


def _set_next(self: CommonStateField, env: Any) -> None:
    """moto 5.2.1 takes "the next state is still this state" to mean "no catcher chose one", so a
    catcher whose Next is its own state (the status loop's wait-ran-out catcher; valid ASL) falls through
    to the state's own Next instead. Honour the catcher's choice."""
    if getattr(env, "catcher_chose_next", False):
        env.catcher_chose_next = False
        return
    _original_set_next(self, env)


@contextmanager
def moto_workarounds() -> Iterator[None]:
    with (
        mock.patch.object(StateMachine, "__deepcopy__", _state_machine_deepcopy, create=True),
        mock.patch.object(CatcherDecl, "_eval_body", _catch_body),
        mock.patch.object(CommonStateField, "_set_next", _set_next),
    ):
        yield
