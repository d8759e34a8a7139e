"""The offline runtime runs a function's overlapping invocations in separate containers, as Lambda does.

Lambda gives each container one invocation at a time, so a handler module's globals (the webhook's event
resolver, Powertools' per-invocation state) are never shared by two invocations that overlap. The runtime
once ran them on one module: the fault campaign's seed 838 saw a "Sync Now" delivery answered 2xx as an echo
of another process, because an overlapping delivery had replaced the resolver's current event.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from offline.aws_stack import DeployedFunction
from offline.lambda_runtime import InProcessLambdaRuntime, Invocation, InvocationKilled

#: A handler that keeps its event in a module global, as APIGatewayRestResolver keeps `current_event`, and
#: reads it back once every overlapping invocation has set it (the event's barrier: the runtime hands the
#: event to the handler as it is).
HANDLER = """
current_event = None


def handler(event, context):
    global current_event
    current_event = event
    if event.get("overlap"):
        event["overlap"].wait()
    if event.get("kill"):
        raise event["kill"]
    return current_event["id"]
"""


def deployed(tmp_path: Path, source: str = HANDLER, name: str = "echo") -> DeployedFunction:
    (tmp_path / "app.py").write_text(source)
    return DeployedFunction(
        logical_id=f"{name.capitalize()}Function",
        name=name,
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        code_dir=tmp_path,
        handler="app.handler",
        timeout=30,
        memory=256,
        environment={},
    )


def runtime() -> InProcessLambdaRuntime:
    return InProcessLambdaRuntime(SimpleNamespace(functions={}), async_retry_delays=(0.0,))  # type: ignore[arg-type]


def run(lambda_runtime: InProcessLambdaRuntime, function: DeployedFunction, event: dict[str, Any]) -> Invocation:
    invocation = Invocation(function.name, event, asynchronous=False)
    lambda_runtime.run_invocation(function, invocation)
    return invocation


def test_overlapping_invocations_each_see_their_own_event(tmp_path: Path) -> None:
    function, lambda_runtime = deployed(tmp_path), runtime()
    both_set = threading.Barrier(2, timeout=10)
    invocations = [Invocation(function.name, {"id": name, "overlap": both_set}, asynchronous=False) for name in "ab"]
    threads = [
        threading.Thread(target=lambda_runtime.run_invocation, args=(function, invocation))
        for invocation in invocations
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert [invocation.error for invocation in invocations] == [None, None]
    assert [invocation.result for invocation in invocations] == ["a", "b"]
    assert lambda_runtime.containers_loaded("EchoFunction") == 2  # two cold starts: one per overlapping call


def test_invocations_one_after_another_reuse_the_warm_container(tmp_path: Path) -> None:
    function, lambda_runtime = deployed(tmp_path), runtime()
    assert [run(lambda_runtime, function, {"id": name}).result for name in "abc"] == ["a", "b", "c"]
    assert lambda_runtime.containers_loaded("EchoFunction") == 1


def test_a_killed_invocations_container_is_not_reused(tmp_path: Path) -> None:
    """After a timeout or an out-of-memory end Lambda starts a fresh runtime; a handler error keeps it warm."""
    function, lambda_runtime = deployed(tmp_path), runtime()
    assert isinstance(run(lambda_runtime, function, {"id": "a", "kill": ValueError("bug")}).error, ValueError)
    assert run(lambda_runtime, function, {"id": "b"}).result == "b"
    assert lambda_runtime.containers_loaded("EchoFunction") == 1
    assert isinstance(run(lambda_runtime, function, {"id": "c", "kill": InvocationKilled()}).error, InvocationKilled)
    assert run(lambda_runtime, function, {"id": "d"}).result == "d"
    assert lambda_runtime.containers_loaded("EchoFunction") == 2


#: The webhook's shape: a Powertools resolver, which keeps `current_event` on its `BaseRouter` class (once per
#: process, not per module). The first delivery holds inside its route until a second one has begun, then reads
#: its event again.
RESOLVER_HANDLER = """
import json

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

app = APIGatewayRestResolver()


@app.post("/webhook")
def receive():
    mine = app.current_event.body
    inside = app.current_event.raw_event.get("inside")
    if inside is not None:
        inside.set()
        app.current_event.raw_event["hold"].wait(1.0)
    return {"mine": mine, "seen": app.current_event.body}


def handler(event, context):
    return app.resolve(event, context)
"""


def delivery(body: str, **extra: Any) -> dict[str, Any]:
    return {
        "httpMethod": "POST",
        "path": "/webhook",
        "resource": "/webhook",
        "headers": {"Content-Type": "application/json"},
        "requestContext": {"stage": "Prod", "requestId": body},
        "body": body,
        **extra,
    }


def test_overlapping_webhook_deliveries_never_read_each_others_event(tmp_path: Path) -> None:
    """Seed 538 of run 12: Powertools' resolver state is per process, and the offline containers share one
    process (Lambda's do not), so a delivery that overlapped another read the other's event and answered a
    "Sync Now" as an echo of it. Such handlers now run one at a time offline."""
    function, lambda_runtime = deployed(tmp_path, RESOLVER_HANDLER, "webhook"), runtime()
    inside, hold = threading.Event(), threading.Event()
    first = Invocation(function.name, delivery("a", inside=inside, hold=hold), asynchronous=False)
    second = Invocation(function.name, delivery("b"), asynchronous=False)
    threads = [threading.Thread(target=lambda_runtime.run_invocation, args=(function, first))]
    threads[0].start()
    assert inside.wait(10), "the first delivery never reached its route"
    threads.append(threading.Thread(target=lambda_runtime.run_invocation, args=(function, second)))
    threads[1].start()
    for thread in threads:
        thread.join(timeout=20)
    answers = [json.loads(invocation.result["body"]) for invocation in (first, second)]
    assert answers == [{"mine": "a", "seen": "a"}, {"mine": "b", "seen": "b"}]
