"""What the `orgs` commands do, apart from reading arguments and printing: register, pause, resume and remove
orgs, store an org's token in its secret, change its settings, and pick orgs up from ChartHop's installs.

With `dry_run` nothing is written: every operation reads what it needs and reports what it would do.
Tokens pass through here only on their way into Secrets Manager; they are never returned, logged or printed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError
from pydantic.alias_generators import to_camel

from people_sync.charthop_apps import ChartHopApps, InstalledApp
from people_sync.charthop_client import ChartHopClient
from people_sync.org_registry import (
    FURTHER_TARGETS,
    InvalidOrgSettings,
    NotServed,
    OrgConfig,
    OrgExists,
    OrgNotFound,
    OrgRecord,
    OrgRegistry,
    OrgSettings,
    OrgState,
    SettingsSource,
    check_org_id,
    merge_settings,
    resolve_org,
)
from tools.people_sync_admin.stack import Deployment, StackTarget

logger = logging.getLogger(__name__)


class OnboardingError(Exception):
    """A request the tool refuses; the message says why and what to do instead."""


@dataclass
class Outcome:
    """What an operation did (or, dry run, would do): lines for people, a record for scripts."""

    lines: list[str] = field(default_factory=list)
    record: OrgRecord | None = None
    changed: bool = False


@dataclass(frozen=True)
class OrgView:
    """An org as `orgs list` shows it: its entry (or the stack's defaults) and whether syncs run for it."""

    org_id: str
    state: str
    app_user_id: str
    token: str
    settings_source: str
    settings: dict[str, Any]
    served: bool
    reason: str
    default_org: bool
    version: int
    #: What to tell the operator about the org's token: "token refused at ...; run `orgs set-token ...`", or "".
    token_note: str = ""
    token_refused: dict[str, str] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "orgId": self.org_id,
            "state": self.state,
            "appUserId": self.app_user_id,
            "tokenSecret": self.token,
            "settingsSource": self.settings_source,
            "settings": self.settings,
            "served": self.served,
            "reason": self.reason,
            "defaultOrg": self.default_org,
            "version": self.version,
            **({"tokenRefused": self.token_refused, "tokenNote": self.token_note} if self.token_refused else {}),
        }


