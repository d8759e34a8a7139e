"""ChartHop webhook: authenticate, acknowledge fast, hand "Sync Now" to the import starter asynchronously."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, ServiceError, UnauthorizedError
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from people_sync import api_assumptions, aws_clients, org_registry, webhook_rules
from people_sync.config import PARAMETER_MAX_AGE
from people_sync.models import ChartHopEvent, SyncNowRequest
from people_sync.tracing import TRACE_AWS

logger = Logger()
tracer = Tracer(patch_modules=TRACE_AWS)
metrics = Metrics()
app = APIGatewayRestResolver()


@app.post("/webhook")
@tracer.capture_method
def receive_event() -> Response[dict[str, Any]]:
    request = app.current_event
    presented = request.query_string_parameters.get(webhook_rules.TOKEN_QUERY_PARAMETER) or request.headers.get(
        webhook_rules.TOKEN_HEADER
    )
    if not webhook_rules.token_matches(presented, _webhook_token()):
        metrics.add_metric(name="WebhookUnauthorized", unit=MetricUnit.Count, value=1)
        raise UnauthorizedError("missing or wrong webhook token")
    try:
        raw = webhook_rules.body_bytes(request.body, base64_encoded=bool(request.is_base64_encoded))
    except webhook_rules.MalformedBody as error:
        raise BadRequestError(error.reason) from error
    if len(raw) > webhook_rules.MAX_BODY_BYTES:
        raise ServiceError(413, f"body over {webhook_rules.MAX_BODY_BYTES} bytes")
    if not webhook_rules.is_json_content_type(request.headers.get("Content-Type")):
        raise ServiceError(415, "expected Content-Type: application/json")
    try:
        body = webhook_rules.body_text(raw)
    except webhook_rules.MalformedBody as error:
        raise BadRequestError(error.reason) from error
    try:
        event = parse(event=json.loads(body), model=ChartHopEvent)
    except (ValidationError, ValueError, TypeError) as error:
        raise BadRequestError("body is not a ChartHop event") from error
    logger.append_keys(event_id=event.id, event_type=event.type)
    app_name = os.environ["CHARTHOP_APP_NAME"]
    if not api_assumptions.is_sync_now_event(event.model_dump(by_alias=True), app_name) or not event.entity_id:
        logger.info("event ignored")
        return _accepted({"accepted": True, "action": "ignored"})
    echo = api_assumptions.own_process_echo(event.model_dump(by_alias=True).get("payload"), app_name)
    if echo is not None:  # ChartHop tells us about a process we created: not a press; nothing may start
        metrics.add_metric(name="SyncNowEchoIgnored", unit=MetricUnit.Count, value=1)
        logger.info("echo of our own process; ignored", extra={"sync_process_id": event.entity_id, "reason": echo})
        return Response(
            status_code=200,
            content_type=content_types.APPLICATION_JSON,
            body={"accepted": True, "action": "ignored", "reason": "echo", "syncProcessId": event.entity_id},
        )
    org_id = event.org_id or os.environ["CHARTHOP_ORG_ID"]
    logger.append_keys(org_id=org_id)
    refused = org_registry.refusal(
        org_id,
        registry=org_registry.OrgRegistry.from_env(),
        default_org_id=os.environ["CHARTHOP_ORG_ID"],
    )
    if refused is not None:  # acknowledged (ChartHop must not redeliver it), and nothing starts
        metrics.add_metric(name="SyncNowOrgNotServed", unit=MetricUnit.Count, value=1)
        logger.warning(
            "Sync Now for an org this deployment does not sync now; ignored", extra={"reason": refused.message}
        )
        return Response(
            status_code=200,
            content_type=content_types.APPLICATION_JSON,
            body={
                "accepted": True,
                "action": "ignored",
                "reason": "org-not-served",
                "orgId": org_id,
                "orgState": refused.reason,
                "message": refused.message,
            },
        )
    sync_request = SyncNowRequest(
        org_id=org_id,
        sync_process_id=event.entity_id,
        app_id=event.app_id,
        requested_by=event.user_id,
    )
    aws_clients.lambda_client().invoke(
        FunctionName=os.environ["IMPORT_STARTER_FUNCTION"],
        InvocationType="Event",
        Payload=json.dumps(sync_request.to_json_dict()).encode(),
    )
    metrics.add_metric(name="SyncNowAccepted", unit=MetricUnit.Count, value=1)
    logger.info("sync requested", extra={"sync_process_id": sync_request.sync_process_id})
    # "requested": the import starter runs asynchronously and may still refuse it (not our process, a sync
    # already running); the outcome shows in ChartHop's sync process.
    return _accepted({"accepted": True, "action": "sync-requested", "syncProcessId": sync_request.sync_process_id})


def _webhook_token() -> str:
    return str(aws_clients.secrets().get(os.environ["WEBHOOK_TOKEN_SECRET"], max_age=PARAMETER_MAX_AGE)).strip()


def _accepted(body: dict[str, Any]) -> Response[dict[str, Any]]:
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body)


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
