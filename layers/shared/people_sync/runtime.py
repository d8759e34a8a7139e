"""Builds a SyncContext per import target and org once per Lambda container, so warm invocations reuse
clients and connections. A target's modules are imported only when a sync goes to it.

Each ChartHop org gets its own context: `resolve_org` gives its token secret, its app user and its settings
(its overrides over the stack's defaults), so one org's token is never sent with another org's requests.
Each org also gets its own context per further target (Orgvue, ELMA365) it feeds: the target's address is its
settings' (the stack's parameters, with its `orgvue.*` / `elma365.*` settings over them) and its token is read
from the org's own secret for that target; only the stack's own org may use the stack's TargetTokensSecret.

Tokens and settings are read again on each use through Powertools' cache (config.PARAMETER_MAX_AGE), so a
rotated token or changed settings reach a warm container within that age; the org's registry entry is read
on each use (one GetItem), so a pause stops new syncs at once. The context is rebuilt only when a value
changed, and keeps every HTTP client whose own inputs stayed the same (its connections stay warm).

An org's ChartHop client asks the org's OrgToken (org_tokens.py) for the token of each request: one per org
and token secret in the container, told what the secret holds on each use, refreshed before a token fetched
with getAccessToken expires and once when ChartHop refuses it (another org than the stack's own: fetched with
the stack's own org's token). A new token therefore never rebuilds a context.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from people_sync import aws_clients, callbacks, routing, sync_history
from people_sync.charthop_apps import AccessToken, ChartHopApps
from people_sync.charthop_client import ChartHopClient, default_retry
from people_sync.config import (
    PARAMETER_MAX_AGE,
    AppSettings,
    callback_signing_key,
    target_token,
)
from people_sync.errors import ChartHopRejected, OrgNotServed, TargetNotConfigured, TargetNotEnabled
from people_sync.loop_memory import DynamoDBLoopMemory
from people_sync.models import ImportOptions
from people_sync.org_registry import OrgConfig, OrgRegistry, OrgvueConfig, StackDefaults, resolve_org
from people_sync.org_tokens import OrgToken
from people_sync.slots import DynamoDBSlots
from people_sync.start_journal import DynamoDBStartJournal
from people_sync.sync_service import SyncContext
from people_sync.target_queue import DynamoDBTargetQueue
from people_sync.targets.base import ImportTarget, ProgressReporter
from people_sync.targets.charthop import ChartHopProgressReporter, ChartHopTarget

if TYPE_CHECKING:
    from people_sync.csv_checks import CsvRules

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Inputs:
    """What a context is built from; a context is rebuilt when any of it changed."""

    #: The stack's settings with the org's own values (app user, token secret, ImportOnUpload) in place.
    settings: AppSettings
    org: OrgConfig
    #: The org's token (one object per org and secret in the container; it follows the secret itself).
    charthop_token: OrgToken
    csv_rules: CsvRules
    #: ChartHop's import options (read for ChartHop contexts only).
    import_options: ImportOptions = field(default_factory=ImportOptions)
    #: A further target's API token (Orgvue and ELMA365 contexts only).
    target_token: str | None = None


@dataclass(frozen=True)
class _Built:
    inputs: _Inputs
    context: SyncContext


_built: dict[tuple[str, str], _Built] = {}
#: Each org's token in this container, by (org, token secret, app user: a reinstall may change it).
_tokens: dict[tuple[str, str, str], OrgToken] = {}
#: Lambda runs one invocation per container at a time; the offline stack runs every function in one process,
#: on threads. There a context is built (compared, made, stored) by one thread at a time per target and org,
#: and no lock is held while its inputs are read (a GetItem, maybe a secret): one lock around the reads made
#: every invocation of every org wait in one line for the others' AWS calls (issue 13's 200-org bench).
_guard = threading.Lock()
_building: dict[tuple[str, str], threading.Lock] = {}


def _build_lock(key: tuple[str, str]) -> threading.Lock:
    with _guard:
        return _building.setdefault(key, threading.Lock())


def sync_context(target: str = routing.CHARTHOP, org_id: str | None = None, *, continuing: bool = False) -> SyncContext:
    """The context of syncs into `target` ("charthop", "orgvue", "elma365"; see routing.py) for `org_id`
    (ChartHop's org; None: the stack's own org). Raises OrgNotServed when the deployment does not sync for the
    org, TargetNotEnabled when the org does not feed `target`, TargetNotConfigured when it has no token for it;
    `continuing` (a sync already started: its checks, its close) still serves a paused org, see
    org_registry.resolve_org."""
    settings = AppSettings.from_env()
    # A loop started before further targets were per org names its target's folder ("orgvue") as its org.
    legacy = target != routing.CHARTHOP and org_id in routing.TARGET_FOLDERS.values()
    org = org_id if org_id and not legacy else settings.org_id
    key = (target, org)
    try:
        inputs = _read_inputs(target, settings, org, continuing=continuing)
    except GetParameterError:
        previous = _built.get(key)
        if previous is None:
            raise
        # A Secrets Manager or SSM outage must not fail syncs that the last values can run.
        logger.warning("could not read tokens or settings again; keeping the last ones", exc_info=True)
        return previous.context
    with _build_lock(key):
        previous = _built.get(key)
        if previous is not None and previous.inputs == inputs:
            return previous.context
        context = _build(target, inputs, previous)
        _built[key] = _Built(inputs, context)
        return context


def _read_inputs(target: str, stack: AppSettings, org_id: str, *, continuing: bool) -> _Inputs:
    """Reads through Powertools' cache: AWS is asked only when a value is older than PARAMETER_MAX_AGE."""
    if target != routing.CHARTHOP and target not in routing.TARGET_FOLDERS:
        raise TargetNotConfigured(f"{target} is not configured in this deployment")
    resolved = resolve_org(
        org_id,
        registry=OrgRegistry.from_env(),
        defaults=StackDefaults.from_settings(stack),
        continuing=continuing,
    )
    if not isinstance(resolved, OrgConfig):
        raise OrgNotServed(resolved.org_id, resolved.reason, resolved.message)
    settings = replace(
        stack,
        app_user_id=resolved.app_user_id,
        token_secret_name=resolved.token_secret,
        import_on_upload=resolved.settings.import_on_upload,
    )
    if target != routing.CHARTHOP:
        settings = _with_target(settings, target, resolved, continuing=continuing)
    token = _org_token(stack, resolved, _read_secret(resolved.token_secret))
    rules = resolved.settings.csv_rules()
    if target == routing.CHARTHOP:
        return _Inputs(settings, resolved, token, rules, import_options=resolved.settings.import_options)
    return _Inputs(settings, resolved, token, rules, target_token=_target_token(settings, target, resolved))


