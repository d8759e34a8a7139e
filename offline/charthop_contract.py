"""ChartHop's published contract (contracts/charthop/), checked with openapi-core.

One `ChartHopContract` answers three questions, each with the validator's reasons (an empty list: it holds):
`check_request` (path, method, query parameters, JSON or multipart body, enums), `check_response` (status and
body of an answer to that request) and `check_event` (a webhook delivery against the Event API's `Event`
schema). The ChartHop emulator runs every call through it, and the contract tests use it directly.

The vendored files are never edited; what in them blocks validation is handled in `_as_validated`, each
quirk with its reason (contracts/charthop/README.md lists them too).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import MultiDict

from people_sync import api_assumptions as assumed

SPEC_DIR = Path(__file__).resolve().parents[1] / "contracts" / "charthop"
#: The APIs the app calls, by file (the Event API is read for its `Event` schema only; of the App API the app calls
#: getAccessToken, the admin tool getInstalledApp and getActiveAppInstalls).
API_FILES = {
    "process": "charthop-process-api-openapi.yml",
    "import": "charthop-import-api-openapi.yml",
    "event": "charthop-event-api-openapi.yml",
    "app": "charthop-app-api-openapi.yml",
}
WEBHOOK_SUMMARY_FILE = "charthop-events-webhooks.yml"
#: The files' `servers` entry; requests are checked as if sent there (the real host is api.charthop.com).
SPEC_HOST_URL = "http://localhost"
#: Answers the spec does not list but the app is built for, each an assumption in people_sync.api_assumptions;
#: their bodies are not checked. 5xx answers are always allowed (a service may fail).
UNDOCUMENTED_STATUSES = frozenset({assumed.CHARTHOP_NOT_FOUND_STATUS, assumed.CHARTHOP_RATE_LIMIT_STATUS})
_ACCEPTED_VALUES = re.compile(r"Accepted values:\s*\[([^\]]*)\]")
_WORD = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Operation:
    """An operation of the spec, found by method and path."""

    api: str
    operation_id: str
    method: str
    template: str
    definition: Mapping[str, Any]
    path_item: Mapping[str, Any]

    def query_parameters(self) -> dict[str, Mapping[str, Any]]:
        declared = [*self.path_item.get("parameters", []), *self.definition.get("parameters", [])]
        return {p["name"]: p for p in declared if p.get("in") == "query"}


@dataclass(frozen=True)
class _Route:
    api: str
    template: str
    pattern: re.Pattern[str]
    item: Mapping[str, Any]


class ChartHopContract:
    """The vendored ChartHop spec as openapi-core reads it; thread-safe (it holds no per-call state)."""

    def __init__(self, spec_dir: Path = SPEC_DIR) -> None:
        self.raw = {api: _load(spec_dir / name) for api, name in API_FILES.items()}
        self.validated = {api: _as_validated(spec) for api, spec in self.raw.items()}
        self._openapi = {api: OpenAPI.from_dict(spec) for api, spec in self.validated.items()}
        self._routes = [
            _Route(api, template, _template_pattern(template), item)
            for api, spec in self.validated.items()
            for template, item in spec.get("paths", {}).items()
        ]
        self.webhook_summary: dict[str, Any] = _load(spec_dir / WEBHOOK_SUMMARY_FILE)

    # --- operations ------------------------------------------------------------------------------

    def find(self, method: str, path: str) -> Operation | None:
        """The operation at this method and path; None when the spec has none there (a literal path such as
        /process/last-sync/... wins over /process/{processId})."""
        candidates = [route for route in self._routes if route.pattern.fullmatch(path)]
        candidates.sort(key=lambda route: route.template.count("{"))
        for route in candidates:
            definition = route.item.get(method.lower())
            if isinstance(definition, Mapping):
                return Operation(
                    route.api, definition.get("operationId", ""), method.upper(), route.template, definition, route.item
                )
        return None

    def operation_id(self, method: str, path: str) -> str | None:
        operation = self.find(method, path)
        return operation.operation_id if operation else None

    # --- checks ----------------------------------------------------------------------------------

    def check_request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        *,
        allow_assumed: bool = False,
    ) -> list[str]:
        """Why the spec does not define this request (empty: it does). `body` None skips the body. With
        `allow_assumed`, the query parameters api_assumptions.CHARTHOP_ASSUMED_QUERY_PARAMETERS names for the
        operation (and only those) are let through."""
        args = MultiDict(query or {})
        operation = self.find(method, path)
        if operation is None:
            return [self._not_found_reason(method, path)]
        assumed_names = (
            assumed.CHARTHOP_ASSUMED_QUERY_PARAMETERS.get(operation.operation_id, frozenset())
            if allow_assumed
            else frozenset()
        )
        reasons = [
            f"unknown query parameter {name!r} (not a parameter of {operation.operation_id})"
            for name in args
            if name not in operation.query_parameters() and name not in assumed_names
        ]
        reasons += _described_enums(operation, args)
        request = _request(method, path, args, body, content_type)
        result = self._openapi[operation.api].unmarshal_request(request)
        reasons += [_reason(error) for error in result.errors]
        return reasons

    def check_response(
        self,
        method: str,
        path: str,
        status: int,
        body: bytes | None,
        content_type: str = "application/json",
        *,
        allow_assumed: bool = False,
    ) -> list[str]:
        """Why the spec does not define this answer to the request (empty: it does). With `allow_assumed`, the
        statuses api_assumptions.CHARTHOP_ASSUMED_STATUSES names for the operation are let through unchecked."""
        operation = self.find(method, path)
        if operation is None:
            return [self._not_found_reason(method, path)]
        documented = {str(code) for code in operation.definition.get("responses", {})}
        assumed_statuses = (
            assumed.CHARTHOP_ASSUMED_STATUSES.get(operation.operation_id, frozenset()) if allow_assumed else frozenset()
        )
        undocumented_allowed = status in UNDOCUMENTED_STATUSES or status in assumed_statuses or status >= 500
        if str(status) not in documented and undocumented_allowed:
            return []
        request = _request(method, path, MultiDict(), None, "application/json")
        response = MockResponse(body or b"", status_code=status, content_type=content_type)
        result = self._openapi[operation.api].unmarshal_response(request, response)
        return [f"{operation.operation_id} answer {status}: {_reason(error)}" for error in result.errors]

    def check_event(self, event: Mapping[str, Any]) -> list[str]:
        """Why a webhook delivery is not an `Event` of the Event API (empty: it is one)."""
        spec = self.validated["event"]
        schema = {"$ref": "#/components/schemas/Event", "components": spec["components"]}
        validator = OAS30Validator(schema)
        return [
            f"Event{''.join(f'.{part}' for part in error.absolute_path)}: {error.message}"
            for error in validator.iter_errors(dict(event))
        ]

    def event_fields(self) -> set[str]:
        """The property names of the Event schema."""
        return set(self.raw["event"]["components"]["schemas"]["Event"]["properties"])

    def event_enum(self, field: str) -> list[str]:
        return list(self.raw["event"]["components"]["schemas"]["Event"]["properties"][field].get("enum", []))

    def envelope_fields(self) -> set[str]:
        """The delivery envelope of the webhook summary (its names are lowercase there)."""
        return set(self.webhook_summary.get("envelope", {}))

    def _not_found_reason(self, method: str, path: str) -> str:
        known = [route for route in self._routes if route.pattern.fullmatch(path)]
        if not known:
            return f"no ChartHop operation at {path}"
        methods = sorted({m.upper() for route in known for m in route.item if m in _HTTP_METHODS})
        return f"{method.upper()} is not an operation of {known[0].template} (the spec has {', '.join(methods)})"


_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@functools.cache
def contract() -> ChartHopContract:
    """The vendored contract, loaded once per process (openapi-core validates the spec itself on load)."""
    return ChartHopContract()


def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data: dict[str, Any] = yaml.safe_load(handle)
    return data


def _as_validated(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as the validator reads it: a copy, with the quirks of the vendored files worked around."""
    spec = copy.deepcopy(spec)
    # Quirk 1: the files say `openapi: 3.2.0`, but they are a Swagger 2 conversion written in OpenAPI 3.0
    # vocabulary: a multipart file part is `type: string, format: binary` (3.1 would refuse its bytes as not a
    # string) and no 3.1 keyword (type lists, const, examples) occurs. So they are validated as 3.0.
    spec["openapi"] = "3.0.3"
    # Quirk 2: Swagger renders a Java Map<String, Object> as `additionalProperties: {type: object}`, which would
    # refuse every number or string in e.g. a Process's `results` or an Event's `payload`: read as "any value".
    _relax_object_maps(spec)
    # Quirk 3: updateProcess documents no 2xx answer at all (only 400/401/403). We assume 200 with the updated
    # Process (people_sync.api_assumptions); without a documented 2xx every successful update would be flagged.
    # appendToProcessLogFile documents none either: we assume a 2xx with no body we read (the client reads none).
    undocumented_success = {
        ("/v1/org/{orgId}/process/{processId}", "patch"): {
            "description": "(assumed, see people_sync.api_assumptions) the updated process",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Process"}}},
        },
        ("/v1/org/{orgId}/process/{processId}/log", "post"): {
            "description": "(assumed, see people_sync.api_assumptions) the entries were appended; no body",
        },
    }
    for (path, method), answer in undocumented_success.items():
        operation = spec.get("paths", {}).get(path, {}).get(method)
        if operation is not None and not any(str(code).startswith("2") for code in operation.get("responses", {})):
            operation["responses"]["200"] = answer
    return spec


