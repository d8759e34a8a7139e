"""Target callback: Orgvue calls this URL when an import finishes; the sync's waiting loop is woken.

The URL each import gets names its sync and carries a signature (callbacks.py): anything else is 401.
The callback's own query (status, traceId, tenantId) is stored for the next check, which reads the
import's result to decide DONE or ERROR: the callback only ends the wait early.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import UnauthorizedError
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from people_sync import aws_clients, callbacks
from people_sync.config import PARAMETER_MAX_AGE
from people_sync.loop_memory import DynamoDBLoopMemory, callback_received
from people_sync.tracing import TRACE_AWS

logger = Logger()
tracer = Tracer(patch_modules=TRACE_AWS)
metrics = Metrics()
app = APIGatewayRestResolver()
#: Query parameters of the callback kept for the check (our own `sync`/`sig` are not).
KEPT_PARAMETERS = ("status", "traceId", "tenantId")


@app.get("/callback/orgvue")
@tracer.capture_method
def orgvue_called_back() -> Response[dict[str, Any]]:
    query = app.current_event.query_string_parameters or {}
    sync_id = query.get(callbacks.SYNC_PARAMETER)
    if sync_id is None or not callbacks.is_signed(sync_id, query.get(callbacks.SIGNATURE_PARAMETER), _signing_key()):
        metrics.add_metric(name="CallbackUnauthorized", unit=MetricUnit.Count, value=1)
        raise UnauthorizedError("unsigned or wrongly signed callback")
    logger.append_keys(sync_process_id=sync_id)
    callback = {key: query[key] for key in KEPT_PARAMETERS if key in query}
    woke = callback_received(
        DynamoDBLoopMemory(os.environ["SYNC_TABLE"]), aws_clients.stepfunctions(), sync_id, callback
    )
    metrics.add_metric(name="CallbacksReceived", unit=MetricUnit.Count, value=1)
    logger.info("target called back", extra={"callback": callback, "woke_the_loop": woke})
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body={"accepted": True, "wokeTheLoop": woke}
    )


def _signing_key() -> str:
    return str(aws_clients.secrets().get(os.environ["CALLBACK_SIGNING_SECRET"], max_age=PARAMETER_MAX_AGE)).strip()


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