def _with_target(settings: AppSettings, target: str, org: OrgConfig, *, continuing: bool) -> AppSettings:
    """The settings with the org's own address of `target` in place of the stack's. Raises TargetNotEnabled
    when the org's settings do not feed it; a sync already running (`continuing`) is still followed to its
    end (and closed) at the address its settings give, as a paused org's is."""
    config = org.settings.target_config(target, fed_only=not continuing)
    if config is None:
        fed = ", ".join(org.settings.further_targets) or "none"
        folder = routing.folder_of_target(target, settings, org.org_id)
        raise TargetNotEnabled(
            f"Org {org.org_id} does not feed {routing.DISPLAY_NAMES[target]}: its settings' furtherTargets "
            f"are {fed}, so files staged under {settings.staging_prefix}{folder}/ are not imported. An operator "
            f"enables it with `orgs set {org.org_id} furtherTargets=...,{target}` (and its token with "
            f"`orgs set-token {org.org_id} --target {target}`); then stage the file again."
        )
    if isinstance(config, OrgvueConfig):
        return replace(
            settings,
            orgvue_base_url=config.base_url,
            orgvue_tenant_id=config.tenant_id,
            orgvue_dataset_id=config.dataset_id,
            orgvue_default_action=config.default_action,
            orgvue_id_key=config.id_key,
            orgvue_date_format=config.date_format,
            orgvue_implicit_delete=config.implicit_delete,
        )
    return replace(
        settings,
        elma365_base_url=config.base_url,
        elma365_namespace=config.namespace,
        elma365_code=config.code,
        elma365_chunk_rows=config.chunk_rows,
        elma365_directory_id=config.directory_id,
    )


