"""Builds the SyncContext once per Lambda container, so warm invocations reuse clients and connections."""

from __future__ import annotations

from functools import cache

from people_sync import aws_clients
from people_sync.charthop_client import ChartHopClient, default_retry
from people_sync.config import AppSettings, charthop_token, csv_rules, import_options
from people_sync.loop_memory import DynamoDBLoopMemory
from people_sync.sync_service import SyncContext
from people_sync.targets.charthop import ChartHopProgressReporter, ChartHopTarget


@cache
def sync_context() -> SyncContext:
    settings = AppSettings.from_env()
    client = ChartHopClient(
        charthop_token(settings),
        base_url=settings.charthop_base_url,
        timeout=(5.0, settings.charthop_read_timeout_seconds),
        retry=default_retry(backoff_factor=settings.charthop_retry_backoff_seconds),
    )
    return SyncContext(
        settings=settings,
        charthop=client,
        target=ChartHopTarget(client, settings.org_id, import_options(settings)),
        reporter=ChartHopProgressReporter(client, settings.org_id),
        s3=aws_clients.s3(),
        stepfunctions=aws_clients.stepfunctions(),
        csv_rules=csv_rules(settings),
        loop_memory=DynamoDBLoopMemory(settings.sync_table),
    )


def reset() -> None:
    """Forget the cached context (tests and the offline stack switch settings between runs)."""
    sync_context.cache_clear()
    aws_clients.reset()
