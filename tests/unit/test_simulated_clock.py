"""The multi-org bench's simulated clock (bench/simulated_clock.py): the clock, and the driver that steps the
status loop's definition on it. The driver must do what Step Functions does with the ASL the template uses
(paths, ResultPath, Choice, Wait, Retry, Catch, a task token's wait running out) and refuse any other ASL.
The whole bench on it (five orgs through the real handlers) is in test_bench_multi_org.py."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from bench.simulated_clock import (
    _MISSING,
    WAIT_FOR_TASK_TOKEN,
    AslDriver,
    AslError,
    SimulatedClock,
    TaskTimedOut,
    UnsupportedAsl,
    apply_result_path,
    check_definition,
    choose,
    error_matches,
    lookup,
    resolve_parameters,
)

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:stack-Fn"


def test_the_clock_runs_actions_in_time_order_and_times_an_invocation_with_its_sleeps() -> None:
    clock = SimulatedClock(100.0)
    seen: list[tuple[str, float]] = []
    clock.at(105.0, lambda: seen.append(("late", clock.now())))
    clock.at(101.0, lambda: seen.append(("early", clock.now())))

    def invocation() -> str:
        clock.sleep(2.5)  # takes no wall time
        return "result"

    clock.at(102.0, lambda: seen.append(("timed", clock.timed(invocation)[2])))
    clock.run()
    assert [name for name, _ in seen] == ["early", "timed", "late"]
    assert seen[0][1] == 101.0
    assert seen[2][1] == 105.0
    assert 104.5 <= seen[1][1] < 104.6  # 102 + the 2.5 s it slept + the wall time it took


def test_paths_parameters_and_result_paths() -> None:
    data = {"a": {"b": 1}, "poll": {"waitSeconds": 5}}
    assert lookup(data, "$") is data
    assert lookup(data, "$.a.b") == 1
    assert lookup(data, "$.missing") is _MISSING
    with pytest.raises(UnsupportedAsl):
        lookup(data, "$.list[0]")
    parameters = {"FunctionName": FUNCTION, "Payload": {"state.$": "$", "taskToken.$": "$$.Task.Token"}}
    assert resolve_parameters(parameters, data, {"Task": {"Token": "t-1"}}) == {
        "FunctionName": FUNCTION,
        "Payload": {"state": data, "taskToken": "t-1"},
    }
    assert apply_result_path(data, {"x": 1}, None) == data
    assert apply_result_path(data, {"x": 1}, "$") == {"x": 1}
    assert apply_result_path(data, {"Error": "E"}, "$.error") == {**data, "error": {"Error": "E"}}
    assert "error" not in data  # the input is not changed


def test_choices_and_error_names() -> None:
    state = {
        "Choices": [
            {"Variable": "$.importId", "IsPresent": True, "Next": "Follow"},
            {
                "And": [{"Variable": "$.queued", "IsPresent": True}, {"Variable": "$.queued", "BooleanEquals": True}],
                "Next": "Wait",
            },
        ],
        "Default": "Nothing",
    }
    assert choose(state, {"importId": "i"}) == "Follow"
    assert choose(state, {"queued": True}) == "Wait"
    assert choose(state, {"queued": False}) == "Nothing"
    with pytest.raises(AslError, match=r"States\.Runtime"):
        choose({"Choices": [{"Variable": "$.finished", "BooleanEquals": True, "Next": "X"}]}, {})
    assert error_matches(["States.ALL"], "Anything")
    assert error_matches(["States.TaskFailed"], "ChartHopUnavailable")
    assert not error_matches(["States.TaskFailed"], "States.Timeout")
    assert error_matches(["States.Timeout"], "States.Timeout")


def test_asl_the_driver_does_not_implement_is_refused() -> None:
    base = {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}
    check_definition(base)
    with pytest.raises(UnsupportedAsl, match="Map"):
        check_definition({**base, "States": {"A": {"Type": "Map"}}})
    with pytest.raises(UnsupportedAsl, match="OutputPath"):
        check_definition(
            {**base, "States": {"A": {"Type": "Task", "Resource": FUNCTION, "OutputPath": "$.x", "End": True}}}
        )
    with pytest.raises(UnsupportedAsl, match="top-level"):
        check_definition({**base, "QueryLanguage": "JSONata"})


class FakeLambda:
    """Stands in for the driver's invocations: each answers after `seconds` on the clock with what `answer`
    returns for the payload (a result, or ("ErrorType", "message") for a function error)."""

    def __init__(self, driver: AslDriver, answer: Any, seconds: float = 0.2) -> None:
        self.driver, self.answer, self.seconds = driver, answer, seconds
        self.payloads: list[tuple[float, Any]] = []

    def __call__(self, function: str, payload: Any) -> tuple[Any, tuple[str, str] | None, float]:
        clock = self.driver.clock
        self.payloads.append((clock.now(), payload))
        answer = self.answer(payload)
        end = clock.now() + self.seconds
        if isinstance(answer, tuple):
            return None, answer, end
        return answer, None, end


def make_driver(
    definition: dict[str, Any], monkeypatch: pytest.MonkeyPatch, answer: Any
) -> tuple[AslDriver, FakeLambda]:
    stack = SimpleNamespace(region="us-east-1", functions={})
    driver = AslDriver(SimpleNamespace(stack=stack), SimulatedClock(0.0), definition)  # type: ignore[arg-type]
    fake = FakeLambda(driver, answer)
    monkeypatch.setattr(driver, "_invoke", fake)
    return driver, fake


def start(driver: AslDriver, data: dict[str, Any]) -> Any:
    record = SimpleNamespace(execution_arn="arn:execution", execution_input=json.dumps(data))
    driver.started(record)  # type: ignore[arg-type]
    driver.clock.run()
    [execution] = driver.executions.values()
    return execution


def test_a_task_a_choice_and_a_wait_on_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    definition = {
        "StartAt": "Start",
        "States": {
            "Start": {"Type": "Task", "Resource": FUNCTION, "Parameters": {"startSync.$": "$"}, "Next": "Queued"},
            "Queued": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.queued", "BooleanEquals": True, "Next": "WaitForTurn"}],
                "Default": "Done",
            },
            "WaitForTurn": {"Type": "Wait", "SecondsPath": "$.queueWaitSeconds", "Next": "Start"},
            "Done": {"Type": "Succeed"},
        },
    }
    answers = iter([{"queued": True, "queueWaitSeconds": 5}, {"queued": False, "importId": "i-1"}])
    driver, fake = make_driver(definition, monkeypatch, lambda payload: next(answers))
    execution = start(driver, {"file": "roster.csv"})
    assert execution.status == "SUCCEEDED"
    assert execution.states_entered == 6  # Start, Queued, WaitForTurn, Start, Queued, Done
    assert [payload for _, payload in fake.payloads] == [  # the task's result is the next state's input
        {"startSync": {"file": "roster.csv"}},
        {"startSync": {"queued": True, "queueWaitSeconds": 5}},
    ]
    assert fake.payloads[1][0] == pytest.approx(5.2)  # after the first task (0.2 s) and the wait (5 s)
    assert json.loads(execution.record.output) == {"queued": False, "importId": "i-1"}


def follow_definition() -> dict[str, Any]:
    return {
        "StartAt": "Follow",
        "States": {
            "Follow": {
                "Type": "Task",
                "Resource": WAIT_FOR_TASK_TOKEN,
                "Parameters": {"FunctionName": FUNCTION, "Payload": {"state.$": "$", "taskToken.$": "$$.Task.Token"}},
                "TimeoutSecondsPath": "$.poll.waitSeconds",
                "Retry": [
                    {"ErrorEquals": ["ChartHopUnavailable"], "IntervalSeconds": 2, "MaxAttempts": 2, "BackoffRate": 2}
                ],
                "Catch": [
                    {"ErrorEquals": ["States.Timeout"], "ResultPath": None, "Next": "Follow"},
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"},
                ],
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
            "Failed": {"Type": "Fail", "Error": "SyncFailed"},
        },
    }


def test_a_task_token_left_unanswered_times_out_and_the_catcher_enters_the_task_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries: list[float] = []

    def checker(payload: dict[str, Any]) -> Any:
        entries.append(driver.clock.now())
        if len(entries) == 3:  # the third check finds the import finished and hands the state back
            driver.task_succeeded(payload["taskToken"], json.dumps({**payload["state"], "finished": True}))
        return {"outcome": "waiting"}

    driver, _ = make_driver(follow_definition(), monkeypatch, checker)
    execution = start(driver, {"poll": {"waitSeconds": 5}})
    assert entries == [0.0, 5.0, 10.0]  # each wait ran out after 5 s
    assert execution.status == "SUCCEEDED"
    assert execution.states_entered == 4
    assert json.loads(execution.record.output)["finished"] is True
    assert driver.tokens == {}


def test_a_hand_back_after_the_wait_ran_out_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens: list[str] = []

    def checker(payload: dict[str, Any]) -> Any:
        tokens.append(payload["taskToken"])
        if len(tokens) == 2:
            with pytest.raises(TaskTimedOut):  # the first entry's wait ran out at 5 s
                driver.task_succeeded(tokens[0], json.dumps(payload["state"]))
            driver.task_succeeded(tokens[1], json.dumps({**payload["state"], "finished": True}))
        return {}

    driver, _ = make_driver(follow_definition(), monkeypatch, checker)
    assert start(driver, {"poll": {"waitSeconds": 5}}).status == "SUCCEEDED"


def test_errors_are_retried_then_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, fake = make_driver(follow_definition(), monkeypatch, lambda payload: ("ChartHopUnavailable", "down"))
    execution = start(driver, {"poll": {"waitSeconds": 5}})
    assert [at for at, _ in fake.payloads] == pytest.approx([0.0, 2.2, 6.4])  # retried after 2 s, then 4 s
    assert execution.status == "FAILED"
    assert execution.states_entered == 2  # Follow, then the catcher's Failed (retries enter no state)
