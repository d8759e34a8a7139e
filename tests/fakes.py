"""Test doubles shared by several test modules: a hand-moved clock and a callback endpoint that records calls."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from offline.loopback_server import LoopbackServer
from people_sync.config import AppSettings


def app_settings(**overrides: Any) -> AppSettings:
    """Settings as the template sets them, with test values; override what a test is about."""
    values: dict[str, Any] = {
        "org_id": "588f7ee98f138b19220041a7",
        "app_name": "people-sync",
        "app_user_id": "u",
        "charthop_base_url": "http://unused",
        "token_secret_name": "unused",
        "settings_parameter_name": "unused",
        "staging_bucket": "bucket",
        "staging_prefix": "staging/",
        "state_machine_arn": "arn",
        "import_starter_function": "unused",
        "poll_initial_seconds": 5,
        "poll_max_seconds": 60,
        "import_timeout_seconds": 3900,
    }
    return AppSettings(**{**values, **overrides})


class FakeClock:
    """A clock moved by hand (`advance`, or set `now`): no test sleeps out a duration."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CallbackRecorder(LoopbackServer):
    """Our callback endpoint in miniature: records each call's query parameters."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, str]] = []
        self.arrived = threading.Event()
        super().__init__(self._app, name="callback-recorder")

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        self.received.append(dict(request.args))
        self.arrived.set()
        return Response("ok", status=self.status)(environ, start_response)

    @property
    def url(self) -> str:
        return f"{self.base_url}/orgvue/callback?sync=s-1"