def _target_token(settings: AppSettings, target: str, org: OrgConfig) -> str:
    """The org's API token for a further target: from its own secret; the stack's own org without one uses
    the stack's TargetTokensSecret, as it always did. Never another org's, never the stack's for another org."""
    secret = org.target_secrets.get(target)
    if secret:
        token = str(aws_clients.secrets().get(secret, max_age=PARAMETER_MAX_AGE)).strip()
        if token:
            return token
    elif org.org_id == settings.org_id:
        return target_token(settings, target)
    raise TargetNotConfigured(
        f"No API token for {target} for org {org.org_id}: an operator stores it with "
        f"`orgs set-token {org.org_id} --target {target}`."
    )


def _read_secret(name: str, *, fresh: bool = False) -> str:
    return str(aws_clients.secrets().get(name, max_age=PARAMETER_MAX_AGE, force_fetch=fresh)).strip()


def _org_token(stack: AppSettings, org: OrgConfig, secret_value: str) -> OrgToken:
    """The org's token in this container, told what its secret (cached read) and registry entry say now."""
    key = (org.org_id, org.token_secret, org.app_user_id)
    with _guard:  # inputs are read outside the build lock: one token per key, whichever thread comes first
        token = _tokens.get(key)
        created = token is None
        if token is None:
            own_org = org.org_id == stack.org_id
            token = OrgToken(
                org.org_id,
                secret_value,
                issued_at=org.token_issued_at,
                expires_at=org.token_expires_at,
                mint=None if own_org or not org.app_user_id else _minter(stack, org),
                keep=None if own_org else _keeper(org),
                read_secret=lambda: _read_secret(org.token_secret, fresh=True),
            )
            _tokens[key] = token
    if not created:
        token.observe(secret_value, issued_at=org.token_issued_at, expires_at=org.token_expires_at)
    return token


def _minter(stack: AppSettings, org: OrgConfig) -> Callable[[], AccessToken]:
    """getAccessToken for the org's install, asked with the stack's own org's token (the app's developer org,
    an assumption: see api_assumptions.CHARTHOP_ACCESS_TOKEN_CALLER)."""

    def mint() -> AccessToken:
        registry = OrgRegistry.from_env()
        own = registry.get(stack.org_id) if registry.table_name else None
        secret = (own.token_secret if own is not None else "") or stack.token_secret_name
        try:
            owner_token = _read_secret(secret)
        except GetParameterError as error:
            raise ChartHopRejected("the stack's own token could not be read", status=0) from error
        owner = ChartHopClient(
            owner_token,
            base_url=stack.charthop_base_url,
            timeout=(5.0, stack.charthop_read_timeout_seconds),
            retry=default_retry(backoff_factor=stack.charthop_retry_backoff_seconds),
        )
        return ChartHopApps(owner).access_token(org.org_id, org.app_user_id)

    return mint


def _keeper(org: OrgConfig) -> Callable[[str, int, int], None]:
    """A fresh token into the org's secret (and this container's cache of it), its lifetime on its entry."""

    def keep(token: str, issued_at: int, expires_at: int) -> None:
        aws_clients.secretsmanager().put_secret_value(SecretId=org.token_secret, SecretString=token)
        _read_secret(org.token_secret, fresh=True)
        registry = OrgRegistry.from_env()
        if registry.table_name:
            registry.note_token(org.org_id, issued_at=issued_at, expires_at=expires_at)

    return keep