@dataclass
class Onboarding:
    deployment: Deployment
    dry_run: bool = False
    #: Builds a ChartHop client for a token (tests point it at a local server).
    charthop_for_token: Callable[[str], ChartHopClient] | None = None

    @property
    def target(self) -> StackTarget:
        return self.deployment.target

    @property
    def registry(self) -> OrgRegistry:
        return self.deployment.registry

    def _would(self, text: str) -> str:
        return f"would {text}" if self.dry_run else text

    def _charthop(self, token: str) -> ChartHopClient:
        if self.charthop_for_token is not None:
            return self.charthop_for_token(token)
        return ChartHopClient(token, base_url=self.target.charthop_base_url)

    # --- reading ----------------------------------------------------------------------------------

    def views(self) -> list[OrgView]:
        """Every registered org, plus the stack's own org when it has no entry; served or not, and why.
        ChartHop is not asked: an org whose settings live there is shown with the registry's copy."""
        defaults = self.deployment.stack_defaults()
        records: dict[str, OrgRecord | None] = {}
        for item in self.registry.items():
            org_id = str(item["orgId"]["S"])
            try:
                records[org_id] = OrgRecord.from_item(item)
            except (InvalidOrgSettings, ValueError, KeyError):  # edited by hand: shown, not hidden
                records[org_id] = None
        views = []
        for org_id in sorted(set(records) | {self.target.default_org_id}):
            resolved = resolve_org(
                org_id, registry=self.registry, defaults=defaults, charthop_settings=lambda r, _s: r.settings
            )
            record = records.get(org_id)
            served, reason = (True, "") if isinstance(resolved, OrgConfig) else (False, resolved.reason)
            if record is None and org_id in records:
                views.append(OrgView(org_id, "?", "?", "?", "?", {}, served, reason, org_id == defaults.org_id, 0))
                continue
            if record is None:
                views.append(
                    OrgView(
                        org_id,
                        "active",
                        defaults.app_user_id,
                        "(stack secret)",
                        "stack",
                        {},
                        served,
                        reason,
                        True,
                        0,
                    )
                )
                continue
            token = record.token_secret or ("(stack secret)" if org_id == defaults.org_id else "(none)")
            refused = record.token_refused
            views.append(
                OrgView(
                    org_id,
                    record.state.value,
                    record.app_user_id or (defaults.app_user_id if org_id == defaults.org_id else ""),
                    token,
                    record.settings_source.value,
                    record.settings.as_assignments(),
                    served,
                    reason,
                    org_id == defaults.org_id,
                    record.version,
                    token_note=refused.describe(org_id) if refused is not None else "",
                    token_refused=refused.to_document() if refused is not None else None,
                )
            )
        return views

    def show(self, org_id: str) -> dict[str, Any]:
        """One org: its entry and the settings a sync would use (read from ChartHop if it keeps them there)."""
        check_org_id(org_id)
        resolved = resolve_org(
            org_id,
            registry=self.registry,
            defaults=self.deployment.stack_defaults(),
            charthop_settings=self._settings_from_charthop,
        )
        try:
            record = self.registry.get(org_id)
        except InvalidOrgSettings:  # edited by hand into settings that do not validate: resolved says why
            record = None
        shown: dict[str, Any] = {"orgId": org_id, "registered": self.registry.get_item(org_id) is not None}
        if record is not None:
            shown.update(record.to_json_dict())
            if record.token_refused is not None:
                shown["attention"] = record.token_refused.describe(org_id)
        if isinstance(resolved, NotServed):
            shown.update(served=False, reason=resolved.reason, message=resolved.message)
            return shown
        effective = resolved.settings
        shown.update(
            served=True,
            tokenSecret=resolved.token_secret,
            appUserId=resolved.app_user_id,
            effective={
                "importOptions": effective.import_options.to_json_dict(),
                "requiredColumns": list(effective.required_columns),
                "furtherTargets": list(effective.further_targets),
                "importOnUpload": effective.import_on_upload,
                **{target: self._target_view(resolved, target) for target in effective.further_targets},
            },
        )
        return shown

    def _target_view(self, org: OrgConfig, target: str) -> dict[str, Any]:
        """Where the org's files for a further target go, its staging folder and its token's secret (a name)."""
        config = org.settings.target_config(target)
        default_org = org.org_id == self.target.default_org_id
        secret = org.target_secrets.get(target) or ("(stack TargetTokensSecret)" if default_org else "(none)")
        folders = [f"{self.target.staging_prefix}{org.org_id}/{target}/"]
        if default_org:
            folders.insert(0, f"{self.target.staging_prefix}{target}/")
        address = {to_camel(key): value for key, value in asdict(config).items()} if config is not None else {}
        return {**address, "tokenSecret": secret, "stagedUnder": folders}

    def _settings_from_charthop(self, record: OrgRecord, token_secret: str) -> OrgSettings:
        from people_sync.charthop_apps import settings_from_options

        token = self._read_secret(token_secret)
        app = ChartHopApps(self._charthop(token)).installed_app(record.org_id, record.app_user_id)
        return settings_from_options(app.options)

    def _read_secret(self, name: str) -> str:
        return str(self.deployment.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]).strip()

    # --- registering ------------------------------------------------------------------------------

    def add(
        self,
        org_id: str,
        app_user_id: str,
        *,
        token: str | None = None,
        settings_source: SettingsSource = SettingsSource.REGISTRY,
    ) -> Outcome:
        """Registers an org (or reinstalls an uninstalled one); with `token`, stores it in the org's secret."""
        check_org_id(org_id)
        if not app_user_id:
            raise OnboardingError("--app-user-id is required: the app's user id in that org (ChartHop's install)")
        existing = self.registry.get(org_id)
        if existing is not None and existing.state is not OrgState.UNINSTALLED:
            raise OnboardingError(f"org {org_id} is registered already ({existing.state.value}); see orgs set / resume")
        outcome = Outcome(changed=True)
        secret = existing.token_secret if existing is not None else ""
        if token is not None:
            secret = self.target.org_secret_name(org_id)
            outcome.lines.append(self._store_token(secret, token))
        if existing is None:
            record = OrgRecord(org_id, app_user_id, token_secret=secret, settings_source=settings_source)
            outcome.record = record if self.dry_run else self.registry.add(record)
            outcome.lines.append(self._would(f"register org {org_id} (active, app user {app_user_id})"))
        else:
            reinstalled = replace(
                existing,
                state=OrgState.ACTIVE,
                app_user_id=app_user_id,
                token_secret=secret,
                settings_source=settings_source,
            )
            outcome.record = reinstalled if self.dry_run else self.registry.save(reinstalled)
            outcome.lines.append(self._would(f"reinstall org {org_id} (was uninstalled; its settings are kept)"))
        if not secret and org_id != self.target.default_org_id:
            outcome.lines.append(f"org {org_id} has no token yet: it is not served until `orgs set-token {org_id}`")
        elif not secret:
            outcome.lines.append(f"org {org_id} is the stack's own org: it uses the stack's token secret")
        return outcome

    def set_state(self, org_id: str, state: OrgState) -> Outcome:
        """pause (active -> paused), resume (paused -> active), remove (-> uninstalled; staged files and the
        token secret are kept). The stack's own org gets an entry when it has none."""
        check_org_id(org_id)
        verb = {OrgState.PAUSED: "pause", OrgState.ACTIVE: "resume", OrgState.UNINSTALLED: "remove"}[state]
        current = self._current_or_default(org_id)
        if current.state is state:
            return Outcome([f"org {org_id} is {state.value} already"], current)
        if state is OrgState.ACTIVE and current.state is OrgState.UNINSTALLED:
            raise OnboardingError(f"org {org_id} was removed; register it again with `orgs add {org_id} ...`")
        if state is OrgState.PAUSED and current.state is OrgState.UNINSTALLED:
            raise OnboardingError(f"org {org_id} was removed; there is nothing to pause")

        def change(record: OrgRecord) -> OrgRecord:
            return replace(record, state=state)

        record = self._write(current, change)
        lines = [self._would(f"{verb} org {org_id} ({current.state.value} -> {state.value})")]
        if state is OrgState.UNINSTALLED:
            lines.append("its staged files and its token secret are kept; nothing syncs for it any more")
        return Outcome(lines, record, changed=True)

    def set_settings(
        self,
        org_id: str,
        assignments: Mapping[str, str],
        unset: Iterable[str] = (),
        settings_source: SettingsSource | None = None,
    ) -> Outcome:
        """Changes an org's settings; the result must merge with the stack's defaults, or nothing is written."""
        check_org_id(org_id)
        current = self._current_or_default(org_id)
        unset = list(unset)
        new_settings = current.settings.updated(assignments, unset)
        merge_settings(self.deployment.stack_defaults(), new_settings, default_org=org_id == self.target.default_org_id)
        before, after = current.settings.as_assignments(), new_settings.as_assignments()
        lines = [
            self._would(f"set {key}: {_shown(before.get(key))} -> {_shown(after.get(key))}")
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        ]
        source = settings_source or current.settings_source
        if source is not current.settings_source:
            lines.append(self._would(f"read org {org_id}'s settings from {source.value}"))
        if not lines:
            return Outcome([f"org {org_id}: nothing to change"], current)
        lines.extend(self._target_notes(org_id, current, new_settings))
        charthop_keys = [key for key in [*assignments, *unset] if key.split(".", 1)[0] not in FURTHER_TARGETS]
        if source is SettingsSource.CHARTHOP and charthop_keys:
            lines.append(
                "note: this org reads its settings from ChartHop; the registry's copy applies only if it "
                "is switched back (--settings-from registry)"
            )

        def change(record: OrgRecord) -> OrgRecord:
            # applied to the latest entry, so a concurrent edit of other keys is kept
            updated = record.settings.updated(assignments, unset)
            merge_settings(self.deployment.stack_defaults(), updated, default_org=org_id == self.target.default_org_id)
            return replace(record, settings=updated, settings_source=source)

        return Outcome(lines, self._write(current, change), changed=True)

    def _target_notes(self, org_id: str, current: OrgRecord, settings: OrgSettings) -> list[str]:
        """What an operator should know about the further targets the org will feed: a token still missing,
        and a dataset or app it shares with the stack's own org (one import at a time across both)."""
        defaults = self.deployment.stack_defaults()
        default_org = org_id == self.target.default_org_id
        effective = merge_settings(defaults, settings, default_org=default_org)
        notes = []
        for target in effective.further_targets:
            config = effective.target_config(target)
            if not current.target_secrets.get(target) and not default_org:
                notes.append(
                    f"note: org {org_id} has no {target} token yet: `orgs set-token {org_id} --target {target}` "
                    "(until then its files there are moved aside)"
                )
            stack_config = defaults.orgvue if target == "orgvue" else defaults.elma365
            if not default_org and config is not None and config.resource == stack_config.resource:
                notes.append(
                    f"note: org {org_id}'s {target} files go to the stack's own {target} "
                    f"({'/'.join(config.resource)}), shared with org {self.target.default_org_id}: one import "
                    f"at a time across both; set {target}.* for one of its own"
                )
        return notes

    def set_token(self, org_id: str, token: str, target: str = "charthop") -> Outcome:
        """Stores the org's ChartHop token (or, with `target`, its API token for a further target) in its own
        secret (created when missing) and points its entry at it. The stack's own org without a ChartHop
        secret of its own keeps using the stack's token secret; a further target's token always goes into the
        org's own secret <prefix><orgId>/<target>-token (for the stack's own org it then wins over
        TargetTokensSecret), never into the table, the output or another org's secret."""
        check_org_id(org_id)
        if target not in ("charthop", *FURTHER_TARGETS):
            raise OnboardingError(f"unknown target {target!r}; one of charthop, {', '.join(FURTHER_TARGETS)}")
        if not token.strip():
            raise OnboardingError("the token is empty; nothing was stored")
        current = self._current_or_default(org_id)
        if current.state is OrgState.UNINSTALLED:
            raise OnboardingError(f"org {org_id} was removed; register it again with `orgs add {org_id} ...`")
        if target != "charthop":
            return self._set_target_token(current, target, token)
        if org_id == self.target.default_org_id and not current.token_secret:
            lines = [self._store_token(self.target.default_token_secret, token)]
            return Outcome(lines, self._clear_token_marks(current, lines), changed=True)
        secret = self.target.org_secret_name(org_id)
        lines = [self._store_token(secret, token)]
        record = current
        if current.token_secret != secret:
            record = self._write(current, lambda r: replace(r, token_secret=secret))
            lines.append(self._would(f"point org {org_id} at secret {secret}"))
        return Outcome(lines, self._clear_token_marks(record, lines), changed=True)

    def _clear_token_marks(self, record: OrgRecord, lines: list[str]) -> OrgRecord:
        """An operator's token replaces a fetched one (it is not known to expire) and ends a refusal mark."""
        if record.token_refused is None and not record.token_expires_at:
            return record
        if record.token_refused is not None:
            lines.append(self._would(f"clear the mark: {record.token_refused.describe(record.org_id)}"))

        def cleared(r: OrgRecord) -> OrgRecord:
            return replace(r, token_refused=None, token_issued_at=0, token_expires_at=0)

        return self._write(record, cleared)

    def _set_target_token(self, current: OrgRecord, target: str, token: str) -> Outcome:
        org_id = current.org_id
        secret = self.target.org_secret_name(org_id, target)
        lines = [self._store_token(secret, token, what=f"{target} API token")]
        record = current
        if current.target_secrets.get(target) != secret:

            def point(record: OrgRecord) -> OrgRecord:
                return replace(record, target_secrets={**record.target_secrets, target: secret})

            record = self._write(current, point)
            lines.append(self._would(f"point org {org_id}'s {target} token at secret {secret}"))
        fed = self._fed_targets(org_id)
        if fed is not None and target not in fed:
            lines.append(
                f"note: org {org_id} does not feed {target} yet: `orgs set {org_id} furtherTargets={target}` "
                f"(and its {target}.* settings) to import what it stages under {org_id}/{target}/"
            )
        return Outcome(lines, record, changed=True)

    def _fed_targets(self, org_id: str) -> tuple[str, ...] | None:
        resolved = resolve_org(
            org_id,
            registry=self.registry,
            defaults=self.deployment.stack_defaults(),
            charthop_settings=lambda r, _s: r.settings,
            continuing=True,
        )
        return resolved.settings.further_targets if isinstance(resolved, OrgConfig) else None

    def _token_secret_of(self, org_id: str, record: OrgRecord | None) -> str:
        """The secret set-token would write for the org."""
        if org_id == self.target.default_org_id and (record is None or not record.token_secret):
            return self.target.default_token_secret
        return self.target.org_secret_name(org_id)

    def _current_or_default(self, org_id: str) -> OrgRecord:
        """The org's entry; the stack's own org without one is its defaults, saved as an entry on first write."""
        record = self.registry.get(org_id)
        if record is not None:
            return record
        if org_id == self.target.default_org_id:
            return OrgRecord(org_id, self.target.default_app_user_id)
        raise OrgNotFound(f"org {org_id} is not registered (orgs add {org_id} --app-user-id ...)")

    def _write(self, current: OrgRecord, change: Callable[[OrgRecord], OrgRecord]) -> OrgRecord:
        if self.dry_run:
            return change(current)
        if current.version == 0:  # the stack's own org, first written now
            try:
                return self.registry.add(change(current))
            except OrgExists:
                pass  # registered meanwhile: apply the change to that entry
        return self.registry.modify(current.org_id, change)

    def _store_token(self, secret: str, token: str, *, what: str = "ChartHop app token") -> str:
        """Writes the token into the secret (created if missing); the line says where, never what."""
        secrets = self.deployment.client("secretsmanager")
        try:
            secrets.describe_secret(SecretId=secret)
            exists = True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            exists = False
        if self.dry_run:
            return f"would store the token in secret {secret}" + ("" if exists else " (would create it)")
        if exists:
            secrets.put_secret_value(SecretId=secret, SecretString=token)
            return f"stored the token in secret {secret}"
        secrets.create_secret(
            Name=secret,
            SecretString=token,
            Description=f"{what} of org {secret.rsplit('/', 2)[-2]} (people-sync {self.target.stack_name})",
            Tags=[{"Key": "people-sync:stack", "Value": self.target.stack_name}],
        )
        return f"created secret {secret} and stored the token in it"

    # --- ChartHop's installs -----------------------------------------------------------------------

    def sync_installs(
        self,
        *,
        app_id: str | None = None,
        token: str | None = None,
        fetch_tokens: bool = False,
        mark_uninstalled: bool = False,
        settings_source: SettingsSource = SettingsSource.REGISTRY,
    ) -> list[dict[str, str]]:
        """Registers every org ChartHop lists as an active install of the app (getActiveAppInstalls, read
        with `token` or the stack's token; see api_assumptions.py); with `fetch_tokens`, stores each org's
        app token (getAccessToken) in its secret; with `mark_uninstalled`, marks registered orgs ChartHop no
        longer lists as uninstalled - unless the listing was truncated (a repeated cursor, a page without new
        installs, the page cap): then no org is marked and each row says why. Returns one row per org: orgId,
        appUserId, action."""
        app_id = app_id or self.target.app_id
        if not app_id:
            raise OnboardingError("the stack has no ChartHopAppId: pass --app-id")
        apps = ChartHopApps(self._charthop(token or self._read_secret(self.target.default_token_secret)))
        listing = apps.list_installs(app_id)
        installs: dict[str, InstalledApp] = {}
        for install in listing.installs:
            if install.org_id and install.installed:
                installs[install.org_id] = install
        rows = []
        for org_id, install in sorted(installs.items()):
            try:
                check_org_id(org_id)
            except InvalidOrgSettings:
                rows.append({"orgId": org_id, "appUserId": install.id, "action": "skipped: not an org id"})
                continue
            rows.append(self._pick_up(org_id, install, apps, fetch_tokens, settings_source))
        if mark_uninstalled:
            if listing.truncated:
                # an org missing from an incomplete listing may well be installed: nothing is marked
                logger.warning(
                    "ChartHop's listing of the app's installs was incomplete; no org is marked uninstalled",
                    extra={"app_id": app_id, "reason": listing.truncated},
                )
            for record in self.registry.all():
                if record.org_id not in installs and record.state is not OrgState.UNINSTALLED:
                    if listing.truncated:
                        action = f"not marked uninstalled: ChartHop's listing was incomplete ({listing.truncated})"
                    else:
                        self.set_state(record.org_id, OrgState.UNINSTALLED)
                        action = self._would("uninstall")
                    rows.append({"orgId": record.org_id, "appUserId": record.app_user_id, "action": action})
        return rows

    def _pick_up(
        self,
        org_id: str,
        install: InstalledApp,
        apps: ChartHopApps,
        fetch_tokens: bool,
        settings_source: SettingsSource,
    ) -> dict[str, str]:
        existing = self.registry.get(org_id)
        actions = []
        if org_id == self.target.default_org_id and existing is None and not fetch_tokens:
            actions.append("stack's own org")
        elif existing is None or existing.state is OrgState.UNINSTALLED:
            self.add(org_id, install.id, settings_source=settings_source)
            actions.append(self._would("register" if existing is None else "reinstall"))
        else:
            actions.append("registered already")
        if fetch_tokens and self.dry_run:  # a dry run reads no token
            actions.append(f"would fetch its token into {self._token_secret_of(org_id, existing)}")
        elif fetch_tokens:
            self.set_token(org_id, apps.access_token(org_id, install.id).access_token.get_secret_value())
            actions.append("store its token")
        return {"orgId": org_id, "appUserId": install.id, "action": ", ".join(actions)}


def _shown(value: Any) -> str:
    if value is None:
        return "(stack default)"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
