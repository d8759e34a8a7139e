"""Work-arounds for moto bugs that stand between us and running the real state machine offline."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from moto.stepfunctions.models import StateMachine


def _state_machine_deepcopy(self: StateMachine, memo: dict[int, Any]) -> StateMachine:
    """moto 5.2.1 deep-copies the state machine, past executions included, at every StartExecution;
    a finished execution holds a lock, so the second execution of any state machine fails with
    "cannot pickle '_thread.RLock'". The copy never needs past executions: leave them out."""
    clone = StateMachine.__new__(type(self))
    memo[id(self)] = clone
    for key, value in self.__dict__.items():
        setattr(clone, key, [] if key == "executions" else copy.deepcopy(value, memo))
    return clone  # type: ignore[return-value]


@contextmanager
def moto_workarounds() -> Iterator[None]:
    with mock.patch.object(StateMachine, "__deepcopy__", _state_machine_deepcopy, create=True):
        yield
