"""Sync finalizer: marks the ChartHop sync process DONE or ERROR when the status loop ends."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from people_sync import org_tokens, sync_service
from people_sync.config import AppSettings
from people_sync.errors import ChartHopTokenRefused, OrgNotServed
from people_sync.models import StagedFile, StartRequest, SyncState
from people_sync.runtime import sync_context
from people_sync.tracing import TRACE_AWS_AND_TARGETS

logger = Logger()
tracer = Tracer(patch_modules=TRACE_AWS_AND_TARGETS)
metrics = Metrics()


EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return _finalize(event)
    except OrgNotServed as refused:  # uninstalled meanwhile: its token may be revoked; nothing is written there
        metrics.add_metric(name="OrgNotServed", unit=MetricUnit.Count, value=1)
        logger.warning("the sync's org is not synced any more; left as it is", extra={"reason": refused.user_message})
        return {"status": "ORG_NOT_SERVED", "message": refused.user_message}
    except ChartHopTokenRefused as error:  # the close's write was refused (close_sync freed the slot and turn anyway)
        org_id, sync_id = _sync_of(event)
        org_tokens.note_refusal(AppSettings.from_env(), org_id, error, sync_process_id=sync_id)
        return {"status": "TOKEN_REFUSED", "message": error.user_message}


def _sync_of(event: dict[str, Any]) -> tuple[str, str | None]:
    """The org and sync an event is about (a loop's state or start request, or an execution's input)."""
    data = json.loads(event["detail"]["input"]) if event.get("detail-type") == EXECUTION_STATUS_CHANGE else event
    return str(data.get("orgId") or AppSettings.from_env().org_id), data.get("syncProcessId")


def _finalize(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("detail-type") == EXECUTION_STATUS_CHANGE:
        return _close_abandoned_sync(event["detail"])
    error = event.get("error")
    if "importId" not in event:  # the loop's first task failed: no import was followed yet
        request = parse(event=event, model=StartRequest)
        logger.append_keys(sync_process_id=request.sync_process_id, target=request.target, org_id=request.org_id)
        ctx = sync_context(request.target, request.org_id, continuing=True)
        outcome = sync_service.start_failed(ctx, request, error or {})
    else:
        state = parse(event=event, model=SyncState)
        ctx = sync_context(state.target, state.org_id, continuing=True)
        logger.append_keys(
            sync_process_id=state.sync_process_id, import_id=state.import_id, target=state.target, org_id=state.org_id
        )
        outcome = sync_service.workflow_failed(ctx, state, error) if error else sync_service.finish_sync(ctx, state)
    if outcome["status"] == "ALREADY_CLOSED":
        logger.info("the sync was already closed, or is not this app's")
        return outcome
    # SyncsDone / SyncsFailed are counted per target and org where every sync is closed (sync_history.sync_closed).
    logger.info("sync finished", extra={"outcome": outcome})
    return outcome


def _close_abandoned_sync(detail: dict[str, Any]) -> dict[str, Any]:
    """EventBridge says an execution FAILED, TIMED_OUT or was ABORTED: no sync may stay "running"."""
    started = json.loads(detail["input"])
    sync_id, target = started["syncProcessId"], started.get("target", "charthop")
    file = StagedFile.model_validate(started["file"]) if started.get("file") else None
    request = StartRequest.model_validate(started) if "kind" in started else None
    org_id = started.get("orgId")  # every execution's input is a StartRequest, which names the sync's org
    logger.append_keys(sync_process_id=sync_id, execution_status=detail["status"], org_id=org_id)
    ctx = sync_context(target, org_id, continuing=True)
    outcome = sync_service.execution_ended(ctx, sync_id, detail["status"], file, request)
    if outcome is None:
        logger.info("execution ended; the sync was already closed")
        return {"status": "ALREADY_CLOSED"}
    metrics.add_metric(name="AbandonedSyncsClosed", unit=MetricUnit.Count, value=1)
    logger.warning("closed a sync whose execution ended abnormally", extra={"outcome": outcome})
    return outcome
