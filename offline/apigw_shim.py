"""A loopback HTTP endpoint standing in for API Gateway: real HTTP in, a REST API proxy event to Lambda.

The event follows API Gateway's REST (v1) proxy format, and the function is invoked through moto's
Lambda API (so the in-process runtime runs the real handler), as API Gateway would invoke it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import boto3
from werkzeug.wrappers import Request, Response

from offline.aws_stack import OfflineStack
from offline.loopback_server import LoopbackServer

#: API Gateway REST APIs refuse payloads over 10 MB before invoking anything.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


def proxy_event(request: Request, resource: str, stage: str = "Prod") -> dict[str, Any]:
    body = request.get_data()
    is_binary = bool(body) and not _is_text(body)
    headers = dict(request.headers.items())
    return {
        "resource": resource,
        "path": request.path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": {key: request.headers.getlist(key) for key in headers},
        "queryStringParameters": dict(request.args.items()) or None,
        "multiValueQueryStringParameters": {key: request.args.getlist(key) for key in request.args} or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": request.method,
            "path": f"/{stage}{request.path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": request.remote_addr or "127.0.0.1", "userAgent": request.user_agent.string},
        },
        "body": base64.b64encode(body).decode() if is_binary else body.decode("utf-8") if body else None,
        "isBase64Encoded": is_binary,
    }


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class ApiGatewayShim(LoopbackServer):
    """Serves the template's `Api` events on 127.0.0.1; start it inside the active moto mock."""

    def __init__(self, stack: OfflineStack, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stack = stack
        self._lambda = boto3.client("lambda", region_name=stack.region)
        super().__init__(self._wsgi, name="apigw-shim", host=host, port=port)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        logical_id = self.stack.api_routes.get((request.method, request.path))
        if logical_id is None:
            response = Response(
                json.dumps({"message": "Missing Authentication Token"}), status=403, mimetype="application/json"
            )
        elif (request.content_length or 0) > MAX_PAYLOAD_BYTES:
            response = Response(json.dumps({"message": "Request Too Long"}), status=413, mimetype="application/json")
        else:
            response = self._invoke(logical_id, proxy_event(request, request.path))
        return response(environ, start_response)

    def _invoke(self, logical_id: str, event: dict[str, Any]) -> Response:
        answer = self._lambda.invoke(
            FunctionName=self.stack.function(logical_id).name, Payload=json.dumps(event).encode()
        )
        payload = json.loads(answer["Payload"].read() or b"{}")
        if answer.get("FunctionError"):
            return Response(json.dumps({"message": "Internal server error"}), status=502, mimetype="application/json")
        body = payload.get("body") or ""
        data = base64.b64decode(body) if payload.get("isBase64Encoded") else body.encode()
        return Response(data, status=int(payload.get("statusCode", 200)), headers=payload.get("headers") or {})
