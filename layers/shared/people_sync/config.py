"""Runtime configuration: plain values from the environment, secrets and tunables via Powertools parameters."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from people_sync import aws_clients
from people_sync.errors import TargetNotConfigured
from people_sync.models import ImportOptions

if TYPE_CHECKING:
    from people_sync.csv_checks import CsvRules

#: Seconds a secret or the settings parameter is cached inside a warm container.
PARAMETER_MAX_AGE = 300


@dataclass(frozen=True)
class AppSettings:
    """Settings every function reads from its environment (set by template.yaml)."""

    org_id: str
    app_name: str
    app_user_id: str
    charthop_base_url: str
    token_secret_name: str
    settings_parameter_name: str
    staging_bucket: str
    staging_prefix: str
    state_machine_arn: str
    import_starter_function: str
    poll_initial_seconds: int
    poll_max_seconds: int
    import_timeout_seconds: int
    import_on_upload: bool = True
    charthop_retry_backoff_seconds: float = 0.5
    charthop_read_timeout_seconds: float = 60.0
    max_unavailable_checks: int = 10
    #: DynamoDB table of the status loop's memory and the import slots.
    sync_table: str = ""
    #: Further targets (routing.py): a target is enabled when its base URL is set.
    orgvue_base_url: str = ""
    orgvue_tenant_id: str = ""
    orgvue_dataset_id: str = ""
    orgvue_default_action: str = ""
    #: Orgvue's `implicitDelete`: True makes each import a refresh that DELETES every item missing from the file.
    orgvue_implicit_delete: bool = False
    #: Orgvue's `idKey` (the dataset property items are matched by); empty: `autoId=true` is sent instead.
    orgvue_id_key: str = ""
    #: Orgvue's `dateFormat`: YYYY-MM-DD (Orgvue's default), DD/MM/YYYY or MM/DD/YYYY.
    orgvue_date_format: str = "YYYY-MM-DD"
    elma365_base_url: str = ""
    elma365_namespace: str = ""
    elma365_code: str = ""
    elma365_chunk_rows: int = 50_000
    #: ELMA365 directory the whole file is uploaded into and imported from in one import (seed 004 recommends
    #: a directory above 50,000 entries); empty: temporary files, in chunks of `elma365_chunk_rows`.
    elma365_directory_id: str = ""
    #: Secret holding the further targets' API tokens as JSON: {"orgvue": "...", "elma365": "..."}.
    target_tokens_secret_name: str = ""
    #: Where targets that call back (Orgvue) call, and the secret that signs each sync's callback URL.
    target_callback_url: str = ""
    callback_signing_secret_name: str = ""
    #: This app's ChartHop app id: only processes carrying it are ever touched (a "Sync Now" for a process of
    #: another app starts nothing). Empty: a process must carry the app id its delivery names.
    app_id: str = ""
    #: How long a start queued behind another file of the same target waits before it asks again.
    queue_wait_seconds: int = 5
    #: A file gets a free turn only this long after it was staged (QueueSettleSeconds), so that a file staged
    #: before it whose S3 event or trigger is slower still goes first (target_queue.SETTLE_SECONDS explains).
    queue_settle_seconds: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        env = os.environ if env is None else env
        return cls(
            org_id=env["CHARTHOP_ORG_ID"],
            app_name=env["CHARTHOP_APP_NAME"],
            app_user_id=env.get("CHARTHOP_APP_USER_ID", ""),
            charthop_base_url=env.get("CHARTHOP_BASE_URL", "https://api.charthop.com"),
            token_secret_name=env["CHARTHOP_TOKEN_SECRET"],
            settings_parameter_name=env["SETTINGS_PARAMETER"],
            staging_bucket=env.get("STAGING_BUCKET", ""),
            staging_prefix=env.get("STAGING_PREFIX", "staging/"),
            state_machine_arn=env.get("STATE_MACHINE_ARN", ""),
            import_starter_function=env.get("IMPORT_STARTER_FUNCTION", ""),
            poll_initial_seconds=int(env.get("POLL_INITIAL_SECONDS", "5")),
            poll_max_seconds=int(env.get("POLL_MAX_SECONDS", "60")),
            import_timeout_seconds=int(env.get("IMPORT_TIMEOUT_SECONDS", "3900")),
            import_on_upload=env.get("IMPORT_ON_UPLOAD", "true").lower() == "true",
            charthop_retry_backoff_seconds=float(env.get("CHARTHOP_RETRY_BACKOFF_SECONDS", "0.5")),
            charthop_read_timeout_seconds=float(env.get("CHARTHOP_READ_TIMEOUT_SECONDS", "60")),
            max_unavailable_checks=int(env.get("MAX_UNAVAILABLE_CHECKS", "10")),
            sync_table=env.get("SYNC_TABLE", ""),
            orgvue_base_url=env.get("ORGVUE_BASE_URL", ""),
            orgvue_tenant_id=env.get("ORGVUE_TENANT_ID", ""),
            orgvue_dataset_id=env.get("ORGVUE_DATASET_ID", ""),
            orgvue_default_action=env.get("ORGVUE_DEFAULT_ACTION", ""),
            orgvue_implicit_delete=env.get("ORGVUE_IMPLICIT_DELETE", "false").strip().lower() == "true",
            orgvue_id_key=env.get("ORGVUE_ID_KEY", ""),
            orgvue_date_format=env.get("ORGVUE_DATE_FORMAT", "") or "YYYY-MM-DD",
            elma365_base_url=env.get("ELMA365_BASE_URL", ""),
            elma365_namespace=env.get("ELMA365_NAMESPACE", ""),
            elma365_code=env.get("ELMA365_CODE", ""),
            elma365_chunk_rows=int(env.get("ELMA365_CHUNK_ROWS", "50000")),
            elma365_directory_id=env.get("ELMA365_DIRECTORY_ID", "").strip(),
            target_tokens_secret_name=env.get("TARGET_TOKENS_SECRET", ""),
            target_callback_url=env.get("TARGET_CALLBACK_URL", ""),
            callback_signing_secret_name=env.get("CALLBACK_SIGNING_SECRET", ""),
            app_id=env.get("CHARTHOP_APP_ID", ""),
            queue_wait_seconds=int(env.get("QUEUE_WAIT_SECONDS", "5")),
            queue_settle_seconds=float(env.get("QUEUE_SETTLE_SECONDS", "2")),
        )


def charthop_token(settings: AppSettings) -> str:
    """The app's ChartHop API token, from Secrets Manager (cached, never logged)."""
    value = aws_clients.secrets().get(settings.token_secret_name, max_age=PARAMETER_MAX_AGE)
    return str(value).strip()


