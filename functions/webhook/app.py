"""ChartHop webhook: acknowledge fast, hand "Sync Now" to the import starter asynchronously."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import BadRequestError
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from people_sync import api_assumptions, aws_clients
from people_sync.models import ChartHopEvent, SyncNowRequest

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver()


@app.post("/webhook")
@tracer.capture_method
def receive_event() -> Response[dict[str, Any]]:
    try:
        event = parse(event=app.current_event.json_body, model=ChartHopEvent)
    except (ValidationError, json.JSONDecodeError, TypeError) as error:
        raise BadRequestError("body is not a ChartHop event") from error
    app_name = os.environ["CHARTHOP_APP_NAME"]
    logger.append_keys(event_id=event.id, event_type=event.type)
    if not api_assumptions.is_sync_now_event(event.model_dump(by_alias=True), app_name) or not event.entity_id:
        logger.info("event ignored")
        return _accepted({"accepted": True, "action": "ignored"})
    request = SyncNowRequest(
        org_id=event.org_id or os.environ["CHARTHOP_ORG_ID"],
        sync_process_id=event.entity_id,
        requested_by=event.user_id,
    )
    aws_clients.lambda_client().invoke(
        FunctionName=os.environ["IMPORT_STARTER_FUNCTION"],
        InvocationType="Event",
        Payload=json.dumps(request.to_json_dict()).encode(),
    )
    metrics.add_metric(name="SyncNowAccepted", unit=MetricUnit.Count, value=1)
    logger.info("sync requested", extra={"sync_process_id": request.sync_process_id})
    return _accepted({"accepted": True, "action": "sync-started", "syncProcessId": request.sync_process_id})


def _accepted(body: dict[str, Any]) -> Response[dict[str, Any]]:
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body)


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
