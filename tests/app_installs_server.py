"""A stand-in for ChartHop's app-install endpoints (getActiveAppInstalls, getInstalledApp, getAccessToken),
shaped as the App API spec says and as api_assumptions.py assumes: the developer org's token lists installs
and reads each install's token; an org's own token reads only its own install.

Every request and answer goes through the contract checker (offline/charthop_contract.py): a request outside
the App API spec is refused with 400 (the one allowance: getActiveAppInstalls' `from`, an assumption named in
api_assumptions.CHARTHOP_ASSUMED_QUERY_PARAMETERS), and an answer outside it is recorded where the test suite's
fixture (tests/conftest.py) fails the test (getActiveAppInstalls' undocumented 401/403 are the named assumption
api_assumptions.CHARTHOP_ASSUMED_STATUSES)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from offline.charthop_contract import contract
from offline.charthop_emulator import ContractViolation, record_contract_violation
from offline.loopback_server import LoopbackServer

APP_ID = "64b0c0ffee64b0c0ffee0001"
DEVELOPER_TOKEN = "developer-org-app-token"


@dataclass
class Install:
    org_id: str
    app_user_id: str
    token: str
    options: dict[str, Any] = field(default_factory=dict)
    status: str = "NORMAL"

    def user(self) -> dict[str, Any]:
        return {
            "id": self.app_user_id,
            "appId": APP_ID,
            "name": {"first": "people-sync", "last": "App"},  # Name requires `last` (App API spec)
            "type": "APP",
            "status": self.status,
            "orgs": [{"orgId": self.org_id, "access": "PRIMARY"}],
            "options": self.options,
            "secrets": {"apiKey": "write-only, never read"},
        }


class AppInstallsServer(LoopbackServer):
    def __init__(self, installs: Iterable[Install], *, page_size: int = 2, ignores_from: bool = False) -> None:
        self.installs = {install.org_id: install for install in installs}
        self.page_size = page_size
        #: True: getActiveAppInstalls ignores `from` (the spec defines no such parameter) and answers the first
        #: page, with its `next`, every time.
        self.ignores_from = ignores_from
        #: (path, bearer token) of every request, in order.
        self.requests: list[tuple[str, str]] = []
        #: Requests refused as outside the App API spec, and answers of this stand-in that left it.
        self.refused_requests: list[ContractViolation] = []
        self.contract_violations: list[ContractViolation] = []
        super().__init__(self._app, name="app-installs")

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.requests.append((request.path, token))
        query = list(request.args.items(multi=True))
        reasons = contract().check_request(request.method, request.path, query, None, allow_assumed=True)
        if reasons:
            self.refused_requests.append(ContractViolation("request", request.method, request.path, tuple(reasons)))
            return _json({"message": f"outside the App API: {'; '.join(reasons)}"}, 400)(environ, start_response)
        response = self._route(request, token)
        reasons = contract().check_response(
            request.method, request.path, response.status_code, response.get_data(), allow_assumed=True
        )
        if reasons:
            violation = ContractViolation("response", request.method, request.path, tuple(reasons))
            self.contract_violations.append(violation)
            record_contract_violation(violation)
        return response(environ, start_response)

    def _route(self, request: Request, token: str) -> Response:
        if match := re.fullmatch(r"/v1/app/install/([^/]+)", request.path):
            if token != DEVELOPER_TOKEN or match.group(1) != APP_ID:
                return _json({"message": "permission denied"}, 403)
            installs = list(self.installs.values())
            start = 0 if self.ignores_from else int(request.args.get("from", "0"))
            page = installs[start : start + self.page_size]
            body: dict[str, Any] = {"data": [install.user() for install in page]}
            if start + self.page_size < len(installs):
                body["next"] = str(start + self.page_size)
            return _json(body)
        if match := re.fullmatch(r"/v1/app/org/([^/]+)/install/([^/]+)(/token)?", request.path):
            install = self.installs.get(match.group(1))
            if install is None or install.app_user_id != match.group(2):
                return _json({"message": "not found"}, 404)
            if match.group(3):
                if token != DEVELOPER_TOKEN:
                    return _json({"message": "permission denied"}, 403)
                return _json({"access_token": install.token, "expires_in": 86400, "token_type": "bearer"})
            if token not in (DEVELOPER_TOKEN, install.token):
                return _json({"message": "not authorized"}, 401)
            return _json(install.user())
        return _json({"message": "no such route"}, 404)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
