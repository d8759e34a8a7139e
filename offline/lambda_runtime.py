"""Routes moto's Lambda invocations to the real handler code, in this process.

Every way moto invokes a function (boto3 `invoke`, Step Functions Lambda tasks, S3 notifications)
ends in `LambdaFunction.invoke`; we replace it while the runtime is active. Asynchronous invocations
(`InvocationType=Event` and S3 notifications) run on a worker thread, as Lambda runs them apart from
the caller; synchronous ones answer with the handler's result or Lambda's error payload.

For fault campaigns, `external_call_hook` sees every external call a handler makes (a boto3 API call or an
HTTP request through requests), numbered per invocation, before and after it is made; it may raise a
`ClientError` (an AWS fault) or `InvocationKilled`, which ends the invocation the way a Lambda timeout or
out-of-memory kill does: no `except Exception` in the handler runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal, Protocol
from unittest import mock

import boto3
import requests
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from botocore.client import BaseClient
from moto.awslambda.models import LambdaFunction

from offline.aws_stack import REPO_ROOT, DeployedFunction, OfflineStack

LAYER_PATH = REPO_ROOT / "layers" / "shared"
#: Lambda retries a failed asynchronous invocation after about one and two minutes; the offline runtime
#: keeps the order and the gap, scaled to seconds (a function's "in progress" records are scaled alike:
#: TRIGGER_IN_PROGRESS_SECONDS in the harness).
ASYNC_RETRY_DELAYS = (1.0, 2.0)


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that Powertools and our handlers read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "offline"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class InvocationKilled(BaseException):
    """Ends an invocation where it stands, as Lambda's timeout or an out-of-memory kill does: a BaseException,
    so the handler's `except Exception` (its error handling) never sees it."""

    def __init__(self, reason: str = "Sandbox.Timedout") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ExternalCall:
    """One call a handler makes to the outside: which invocation makes it and its number in it."""

    function: str  # the function's logical id, e.g. "ImportStarterFunction"
    attempt: int  # 0-based count of this function's invocations (each async retry is one)
    index: int  # 0-based number of the external call within the invocation
    kind: Literal["aws", "http"]
    name: str  # "s3.GetObject", "PATCH /v1/org/<org>/process/<id>"


class ExternalCallHook(Protocol):
    def __call__(self, call: ExternalCall, phase: Literal["before", "after"]) -> None:
        """Called before each external call and after it returned; raising fails (or kills) there."""


@dataclass
class _Running:
    function: str
    attempt: int
    calls: int = 0


_running: contextvars.ContextVar[_Running | None] = contextvars.ContextVar("offline_lambda_running", default=None)


@dataclass
class Invocation:
    function: str
    event: dict[str, Any]
    asynchronous: bool
    result: Any = None
    error: BaseException | None = None


