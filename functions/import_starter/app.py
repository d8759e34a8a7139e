"""Import starter: a staged CSV (S3 event) or a "Sync Now" request becomes a ChartHop import + status loop."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from people_sync import sync_service
from people_sync.errors import InvalidStagedFile
from people_sync.models import SyncNowRequest
from people_sync.runtime import sync_context
from people_sync.staging import staged_file_from_s3_record

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ctx = sync_context()
    if "Records" not in event:
        request = parse(event=event, model=SyncNowRequest)
        logger.append_keys(sync_process_id=request.sync_process_id)
        state = sync_service.sync_now(ctx, request.org_id, request.sync_process_id)
        return _started([state.import_id] if state else [])
    started = []
    for record in S3Event(event).records:
        s3_object = record.s3.get_object
        try:
            staged = staged_file_from_s3_record(
                record.s3.bucket.name,
                s3_object.key,
                s3_object.version_id,
                s3_object.size,
                prefix=ctx.settings.staging_prefix,
            )
        except InvalidStagedFile as error:
            logger.error("staged object ignored", extra={"key": s3_object.key, "reason": error.user_message})
            continue
        logger.append_keys(s3_key=staged.key)
        state = sync_service.file_dropped(ctx, staged)
        if state:
            started.append(state.import_id)
    return _started(started)


def _started(import_ids: list[str]) -> dict[str, Any]:
    metrics.add_metric(name="ImportsStarted", unit=MetricUnit.Count, value=len(import_ids))
    return {"importIds": import_ids}
