"""Import starter: a staged CSV (S3 event) or a "Sync Now" request becomes a sync with its status loop, and
the loop's first task (`{"startSync": ...}`) checks the file as it streams to the target and starts the import.
A start queued behind another file of its target parks its loop (`{"awaitTurn": ..., "taskToken": ...}`) until
the turn is freed.

The triggers are idempotent (Powertools idempotency on DynamoDB, plus the start journal and the loop's
execution name): one sync per S3 object version and per sync process, however often S3, Lambda or the
webhook deliver the same event. The import itself runs in the loop (see people_sync/sync_start.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext

from people_sync import aws_clients, org_tokens, routing, sync_start
from people_sync.charthop_client import time_budget
from people_sync.config import AppSettings
from people_sync.errors import ChartHopTokenRefused, OrgNotServed, TargetNotConfigured
from people_sync.models import StartRequest, SyncNowRequest
from people_sync.runtime import sync_context
from people_sync.tracing import TRACE_AWS_AND_TARGETS

logger = Logger()
tracer = Tracer(patch_modules=TRACE_AWS_AND_TARGETS)
metrics = Metrics()
#: A version of an S3 object never changes, so a replay a week later is still a duplicate.
idempotency = IdempotencyConfig(expires_after_seconds=7 * 24 * 3600, raise_on_no_idempotency_key=True)
#: A staged file is the same delivery whatever else its event says (the event time only orders the queue).
file_idempotency = IdempotencyConfig(
    expires_after_seconds=7 * 24 * 3600,
    raise_on_no_idempotency_key=True,
    event_key_jmespath="[bucket, key, version_id]",
)
#: A trigger takes a few calls (open the sync, start its loop); an attempt that died holds its "in progress"
#: record only this long, so Lambda's retry (a minute later) continues it instead of skipping it as a duplicate.
TRIGGER_SECONDS = float(os.environ.get("TRIGGER_IN_PROGRESS_SECONDS", "45"))
#: Seconds left for closing a sync after the last target call of a start.
CALL_MARGIN_SECONDS = 10


class _TriggerDeadline:
    """The invocation's context, with the remaining time Powertools reads for "in progress" records capped
    at TRIGGER_SECONDS (the function's own timeout is sized for the import task, not for a trigger)."""

    def __init__(self, context: LambdaContext) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def get_remaining_time_in_millis(self) -> int:
        return min(self._context.get_remaining_time_in_millis(), int(TRIGGER_SECONDS * 1000))


@cache
def _idempotency_store(key_prefix: str) -> DynamoDBPersistenceLayer:
    """Built at first use, once per container and key prefix (a store keeps the configuration it was first
    used with), on the app's one DynamoDB client (the sync context's slots and loop memory use it too): like
    every AWS client here it is not created while the module is imported."""
    return DynamoDBPersistenceLayer(
        table_name=os.environ.get("IDEMPOTENCY_TABLE", "people-sync-idempotency"), boto3_client=aws_clients.dynamodb()
    )


def start_sync_now(request: dict[str, Any]) -> dict[str, Any]:
    sync_request = SyncNowRequest.model_validate(request)
    try:
        ctx = sync_context(org_id=sync_request.org_id)
    except OrgNotServed as refused:  # paused or removed since the webhook let it through: nothing starts
        logger.warning("Sync Now for an org that is not synced now; ignored", extra={"reason": refused.user_message})
        metrics.add_metric(name="OrgNotServed", unit=MetricUnit.Count, value=1)
        return {"syncProcessId": None}
    sync_id = sync_start.sync_now_requested(
        ctx, sync_request.org_id, sync_request.sync_process_id, app_id=sync_request.app_id
    )
    return {"syncProcessId": sync_id}


def start_file_sync(object_version: dict[str, Any]) -> dict[str, Any]:
    settings = AppSettings.from_env()
    key = object_version["key"]
    if key.endswith("/"):  # a folder marker (staging/<org>/orgvue/): nothing to import, nobody to tell
        logger.info("a folder marker, not a file; nothing to import")
        return {"key": key, "syncProcessId": None}
    target, org = routing.target_for_key(key, settings), routing.org_for_key(key, settings)
    try:
        try:
            ctx = sync_context(target, org)
        except TargetNotConfigured as error:
            # The org does not feed the target, or has no token for it yet: the file is moved aside with a report
            # and the refusal is shown in the org's own ChartHop (never another org's); nothing starts.
            metrics.add_metric(name="TargetNotConfigured", unit=MetricUnit.Count, value=1)
            owner = sync_context(routing.CHARTHOP, org)
            sync_start.reject_object(owner, **_without_size(object_version), reason=error.user_message, code=error.code)
            return {"key": key, "syncProcessId": None}
    except OrgNotServed as refused:  # staging/<orgId>/ of an org not synced now: kept or set aside, shown nowhere
        metrics.add_metric(name="OrgNotServed", unit=MetricUnit.Count, value=1)
        sync_start.object_of_unserved_org(aws_clients.s3(), refused, **object_version_without_time(object_version))
        return {"key": key, "syncProcessId": None}
    try:
        sync_id = sync_start.object_staged(ctx, **object_version)
    except ChartHopTokenRefused as refused:  # recorded on the org's entry; retried, then kept as a failed event
        org_tokens.note_refusal(ctx.settings, ctx.org_id, refused)
        raise
    return {"key": key, "syncProcessId": sync_id}


def begin_sync(payload: dict[str, Any]) -> dict[str, Any]:
    """The status loop's first task: returns the loop's state, or no `importId` when there is nothing to
    follow (refused and closed, or not this app's)."""
    request = StartRequest.model_validate(payload)
    logger.append_keys(sync_process_id=request.sync_process_id, target=request.target)
    ctx = sync_context(request.target, request.org_id)
    try:
        state = sync_start.begin_sync(ctx, request)
    except ChartHopTokenRefused as refused:  # recorded; the state machine retries, then the finalizer closes it
        org_tokens.note_refusal(ctx.settings, ctx.org_id, refused, sync_process_id=request.sync_process_id)
        raise
    if state is None:
        return {"syncProcessId": request.sync_process_id, "started": False}
    if isinstance(state, sync_start.Queued):
        logger.info("queued behind an earlier file", extra={"ahead": state.ahead})
        queued = {"queued": True, "queueWaitSeconds": state.wait_seconds, "queueSettling": state.settling}
        return {**request.to_json_dict(), **queued}
    metrics.add_metric(name="ImportsStarted", unit=MetricUnit.Count, value=1)
    return state.to_json_dict()


def await_turn(payload: dict[str, Any], task_token: str) -> dict[str, Any]:
    """The loop's WaitForTurn task: parks the start's task token until the target's turn is freed (or wakes it
    at once when the turn is free already); the loop then asks for the turn again (StartImport)."""
    request = StartRequest.model_validate(payload)
    logger.append_keys(sync_process_id=request.sync_process_id, target=request.target)
    settling = payload.get("queueSettling") is True  # parked to wait out the settle time, not for a file ahead
    sync_start.await_turn(sync_context(request.target, request.org_id), request, task_token, settling=settling)
    return {"syncProcessId": request.sync_process_id, "parked": True}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "awaitTurn" in event:
        return await_turn(event["awaitTurn"], event["taskToken"])
    if "startSync" in event:
        # Every target call ends before the function would be killed, so a slow target fails the start
        # with a message instead of a timeout.
        with time_budget(context.get_remaining_time_in_millis() / 1000 - CALL_MARGIN_SECONDS):
            return begin_sync(event["startSync"])
    for config in (idempotency, file_idempotency):
        config.register_lambda_context(_TriggerDeadline(context))  # type: ignore[arg-type]
    if "Records" not in event:
        # Only "Sync Now" is parsed with the Powertools parser (~20 ms of its own on top of pydantic).
        from aws_lambda_powertools.utilities.parser import parse

        request = parse(event=event, model=SyncNowRequest)
        logger.append_keys(sync_process_id=request.sync_process_id)
        key = request.model_dump(mode="json", include=_SYNC_NOW_KEY)
        return _triggered([_once(start_sync_now, "sync-now", idempotency, request=key)])
    # Only the upload path reads S3 events; importing the data classes package costs a "Sync Now" ~10 ms.
    from aws_lambda_powertools.utilities.data_classes import S3Event

    started = []
    for record in S3Event(event).records:
        s3_object = record.s3.get_object
        logger.append_keys(s3_key=s3_object.key)
        version = {
            "bucket": record.s3.bucket.name,
            "key": unquote_plus(s3_object.key),
            "version_id": s3_object.version_id,
            "size": s3_object.size,
            "staged_at": _epoch(record.event_time),
        }
        started.append(_once(start_file_sync, "s3-object", file_idempotency, object_version=version))
    return _triggered(started)


def object_version_without_time(object_version: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in object_version.items() if key != "staged_at"}


def _without_size(object_version: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in object_version.items() if key not in ("size", "staged_at")}


#: What identifies a "Sync Now" request: ChartHop's sync process (not who pressed or when).
_SYNC_NOW_KEY = {"org_id", "sync_process_id", "app_id"}


def _epoch(event_time: str) -> float | None:
    """S3's eventTime (ISO 8601, milliseconds): the staging order of files staged in the same second."""
    try:
        return datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return None


def _once(
    function: Callable[..., dict[str, Any]],
    key_prefix: str,
    config: IdempotencyConfig,
    **argument: dict[str, Any],
) -> dict[str, Any]:
    """Runs `function` once per value of its one argument (Powertools idempotency, keyed `key_prefix#hash`)."""
    (name,) = argument
    once = idempotent_function(
        function,
        data_keyword_argument=name,
        persistence_store=_idempotency_store(key_prefix),
        config=config,
        key_prefix=key_prefix,
    )
    try:
        result: dict[str, Any] = once(**argument)
    except IdempotencyAlreadyInProgressError:
        # Either a duplicate arriving while the first is handled, or the retry of an attempt that died:
        # fail, so Lambda delivers it again once the "in progress" record has expired (TRIGGER_SECONDS).
        logger.warning("delivery while an earlier one is in progress; failing so that it is retried")
        metrics.add_metric(name="DuplicateDeliveries", unit=MetricUnit.Count, value=1)
        raise
    return result


def _triggered(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"syncProcessIds": [result["syncProcessId"] for result in results if result.get("syncProcessId")]}
