"""What the offline emulators (ChartHop, Orgvue, ELMA365) share: injected faults and how they are applied.

`Fault` is one failure for the next call of an operation; `FaultInjectingServer` is a `LoopbackServer` that
keeps a queue of faults per operation (the names are each emulator's own) and answers a routed call with
the fault due for it, if any; `reset_connection` drops a client's TCP connection for real. A fault can also
be pinned to the Nth call of an operation (`inject_at`, so a seeded schedule replays the same faults
whatever the threads' timing), and can strike after the work was done (`after_effect`: the service acted,
the client only sees the failure).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from abc import abstractmethod
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from offline.loopback_server import LoopbackServer, WsgiApp

__all__ = ["Fault", "FaultInjectingServer", "reset_connection"]


@dataclass
class Fault:
    """One injected failure for the next call of an operation."""

    status: int | None = None
    retry_after: float | None = None
    delay_s: float = 0.0
    reset: bool = False
    #: Do the work first, then answer `status` or drop the connection: the client cannot tell it happened.
    after_effect: bool = False

    @classmethod
    def http(cls, status: int, retry_after: float | None = None) -> Fault:
        return cls(status=status, retry_after=retry_after)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        """Does the work, then answers only after `delay_s`: past the client's read timeout, the
        client cannot know whether the service acted (the ambiguous failure)."""
        return cls(delay_s=delay_s)

    @classmethod
    def connection_reset(cls) -> Fault:
        return cls(reset=True)


class FaultInjectingServer(LoopbackServer):
    """A loopback server with a queue of injected faults per operation; thread-safe.

    Subclasses route each call to an operation name, record calls in `_record`, and answer through
    `_answer`, which applies the fault due for the operation.
    """

    def __init__(self, app: WsgiApp, *, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._pinned: dict[tuple[str, int], Fault] = {}
        self._call_counts: dict[str, int] = defaultdict(int)
        #: (operation, call index, fault) of every fault applied, in order (campaign statistics).
        self.applied_faults: list[tuple[str, int, Fault]] = []
        self._faults_lock = threading.Lock()
        super().__init__(app, name=name, host=host, port=port)

    def inject(self, operation: str, *faults: Fault) -> None:
        """Queues failures for the next calls of an operation (the emulator's own operation names)."""
        with self._faults_lock:
            self._faults[operation].extend(faults)

    def inject_at(self, operation: str, index: int, fault: Fault) -> None:
        """Fails the call of an operation with this 0-based index (counted from the server's start), whenever
        it comes: a seeded schedule then injects the same faults however the callers' threads interleave."""
        with self._faults_lock:
            self._pinned[(operation, index)] = fault

    def clear_faults(self) -> None:
        """Drops every fault not yet applied (the faults stop)."""
        with self._faults_lock:
            self._faults.clear()
            self._pinned.clear()

    def pending_faults(self, operation: str) -> int:
        with self._faults_lock:
            return len(self._faults[operation]) + sum(1 for op, _ in self._pinned if op == operation)

    def _next_fault(self, operation: str) -> Fault | None:
        with self._faults_lock:
            index = self._call_counts[operation]
            self._call_counts[operation] = index + 1
            fault = self._pinned.pop((operation, index), None)
            queue = self._faults.get(operation)
            if fault is None and queue:
                fault = queue.popleft()
            if fault is not None:
                self.applied_faults.append((operation, index, fault))
            return fault

    @abstractmethod
    def _record(self, operation: str, request: Request, status: int) -> None:
        """Records a call (status 0 when the connection was reset); each emulator keeps its own records."""

    def _answer(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        operation: str,
        request: Request,
        work: Callable[[], Response],
        error: Callable[[int, str], Response],
    ) -> Iterable[bytes]:
        """Answers a routed call with `work()`, unless a fault is due for its operation.

        A reset drops the connection without an answer; an HTTP fault answers `error(status, ...)` (with
        Retry-After when the fault has one) instead of doing the work; a slow fault does the work and
        answers late; with `after_effect`, the work is done before the reset or the error. Every call is
        recorded.
        """
        fault = self._next_fault(operation)
        if fault is not None and fault.after_effect and (fault.reset or fault.status):
            done = work()
            self._record(operation, request, done.status_code)
            if fault.reset:
                reset_connection(environ)
                return []
            response = error(fault.status or 500, "injected failure after the work was done")
            return response(environ, start_response)
        if fault is not None and (fault.reset or fault.status):
            request.get_data()  # read the body first, so the client sees the answer rather than a broken pipe
            if fault.reset:
                self._record(operation, request, 0)
                reset_connection(environ)
                return []
        if fault is not None and fault.status:
            response = error(fault.status, "injected failure")
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(int(fault.retry_after))
        else:
            response = work()
        self._record(operation, request, response.status_code)
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)  # the work is done; only the answer is late, as in a real timeout
        return response(environ, start_response)


def reset_connection(environ: dict[str, Any]) -> None:
    """Aborts the client's TCP connection without an answer, with RST, as a crashed load balancer would.

    `close()` alone does not do it: werkzeug's file objects keep the socket open past `close()` (the client
    would get werkzeug's HTTP 500 instead), so the connection is shut down in both directions first.
    """
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