def target_token(settings: AppSettings, target: str) -> str:
    """A further target's API token, from the JSON secret of target tokens (cached, never logged)."""
    tokens = aws_clients.secrets().get(settings.target_tokens_secret_name, transform="json", max_age=PARAMETER_MAX_AGE)
    token = tokens.get(target) if isinstance(tokens, dict) else None
    if not token:
        raise TargetNotConfigured(
            f'No API token for {target}: put it under "{target}" in the secret {settings.target_tokens_secret_name}.'
        )
    return str(token).strip()


def callback_signing_key(settings: AppSettings) -> str:
    return str(aws_clients.secrets().get(settings.callback_signing_secret_name, max_age=PARAMETER_MAX_AGE)).strip()


def _settings_document(settings: AppSettings) -> dict[str, Any]:
    raw = aws_clients.ssm_parameters().get(
        settings.settings_parameter_name, transform="json", max_age=PARAMETER_MAX_AGE
    )
    return raw if isinstance(raw, dict) else {}


def import_options(settings: AppSettings) -> ImportOptions:
    """importDataCsv options, from the SSM settings parameter so they change without a redeploy."""
    return ImportOptions.model_validate(_settings_document(settings).get("importOptions", {}))


def csv_rules(settings: AppSettings) -> CsvRules:
    """Pre-flight limits (size, rows, required columns), from the same settings parameter."""
    # Imported here: the webhook reads PARAMETER_MAX_AGE from this module but never checks a CSV.
    from people_sync.csv_checks import CsvRules

    return CsvRules.model_validate(_settings_document(settings).get("csvRules", {}))