def _build(target: str, inputs: _Inputs, previous: _Built | None) -> SyncContext:
    settings = inputs.settings
    kept = previous.context if previous is not None and previous.inputs.settings == settings else None
    same_token = previous is not None and previous.inputs.charthop_token is inputs.charthop_token
    charthop = kept.charthop if kept is not None and same_token else _charthop(inputs)
    import_target: ImportTarget
    reporter: ProgressReporter
    org_id = inputs.org.org_id
    if target == routing.CHARTHOP:
        import_target = ChartHopTarget(charthop, org_id, inputs.import_options)
        reporter = ChartHopProgressReporter(
            charthop,
            org_id,
            app_name=settings.app_name,
            app_user_id=inputs.org.app_user_id,
            app_id=settings.app_id,
        )
    else:
        same_target_token = previous is not None and previous.inputs.target_token == inputs.target_token
        import_target = kept.target if kept is not None and same_target_token else _further_target(target, inputs)
        reporter = kept.reporter if kept is not None else _log_reporter(target, settings, org_id)
    return SyncContext(
        settings=settings,
        charthop=charthop,
        target=import_target,
        reporter=reporter,
        s3=aws_clients.s3(),
        stepfunctions=aws_clients.stepfunctions(),
        csv_rules=inputs.csv_rules,
        loop_memory=DynamoDBLoopMemory(settings.sync_table),
        slots=DynamoDBSlots(settings.sync_table, aws_clients.dynamodb()),
        journal=DynamoDBStartJournal(settings.sync_table),
        queue=DynamoDBTargetQueue(settings.sync_table),
        org_id=org_id,
        folder=routing.folder_of_target(target, settings, org_id),
        callback_url_for=_signed_callback_urls(settings) if import_target.calls_back else None,
        history=sync_history.from_env(),
    )


def _charthop(inputs: _Inputs) -> ChartHopClient:
    settings = inputs.settings
    return ChartHopClient(
        inputs.charthop_token,
        base_url=settings.charthop_base_url,
        timeout=(5.0, settings.charthop_read_timeout_seconds),
        retry=default_retry(backoff_factor=settings.charthop_retry_backoff_seconds),
    )


def _log_reporter(target: str, settings: AppSettings, org_id: str) -> ProgressReporter:
    """Log lines for targets without a progress bar; "closed" is kept in the sync table (durable across
    containers). Another org's sync ids name the org; the stack's own org's stay as they always were."""
    from people_sync.targets.log_reporter import LogProgressReporter

    org = org_id if org_id != settings.org_id else None
    if not settings.sync_table:
        return LogProgressReporter(target, org_id=org)
    return LogProgressReporter(target, org_id=org, table=settings.sync_table, client=aws_clients.dynamodb())


def _signed_callback_urls(settings: AppSettings) -> Callable[[str], str]:
    """The signing key is read when the first URL is made (only the import starter makes them)."""
    return lambda sync_id: callbacks.callback_url(settings.target_callback_url, sync_id, callback_signing_key(settings))


def _further_target(target: str, inputs: _Inputs) -> ImportTarget:
    settings = inputs.settings
    token = inputs.target_token or ""
    retry = default_retry(backoff_factor=settings.charthop_retry_backoff_seconds)
    timeout = (5.0, settings.charthop_read_timeout_seconds)
    if target == routing.ORGVUE:
        from people_sync.targets.orgvue import OrgvueClient, OrgvueTarget

        orgvue = OrgvueClient(
            token,
            base_url=settings.orgvue_base_url,
            tenant_id=settings.orgvue_tenant_id,
            dataset_id=settings.orgvue_dataset_id,
            timeout=timeout,
            retry=retry,
        )
        return OrgvueTarget(
            orgvue,
            default_action=settings.orgvue_default_action or None,
            implicit_delete=settings.orgvue_implicit_delete,
            id_key=settings.orgvue_id_key or None,
            date_format=settings.orgvue_date_format,
        )
    from people_sync.targets.elma365 import Elma365Client, Elma365Target

    elma365 = Elma365Client(
        token,
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
        directory_id=settings.elma365_directory_id or None,
    )


def reset() -> None:
    """Forget the built contexts (tests and the offline stack switch settings between runs)."""
    with _guard:
        _built.clear()
        _building.clear()
        _tokens.clear()
    aws_clients.reset()
