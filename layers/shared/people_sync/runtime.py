"""Builds a SyncContext per import target once per Lambda container, so warm invocations reuse clients
and connections. A target's modules are imported only when a sync goes to it."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from people_sync import aws_clients, callbacks, routing
from people_sync.charthop_client import ChartHopClient, default_retry
from people_sync.config import (
    AppSettings,
    callback_signing_key,
    charthop_token,
    csv_rules,
    import_options,
    target_token,
)
from people_sync.errors import TargetNotConfigured
from people_sync.loop_memory import DynamoDBLoopMemory
from people_sync.slots import DynamoDBSlots
from people_sync.sync_service import SyncContext
from people_sync.targets.base import ImportTarget, ProgressReporter
from people_sync.targets.charthop import ChartHopProgressReporter, ChartHopTarget


@cache
def sync_context(target: str = routing.CHARTHOP) -> SyncContext:
    """The context of syncs into `target` ("charthop", "orgvue", "elma365"; see routing.py)."""
    settings = AppSettings.from_env()
    if target not in routing.enabled_targets(settings):
        raise TargetNotConfigured(f"{target} is not configured in this deployment")
    charthop = ChartHopClient(
        charthop_token(settings),
        base_url=settings.charthop_base_url,
        timeout=(5.0, settings.charthop_read_timeout_seconds),
        retry=default_retry(backoff_factor=settings.charthop_retry_backoff_seconds),
    )
    import_target: ImportTarget
    reporter: ProgressReporter
    if target == routing.CHARTHOP:
        import_target = ChartHopTarget(charthop, settings.org_id, import_options(settings))
        reporter = ChartHopProgressReporter(
            charthop, settings.org_id, app_name=settings.app_name, app_user_id=settings.app_user_id
        )
    else:
        import_target = _further_target(target, settings)
        from people_sync.targets.log_reporter import LogProgressReporter

        reporter = LogProgressReporter(target)
    return SyncContext(
        settings=settings,
        charthop=charthop,
        target=import_target,
        reporter=reporter,
        s3=aws_clients.s3(),
        stepfunctions=aws_clients.stepfunctions(),
        csv_rules=csv_rules(settings),
        loop_memory=DynamoDBLoopMemory(settings.sync_table),
        slots=DynamoDBSlots(settings.sync_table, aws_clients.dynamodb()),
        folder=routing.folder_of_target(target, settings),
        callback_url_for=_signed_callback_urls(settings) if import_target.calls_back else None,
    )


def _signed_callback_urls(settings: AppSettings) -> Callable[[str], str]:
    """The signing key is read when the first URL is made (only the import starter makes them)."""
    return lambda sync_id: callbacks.callback_url(settings.target_callback_url, sync_id, callback_signing_key(settings))


def _further_target(target: str, settings: AppSettings) -> ImportTarget:
    retry = default_retry(backoff_factor=settings.charthop_retry_backoff_seconds)
    timeout = (5.0, settings.charthop_read_timeout_seconds)
    if target == routing.ORGVUE:
        from people_sync.targets.orgvue import OrgvueClient, OrgvueTarget

        orgvue = OrgvueClient(
            target_token(settings, target),
            base_url=settings.orgvue_base_url,
            tenant_id=settings.orgvue_tenant_id,
            dataset_id=settings.orgvue_dataset_id,
            timeout=timeout,
            retry=retry,
        )
        return OrgvueTarget(orgvue, default_action=settings.orgvue_default_action or None)
    from people_sync.targets.elma365 import Elma365Client, Elma365Target

    elma365 = Elma365Client(
        target_token(settings, target),
        base_url=settings.elma365_base_url,
        namespace=settings.elma365_namespace,
        code=settings.elma365_code,
        timeout=timeout,
        retry=retry,
    )
    return Elma365Target(
        elma365,
        slots=DynamoDBSlots(settings.sync_table, aws_clients.dynamodb()),
        chunk_rows=settings.elma365_chunk_rows,
    )


def reset() -> None:
    """Forget the cached contexts (tests and the offline stack switch settings between runs)."""
    sync_context.cache_clear()
    aws_clients.reset()
