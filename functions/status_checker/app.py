"""Status checker: one entry of the state machine's FollowImport task (check the import, move the progress
bar, then hand a new state back or leave the task waiting on its token)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from people_sync import org_tokens, status_loop
from people_sync.charthop_client import time_budget
from people_sync.errors import ChartHopTokenRefused
from people_sync.models import LoopTaskEvent
from people_sync.runtime import sync_context
from people_sync.tracing import TRACE_AWS_AND_TARGETS

logger = Logger()
#: Seconds left for recording the check's outcome after the last target call.
CALL_MARGIN_SECONDS = 5
tracer = Tracer(patch_modules=TRACE_AWS_AND_TARGETS)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = parse(event=event, model=LoopTaskEvent)
    state = task.state
    logger.append_keys(
        sync_process_id=state.sync_process_id, import_id=state.import_id, target=state.target, org_id=state.org_id
    )
    # Every ChartHop/target call ends before the function would be killed (a slow target fails the check
    # in bounded time, and the check lease outlives the check).
    remaining = context.get_remaining_time_in_millis() / 1000
    with time_budget(remaining - CALL_MARGIN_SECONDS):
        ctx = sync_context(state.target, state.org_id, continuing=True)
        try:
            outcome = status_loop.follow_import(ctx, state, task.task_token, lease_seconds=remaining + 1)
        except ChartHopTokenRefused as refused:  # recorded; the state machine retries, then the finalizer closes
            org_tokens.note_refusal(ctx.settings, ctx.org_id, refused, sync_process_id=state.sync_process_id)
            raise
    logger.info("import followed", extra={"outcome": outcome, "attempt": state.poll.attempt})
    return {"outcome": outcome}