class InProcessLambdaRuntime:
    """Runs the stack's handlers in-process for moto. Use as a context manager around the flow."""

    def __init__(
        self,
        stack: OfflineStack,
        *,
        extra_env: dict[str, str] | None = None,
        async_retry_delays: tuple[float, ...] = ASYNC_RETRY_DELAYS,
    ) -> None:
        self.stack = stack
        self.extra_env = extra_env or {}
        self.async_retry_delays = async_retry_delays
        self.invocations: list[Invocation] = []
        self._by_name = {fn.name: fn for fn in stack.functions.values()}
        #: Each function's idle containers (a loaded handler module each). Lambda runs one invocation at a time
        #: per container, so concurrent invocations of a function never share its module's globals (the
        #: webhook's event resolver, a handler's per-invocation state); a busy function gets a new container.
        self._idle_containers: dict[str, list[ModuleType]] = {}
        self._containers_loaded: dict[str, int] = {}
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lambda-async")
        self._pending: list[Future[Any]] = []
        self._lock = threading.Lock()
        self._patches: list[Any] = []
        #: See the module docstring; None (the default) leaves every call alone.
        self.external_call_hook: ExternalCallHook | None = None
        #: Where asynchronous invocations go instead of the worker threads: a driver that runs them itself
        #: (`run_invocation`) when its own clock says so (bench/simulated_clock.py). None: the worker threads.
        self.async_dispatch: Callable[[DeployedFunction, Invocation], None] | None = None
        self._attempts: dict[str, int] = {}

    def __enter__(self) -> InProcessLambdaRuntime:
        env = self._shared_environment()
        self._patches = [
            mock.patch.dict(os.environ, env),
            mock.patch.object(LambdaFunction, "invoke", self._make_invoke()),
            mock.patch.object(sys, "path", [str(LAYER_PATH), *sys.path]),
            mock.patch.object(BaseClient, "_make_api_call", self._watched_api_call()),
            mock.patch.object(requests.Session, "send", self._watched_send()),
        ]
        for patch in self._patches:
            patch.start()
        _reset_caches()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait_idle()
        self._executor.shutdown(wait=True)
        for patch in reversed(self._patches):
            patch.stop()
        _reset_caches()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Waits for asynchronous invocations (and those they start) to finish."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = [future for future in self._pending if not future.done()]
            if not pending:
                return
            pending[0].result(timeout=max(0.0, deadline - time.monotonic()))
        raise TimeoutError("asynchronous Lambda invocations did not finish")

    def invocations_of(self, logical_id: str) -> list[Invocation]:
        name = self.stack.function(logical_id).name
        return [inv for inv in self.invocations if inv.function == name]

    # --- external calls (fault campaigns) ---------------------------------------------------------

    def _external_call(self, kind: Literal["aws", "http"], name: str, perform: Callable[[], Any]) -> Any:
        running = _running.get()
        hook = self.external_call_hook
        if running is None or hook is None:
            return perform()
        call = ExternalCall(running.function, running.attempt, running.calls, kind, name)
        running.calls += 1
        hook(call, "before")
        result = perform()
        hook(call, "after")
        return result

    def _watched_api_call(self) -> Callable[..., Any]:
        original: Callable[..., Any] = getattr(BaseClient, "_make_api_call")  # noqa: B009 - private, untyped
        runtime = self

        def make_api_call(client: BaseClient, operation_name: str, api_params: Any) -> Any:
            name = f"{client.meta.service_model.service_name}.{operation_name}"
            return runtime._external_call("aws", name, lambda: original(client, operation_name, api_params))

        return make_api_call

    def _watched_send(self) -> Callable[..., Any]:
        original = requests.Session.send
        runtime = self

        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            name = f"{request.method} {request.url}"
            return runtime._external_call("http", name, lambda: original(session, request, **kwargs))

        return send

    # --- invocation ------------------------------------------------------------------------------

    def _shared_environment(self) -> dict[str, str]:
        """One process hosts every function, so their variables must not disagree."""
        env: dict[str, str] = {}
        for function in self.stack.functions.values():
            for key, value in function.environment.items():
                if key in env and env[key] != value and key != "POWERTOOLS_SERVICE_NAME":
                    raise ValueError(f"functions disagree on {key}: {env[key]!r} vs {value!r}")
                env[key] = value
        env.update(
            {
                "AWS_DEFAULT_REGION": self.stack.region,
                "AWS_REGION": self.stack.region,
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_DISABLED": "true",
            }
        )
        env.update(self.extra_env)
        return env

    def _make_invoke(self) -> Callable[..., str | bytes]:
        runtime = self

        def invoke(fn: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> str | bytes:
            event = json.loads(body) if body else {}
            function = runtime._by_name[fn.function_name]
            # S3 notifications reach moto's invoke with no invocation type; a caller that asks for
            # RequestResponse (an operator's redrive of an S3 event) waits for the answer, as in Lambda.
            invocation_type = request_headers.get("x-amz-invocation-type")
            asynchronous = invocation_type == "Event" or (invocation_type is None and _is_s3_event(event))
            invocation = Invocation(function.name, event, asynchronous)
            with runtime._lock:
                runtime.invocations.append(invocation)
            if asynchronous and runtime.async_dispatch is not None:
                runtime.async_dispatch(function, invocation)
                return b""
            if asynchronous:
                future = runtime._executor.submit(runtime._run, function, invocation)
                with runtime._lock:
                    runtime._pending.append(future)
                return b""
            runtime._run(function, invocation)
            if invocation.error is not None:
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(_error_payload(invocation.error))
            return json.dumps(invocation.result)

        return invoke

    def run_invocation(self, function: DeployedFunction, invocation: Invocation) -> None:
        """Runs an invocation `async_dispatch` was handed, on the caller's thread (with Lambda's retries)."""
        self._run(function, invocation)

    def _run(self, function: DeployedFunction, invocation: Invocation) -> None:
        """Runs the handler; asynchronous events get Lambda's retries, then the on-failure destination
        (Lambda waits about a minute, then two; here `async_retry_delays`, a second and two by default)."""
        attempts = 1 + (function.async_retries if invocation.asynchronous else 0)
        for attempt in range(attempts):
            if attempt:
                delays = self.async_retry_delays or (0.0,)
                time.sleep(delays[min(attempt, len(delays)) - 1])
            invocation.error = None
            container = self._take_container(function)
            handler = self._handler(function, container)
            context = LambdaContext(function.name, function.arn, function.memory, function.timeout)
            with self._lock:
                number = self._attempts.get(function.logical_id, 0)
                self._attempts[function.logical_id] = number + 1
            running = _running.set(_Running(function.logical_id, number))
            reusable = True
            try:
                with _process_wide_state_lock(container):
                    invocation.result = handler(invocation.event, context)
                return
            except Exception as error:  # noqa: BLE001 - reported as Lambda reports a handler error
                invocation.error = error
                if invocation.asynchronous:
                    traceback.print_exception(error)
            except InvocationKilled as killed:  # no handler code ran; Lambda reports a timeout
                invocation.error = killed
                reusable = False  # Lambda starts a fresh runtime after a timeout or out-of-memory end
            finally:
                _running.reset(running)
                if reusable:
                    self._release_container(function, container)
        if invocation.asynchronous and invocation.error is not None:
            self._send_to_on_failure(function, invocation, attempts)

    def _send_to_on_failure(self, function: DeployedFunction, invocation: Invocation, attempts: int) -> None:
        """What Lambda puts on an SQS on-failure destination after the last retry."""
        if not function.on_failure or function.on_failure.get("Type") != "SQS":
            return
        assert invocation.error is not None
        record = {
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{function.arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": invocation.event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": _error_payload(invocation.error),
        }
        queue_url = self.stack.queue_url_for_arn(str(self.stack.resolve(function.on_failure["Destination"])))
        boto3.client("sqs", region_name=self.stack.region).send_message(
            QueueUrl=queue_url, MessageBody=json.dumps(record)
        )

    def _take_container(self, function: DeployedFunction) -> ModuleType:
        """An idle container of the function (a warm start), or a new one (a cold start: its module loaded)."""
        with self._lock:
            idle = self._idle_containers.setdefault(function.logical_id, [])
            if idle:
                return idle.pop()
            number = self._containers_loaded.get(function.logical_id, 0)
            self._containers_loaded[function.logical_id] = number + 1
        module_name = function.handler.rsplit(".", 1)[0]
        return _load_module(f"offline_lambda_{function.logical_id}_{number}", function.code_dir / f"{module_name}.py")

    def _release_container(self, function: DeployedFunction, container: ModuleType) -> None:
        with self._lock:
            self._idle_containers.setdefault(function.logical_id, []).append(container)

    def containers_loaded(self, logical_id: str) -> int:
        """How many containers (cold starts) the function has had."""
        with self._lock:
            return self._containers_loaded.get(logical_id, 0)

    @staticmethod
    def _handler(function: DeployedFunction, container: ModuleType) -> Callable[[dict[str, Any], Any], Any]:
        handler: Callable[[dict[str, Any], Any], Any] = getattr(container, function.handler.rsplit(".", 1)[1])
        return handler


#: Held while a handler whose container has a Powertools event-handler resolver runs. Powertools keeps the
#: resolver's `current_event` and `lambda_context` on the `BaseRouter` class, i.e. once per Python process: in
#: Lambda every container is a process of its own, here all containers share this one, so two overlapping
#: webhook deliveries (separate containers) would still read each other's event (the campaign's seed 538: a
#: "Sync Now" answered 2xx as an echo of another delivery's process, as seed 838 did before containers). Such
#: handlers are short (the webhook answers in milliseconds), so running them one at a time costs nothing here.
_RESOLVER_LOCK = threading.RLock()


def _process_wide_state_lock(container: ModuleType) -> contextlib.AbstractContextManager[Any]:
    """The lock for a container whose module keeps process-wide (class-level) per-invocation state."""
    if any(isinstance(value, BaseRouter) for value in vars(container).values()):
        return _RESOLVER_LOCK
    return contextlib.nullcontext()


def _load_module(name: str, path: Any) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_s3_event(event: dict[str, Any]) -> bool:
    records = event.get("Records") or []
    return bool(records) and records[0].get("eventSource") == "aws:s3"


def _error_payload(error: BaseException) -> dict[str, Any]:
    if isinstance(error, InvocationKilled):
        return {"errorType": error.reason, "errorMessage": f"The invocation ended abruptly ({error.reason})"}
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_exception(error)[-5:],
    }


def _reset_caches() -> None:
    """Clears per-container caches (clients, parameter values, sync contexts) so a new offline stack starts cold."""
    for name in ("people_sync.aws_clients", "people_sync.runtime"):
        module = sys.modules.get(name)
        if module is not None:
            module.reset()
