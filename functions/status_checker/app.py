"""Status checker: one turn of the state machine's loop (getProcess, progress update, next wait)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from people_sync import sync_service
from people_sync.models import SyncState
from people_sync.runtime import sync_context

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = parse(event=event, model=SyncState)
    logger.append_keys(sync_process_id=state.sync_process_id, import_id=state.import_id)
    new_state = sync_service.check_import(sync_context(), state)
    logger.info("import checked", extra={"import_state": new_state.import_state, "attempt": new_state.poll.attempt})
    return new_state.to_json_dict()