def _relax_object_maps(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("additionalProperties") == {"type": "object"}:
            node["additionalProperties"] = {}
        for value in node.values():
            _relax_object_maps(value)
    elif isinstance(node, list):
        for value in node:
            _relax_object_maps(value)


def _described_enums(operation: Operation, args: MultiDict[str, str]) -> list[str]:
    """Quirk 4: some query enums are given only in prose ("Accepted values: ['DONE', ...]", e.g. findProcesses'
    `statuses`, comma-separated): those values are checked from the description."""
    reasons = []
    for name, parameter in operation.query_parameters().items():
        match = _ACCEPTED_VALUES.search(str(parameter.get("description", "")))
        if match is None or name not in args:
            continue
        accepted = _WORD.findall(match.group(1))
        many = "comma-separated" in str(parameter.get("description", ""))
        for value in args.getlist(name):
            for part in value.split(",") if many else [value]:
                if part not in accepted:
                    reasons.append(f"query parameter {name}: {part!r} is not one of {accepted}")
    return reasons


def _request(method: str, path: str, args: MultiDict[str, str], body: bytes | None, content_type: str) -> MockRequest:
    request = MockRequest(SPEC_HOST_URL, method.lower(), path, data=body, content_type=content_type)
    request.parameters.query = args
    if body is None:
        request.body = None  # type: ignore[assignment]  # no body to check (see check_request)
    return request


def _reason(error: BaseException) -> str:
    """The validator's reason, with the schema errors that caused it."""
    text = str(error) or type(error).__name__
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", None)
    if schema_errors:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.absolute_path) or '(body)'}: {e.message}" for e in schema_errors
        )
        return f"{type(error).__name__}: {details}"
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return text


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts))
