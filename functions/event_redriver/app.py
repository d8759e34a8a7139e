"""Failed-events redriver: on a schedule, sends each event in the failed-events queue to its function again
(an upload whose sync could not be opened while ChartHop was down is then imported once it answers)."""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from people_sync.event_redrive import redrive_failed_events

logger = Logger()
tracer = Tracer()
metrics = Metrics()

#: Seconds kept back from the Lambda's remaining time: the run stops redriving before it is killed.
MARGIN_SECONDS = 15.0


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - MARGIN_SECONDS
    results = redrive_failed_events(
        boto3.client("sqs"),
        boto3.client("lambda"),
        os.environ["FAILED_EVENTS_QUEUE_URL"],
        eventbridge_target=os.environ["SYNC_FINALIZER_FUNCTION"],
        max_age_seconds=float(os.environ.get("AUTO_REDRIVE_MAX_AGE_HOURS", "24")) * 3600,
        max_messages=int(os.environ.get("AUTO_REDRIVE_MAX_MESSAGES", "50")),
        retry_visibility_seconds=int(os.environ.get("AUTO_REDRIVE_RETRY_SECONDS", "240")),
        deadline=deadline,
    )
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    metrics.add_metric(name="FailedEventsRedriven", unit=MetricUnit.Count, value=counts.get("redriven", 0))
    if results:
        logger.info("failed-events queue redriven", extra={"outcomes": counts})
    return {"outcomes": counts}
