"""The orgs one deployment serves: a DynamoDB registry, each org's settings over the stack's defaults, and
`resolve_org`, the one question every handler asks ("may I sync for this org, and how?").

One item per org (key `orgId`): its state (active, paused, uninstalled), its ChartHop app user id, the name
of the Secrets Manager secret holding its token (never the token itself), where its settings are read
(`settingsSource`: the registry, or the installed app's `User.options` in ChartHop, see charthop_apps.py),
its settings (overrides of the stack's defaults) and a `version` every write is conditioned on, so two
concurrent edits never clobber each other (the loser re-reads and applies its change again).

An org may feed further targets (Orgvue, ELMA365) from `<StagingPrefix><orgId>/orgvue/` and `.../elma365/`:
its settings say which (`furtherTargets`) and where (`orgvue.*`, `elma365.*`, over the stack's Orgvue and
ELMA365 parameters); its API token for each lives in a secret of its own (`targetTokenSecrets` names it),
never the stack's `TargetTokensSecret`, which belongs to the stack's own org.

The one-org setup stays the default: an org without an item that is the stack's `ChartHopOrgId` is served
with the stack's token secret and defaults, exactly as before the registry existed.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from people_sync import aws_clients
from people_sync.models import ImportOptions
from people_sync.sync_table import condition_failed
from people_sync.targets.base import instance_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from people_sync.config import AppSettings
    from people_sync.csv_checks import CsvRules

logger = logging.getLogger(__name__)

#: What an org id may look like (the template's `ChartHopOrgId` pattern): it names an S3 folder and a secret.
ORG_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
#: Further targets an org's files may feed (routing.py's names), when the stack or the org configures them.
FURTHER_TARGETS = ("orgvue", "elma365")
#: Names an org id may not take: they are the stack's own org's further-target folders (staging/orgvue/).
RESERVED_ORG_IDS = FURTHER_TARGETS
#: The environment variable naming the registry table (template.yaml sets it on every function).
ORG_TABLE_ENV = "ORG_TABLE"


class OrgState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    UNINSTALLED = "uninstalled"


class SettingsSource(StrEnum):
    """Where an org's settings are read: this registry, or its installed app's options in ChartHop."""

    REGISTRY = "registry"
    CHARTHOP = "charthop"


class InvalidOrgSettings(ValueError):
    """Settings (or an org id) that are refused; the message says which and why, for a person to fix."""


class OrgNotFound(LookupError):
    pass


class OrgExists(ValueError):
    pass


class OrgConflict(RuntimeError):
    """The org changed since it was read (another edit won the race): read it again and reapply."""


# --- settings ---------------------------------------------------------------------------------------

#: The import option keys an org may override (importDataCsv's query options, ImportOptions' aliases).
IMPORT_OPTION_KEYS = tuple(info.alias or name for name, info in ImportOptions.model_fields.items())
#: Every setting key, as `orgs set key=value` and ChartHop's config fields spell it (see api_assumptions.py).
SETTING_KEYS = (*IMPORT_OPTION_KEYS, "requiredColumns", "furtherTargets", "importOnUpload")


_SETTINGS_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)
#: Orgvue tenant ids (the same rule as targets/orgvue.py's TENANT_ID_PATTERN and the template's OrgvueTenantId).
_ORGVUE_TENANT = re.compile(r"^[A-Z][A-Z0-9_]{0,29}$")
#: A dataset id, an ELMA365 namespace, app code or directory id: one path segment, nothing to escape.
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
#: Hosts a token may be sent to over plain http (the offline emulators); anything else must be https.
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _base_url(value: Any) -> Any:
    """A target's base URL: https (http only on loopback), a host, no query or fragment; "" = not configured."""
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        raise ValueError("must be a URL")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{value!r} is not a base URL (https://host[/path])")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise ValueError(f"{value!r}: the target's token would travel unencrypted; use https")
    return value.strip().rstrip("/")


def _matching(pattern: re.Pattern[str], what: str, *, empty: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None or (empty and value == ""):
            return value
        if not isinstance(value, str) or not pattern.match(value.strip()):
            raise ValueError(f"{value!r} is not {what}")
        return value.strip()

    return check


BaseUrl = Annotated[str | None, BeforeValidator(_base_url)]
TenantId = Annotated[str | None, BeforeValidator(_matching(_ORGVUE_TENANT, "an Orgvue tenant id"))]
DatasetId = Annotated[str | None, BeforeValidator(_matching(_PATH_SEGMENT, "a dataset id"))]
IdKey = Annotated[str | None, BeforeValidator(_matching(re.compile(r"^[^&=#?/]{1,128}$"), "a property", empty=True))]
Namespace = Annotated[str | None, BeforeValidator(_matching(_PATH_SEGMENT, "an ELMA365 namespace"))]
AppCode = Annotated[str | None, BeforeValidator(_matching(_PATH_SEGMENT, "an ELMA365 app code"))]
DirectoryId = Annotated[str | None, BeforeValidator(_matching(_PATH_SEGMENT, "a directory id", empty=True))]


class OrgvueSettings(BaseModel):
    """Where an org's Orgvue files go and how they are imported, over the stack's Orgvue parameters (a field
    left None keeps the stack's value). Set by the operator only: never read from ChartHop."""

    model_config = _SETTINGS_CONFIG

    base_url: BaseUrl = None
    tenant_id: TenantId = None
    dataset_id: DatasetId = None
    default_action: Literal["", "create", "update", "delete"] | None = None
    id_key: IdKey = None
    date_format: Literal["YYYY-MM-DD", "DD/MM/YYYY", "MM/DD/YYYY"] | None = None
    implicit_delete: bool | None = None


class Elma365Settings(BaseModel):
    """Where an org's ELMA365 files go, over the stack's ELMA365 parameters (None keeps the stack's value).
    Set by the operator only: never read from ChartHop."""

    model_config = _SETTINGS_CONFIG

    base_url: BaseUrl = None
    namespace: Namespace = None
    code: AppCode = None
    chunk_rows: int | None = Field(default=None, ge=1, le=50_000)
    directory_id: DirectoryId = None


#: Each further target's settings model (OrgSettings' field of the same name).
TARGET_SETTINGS: dict[str, type[OrgvueSettings] | type[Elma365Settings]] = {
    "orgvue": OrgvueSettings,
    "elma365": Elma365Settings,
}
#: The further targets' setting keys, as `orgs set` spells them (`orgvue.datasetId=...`). Not among
#: SETTING_KEYS: they are never read from ChartHop (an org's admins must not point its data or tokens elsewhere).
TARGET_SETTING_KEYS = tuple(
    f"{target}.{info.alias or name}"
    for target, model in TARGET_SETTINGS.items()
    for name, info in model.model_fields.items()
)


class OrgSettings(BaseModel):
    """An org's overrides of the stack's defaults; a field left None (or an import option left out) keeps
    the stack's value. Unknown keys and ill-typed values are refused."""

    model_config = _SETTINGS_CONFIG

    import_options: dict[str, Any] = Field(default_factory=dict)
    required_columns: tuple[str, ...] | None = None
    further_targets: tuple[str, ...] | None = None
    import_on_upload: bool | None = None
    orgvue: OrgvueSettings | None = None
    elma365: Elma365Settings | None = None

    @field_validator("import_options", mode="before")
    @classmethod
    def _known_import_options(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError("importOptions must be a mapping of importDataCsv options")
        unknown = sorted(set(value) - set(IMPORT_OPTION_KEYS))
        if unknown:
            raise ValueError(f"unknown import option(s) {', '.join(unknown)}; known: {', '.join(IMPORT_OPTION_KEYS)}")
        # ImportOptions validates (and normalises: "false" -> False, "a,b" -> ["a", "b"]) each value given
        parsed = ImportOptions.model_validate(dict(value)).to_json_dict()
        return {key: parsed[key] for key in value if key in parsed}

    @field_validator("required_columns", mode="before")
    @classmethod
    def _columns(cls, value: Any) -> Any:
        if value is None:
            return None
        names = _split(value) if isinstance(value, str) else list(value)
        if not all(isinstance(name, str) for name in names):
            raise ValueError("requiredColumns must be column names")
        names = [name.strip() for name in names]
        if any(not name for name in names):
            raise ValueError("requiredColumns has an empty column name")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"requiredColumns names {', '.join(duplicates)} more than once")
        return tuple(names)

    @field_validator("further_targets", mode="before")
    @classmethod
    def _targets(cls, value: Any) -> Any:
        if value is None:
            return None
        names = _split(value) if isinstance(value, str) else list(value)
        unknown = sorted({str(name) for name in names} - set(FURTHER_TARGETS))
        if unknown:
            raise ValueError(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(FURTHER_TARGETS)}")
        return tuple(name for name in FURTHER_TARGETS if name in names)  # one order, no duplicates

    def to_document(self) -> dict[str, Any]:
        """The stored (and JSON) form: camelCase keys, unset fields left out (an empty target block too)."""
        document = self.model_dump(by_alias=True, mode="json", exclude_none=True, exclude_defaults=True)
        for target in TARGET_SETTINGS:
            if not document.get(target):
                document.pop(target, None)
        return document

    def as_assignments(self) -> dict[str, Any]:
        """Flat `key: value` pairs, the vocabulary of `orgs set` (and, but for the targets' `orgvue.*` and
        `elma365.*` keys, of ChartHop's config fields)."""
        flat: dict[str, Any] = dict(self.import_options)
        document = self.to_document()
        for key in ("requiredColumns", "furtherTargets", "importOnUpload"):
            value = document.get(key)
            if value is not None:
                flat[key] = value
        for target in TARGET_SETTINGS:
            for key, value in document.get(target, {}).items():
                flat[f"{target}.{key}"] = value
        return flat

    def with_targets_of(self, other: OrgSettings) -> OrgSettings:
        """These settings with `other`'s further-target blocks (an org whose settings live in ChartHop keeps
        the registry's Orgvue and ELMA365 settings: only the operator sets where its data goes)."""
        return self.model_copy(update={target: getattr(other, target) for target in TARGET_SETTINGS})

    def updated(self, assignments: Mapping[str, Any], unset: Iterable[str] = ()) -> OrgSettings:
        """These settings with `assignments` applied (flat keys, see SETTING_KEYS and TARGET_SETTING_KEYS) and
        `unset` keys removed (back to the stack's default; a target's name removes all its keys); raises
        InvalidOrgSettings."""
        flat = {**self.as_assignments(), **assignments}
        for key in unset:
            if key in TARGET_SETTINGS:
                flat = {k: v for k, v in flat.items() if not k.startswith(f"{key}.")}
                continue
            _check_key(key)
            flat.pop(key, None)
        return settings_from_assignments(flat)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()] if text.strip() else []


def _check_key(key: str) -> None:
    if key not in SETTING_KEYS and key not in TARGET_SETTING_KEYS:
        raise InvalidOrgSettings(
            f"unknown setting {key!r}; known settings: {', '.join(SETTING_KEYS)}, and the further targets' "
            f"{', '.join(TARGET_SETTING_KEYS)}"
        )


def settings_from_assignments(assignments: Mapping[str, Any]) -> OrgSettings:
    """OrgSettings from flat `key: value` pairs (strings as typed on a command line, or typed values as
    ChartHop's config fields hold them); raises InvalidOrgSettings naming every bad key."""
    for key in assignments:
        _check_key(key)
    document: dict[str, Any] = {"importOptions": {k: v for k, v in assignments.items() if k in IMPORT_OPTION_KEYS}}
    for key in ("requiredColumns", "furtherTargets", "importOnUpload"):
        if key in assignments:
            document[key] = assignments[key]
    for key, value in assignments.items():
        if key in TARGET_SETTING_KEYS:
            target, _, name = key.partition(".")
            document.setdefault(target, {})[name] = value
    return parse_settings(document)


def parse_settings(document: Mapping[str, Any] | None) -> OrgSettings:
    """OrgSettings from their stored form; raises InvalidOrgSettings with a message a person can act on."""
    try:
        return OrgSettings.model_validate(dict(document or {}))
    except ValidationError as exc:
        raise InvalidOrgSettings(_explain(exc)) from None


def parse_assignment(text: str) -> tuple[str, str]:
    """`key=value` as typed on a command line."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InvalidOrgSettings(f"{text!r} is not key=value")
    _check_key(key.strip())
    return key.strip(), value.strip()


def _explain(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


@dataclass(frozen=True)
class OrgvueConfig:
    """Orgvue as a sync uses it: the stack's Orgvue parameters, with an org's `orgvue.*` settings over them."""

    base_url: str = ""
    tenant_id: str = ""
    dataset_id: str = ""
    default_action: str = ""
    id_key: str = ""
    date_format: str = "YYYY-MM-DD"
    implicit_delete: bool = False

    #: What an org that sets `orgvue.*` itself must end up with (the stack's values count).
    required = ("base_url", "tenant_id", "dataset_id")

    @property
    def resource(self) -> tuple[str, ...]:
        """The dataset, as one import at a time is counted for it: instance, tenant, dataset."""
        return (instance_key(self.base_url), self.tenant_id, self.dataset_id)


@dataclass(frozen=True)
class Elma365Config:
    """ELMA365 as a sync uses it: the stack's ELMA365 parameters, with an org's `elma365.*` settings over them."""

    base_url: str = ""
    namespace: str = ""
    code: str = ""
    chunk_rows: int = 50_000
    directory_id: str = ""

    required = ("base_url", "namespace", "code")

    @property
    def resource(self) -> tuple[str, ...]:
        """The app, as ELMA365 runs one import at a time in it: instance (the company's URL), namespace, code."""
        return (instance_key(self.base_url), self.namespace, self.code)


TargetConfig = OrgvueConfig | Elma365Config


def _overlay[C: (OrgvueConfig, Elma365Config)](base: C, overrides: OrgvueSettings | Elma365Settings | None) -> C:
    if overrides is None:
        return base
    return replace(base, **{name: value for name, value in overrides if value is not None})


@dataclass(frozen=True)
class StackDefaults:
    """What the stack's parameters and settings parameter give every org that does not override them."""

    org_id: str
    app_user_id: str
    token_secret: str
    import_options: ImportOptions = field(default_factory=ImportOptions)
    required_columns: tuple[str, ...] = ()
    #: The further targets this stack configures (their base URLs are set); the default org feeds them all.
    further_targets: tuple[str, ...] = ()
    import_on_upload: bool = True
    #: The settings parameter's other pre-flight limits (`csvRules` without `requiredColumns`).
    csv_rules: Mapping[str, Any] = field(default_factory=dict)
    #: The stack's Orgvue and ELMA365 parameters (the stack's own org's targets; what other orgs start from).
    orgvue: OrgvueConfig = field(default_factory=OrgvueConfig)
    elma365: Elma365Config = field(default_factory=Elma365Config)

    @classmethod
    def from_settings(cls, settings: AppSettings) -> StackDefaults:
        """The running function's defaults: environment plus the settings parameter (cached reads)."""
        from people_sync import config, routing

        rules = config.csv_rules(settings)
        return cls(
            org_id=settings.org_id,
            app_user_id=settings.app_user_id,
            token_secret=settings.token_secret_name,
            import_options=config.import_options(settings),
            required_columns=tuple(rules.required_columns),
            further_targets=tuple(t for t in routing.enabled_targets(settings) if t in FURTHER_TARGETS),
            import_on_upload=settings.import_on_upload,
            csv_rules=rules.model_dump(by_alias=True, exclude={"required_columns"}),
            orgvue=OrgvueConfig(
                base_url=settings.orgvue_base_url,
                tenant_id=settings.orgvue_tenant_id,
                dataset_id=settings.orgvue_dataset_id,
                default_action=settings.orgvue_default_action,
                id_key=settings.orgvue_id_key,
                date_format=settings.orgvue_date_format,
                implicit_delete=settings.orgvue_implicit_delete,
            ),
            elma365=Elma365Config(
                base_url=settings.elma365_base_url,
                namespace=settings.elma365_namespace,
                code=settings.elma365_code,
                chunk_rows=settings.elma365_chunk_rows,
                directory_id=settings.elma365_directory_id,
            ),
        )


@dataclass(frozen=True)
class EffectiveSettings:
    """An org's settings as a sync uses them: its overrides over the stack's defaults."""

    import_options: ImportOptions
    required_columns: tuple[str, ...]
    further_targets: tuple[str, ...]
    import_on_upload: bool
    csv_rules_base: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: Where each further target sends this org's files (the stack's parameters, the org's settings over them),
    #: whether or not the org feeds it (`further_targets` says that; a sync already running follows it anyway).
    orgvue: OrgvueConfig = field(default_factory=OrgvueConfig)
    elma365: Elma365Config = field(default_factory=Elma365Config)

    def target_config(self, target: str, *, fed_only: bool = True) -> TargetConfig | None:
        """Where `target` sends this org's files; None when the org does not feed it (`fed_only`) or it has
        no address at all."""
        if target not in FURTHER_TARGETS or (fed_only and target not in self.further_targets):
            return None
        config: TargetConfig = self.orgvue if target == "orgvue" else self.elma365
        return config if config.base_url else None

    def csv_rules(self) -> CsvRules:
        from people_sync.csv_checks import CsvRules

        return CsvRules.model_validate({**self.csv_rules_base, "requiredColumns": list(self.required_columns)})


def merge_settings(defaults: StackDefaults, overrides: OrgSettings, *, default_org: bool) -> EffectiveSettings:
    """`overrides` over `defaults` (pure). Raises InvalidOrgSettings when the result cannot run here.

    Further targets: the default org feeds the stack's further targets unless it overrides them, as it does
    today; any other org feeds none unless it names them, since the stack's Orgvue tenant and ELMA365 app
    (and their tokens) belong to whoever deployed it. A target an org names must be configured: by the
    stack (its base URL parameter) or by the org's own `<target>.baseUrl`; an org that sets any of a target's
    keys must end up with a whole address (Orgvue: base URL, tenant, dataset; ELMA365: base URL, namespace,
    app code), the stack's values counting. The token is never part of this: see OrgRecord.target_secrets.
    """
    try:
        options = ImportOptions.model_validate({**defaults.import_options.to_json_dict(), **overrides.import_options})
    except ValidationError as exc:
        raise InvalidOrgSettings(_explain(exc)) from None
    inherited = defaults.further_targets if default_org else ()
    targets = overrides.further_targets if overrides.further_targets is not None else inherited
    orgvue, elma365 = _overlay(defaults.orgvue, overrides.orgvue), _overlay(defaults.elma365, overrides.elma365)
    configs: dict[str, TargetConfig] = {"orgvue": orgvue, "elma365": elma365}

    def configured(target: str) -> bool:
        own = getattr(overrides, target)
        if own is not None and own.base_url is not None:
            return bool(own.base_url)
        return target in defaults.further_targets

    missing = [target for target in targets if not configured(target)]
    if missing:
        raise InvalidOrgSettings(
            f"furtherTargets: {', '.join(missing)} not configured in this deployment "
            f"(configured: {', '.join(defaults.further_targets) or 'none'}) nor in the org's settings "
            f"(set {', '.join(f'{target}.baseUrl' for target in missing)})"
        )
    for target in targets:
        config = configs[target]
        if getattr(overrides, target) is None:
            continue
        unset = [f"{target}.{to_camel(name)}" for name in config.required if not getattr(config, name)]
        if unset:
            raise InvalidOrgSettings(f"{target}: set {', '.join(unset)} (the stack gives none)")
    return EffectiveSettings(
        import_options=options,
        required_columns=(
            overrides.required_columns if overrides.required_columns is not None else defaults.required_columns
        ),
        further_targets=tuple(targets),
        import_on_upload=overrides.import_on_upload
        if overrides.import_on_upload is not None
        else defaults.import_on_upload,
        csv_rules_base=defaults.csv_rules,
        orgvue=orgvue,
        elma365=elma365,
    )


# --- records ----------------------------------------------------------------------------------------


def check_org_id(org_id: str) -> str:
    if not ORG_ID_PATTERN.match(org_id):
        raise InvalidOrgSettings(f"{org_id!r} is not an org id (letters, digits, _ and - only)")
    if org_id in RESERVED_ORG_IDS:
        raise InvalidOrgSettings(f"{org_id!r} cannot be an org id: staging/{org_id}/ is the stack's own org's folder")
    return org_id


@dataclass(frozen=True)
class TokenRefusal:
    """ChartHop refused an org's token and no fresh one could be had (org_tokens.py): when, doing what, and the
    sync process it left open (a "Sync Now" stays PENDING in ChartHop). Never the token itself."""

    at: str
    operation: str
    sync_process_id: str = ""
    message: str = ""

    def to_document(self) -> dict[str, str]:
        return {
            "at": self.at,
            "operation": self.operation,
            "syncProcessId": self.sync_process_id,
            "message": self.message,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> TokenRefusal:
        return cls(
            at=str(document.get("at", "")),
            operation=str(document.get("operation", "")),
            sync_process_id=str(document.get("syncProcessId", "")),
            message=str(document.get("message", "")),
        )

    def describe(self, org_id: str) -> str:
        """One line for the operator: what was refused and what to do."""
        left = f"; sync process {self.sync_process_id} was left open" if self.sync_process_id else ""
        return f"token refused at {self.at} ({self.operation}){left}; run `orgs set-token {org_id}`"


@dataclass(frozen=True)
class OrgRecord:
    """One org's registry entry. `token_secret` is a Secrets Manager secret's name or ARN, never a token;
    empty means "no token yet" (the stack's default org then uses the stack's token secret).
    `target_secrets` names, per further target, the secret holding the org's own API token for it (never the
    token); a target without one has no token (the stack's default org then uses TargetTokensSecret).

    The token's metadata, never the token: `token_issued_at`/`token_expires_at` (epoch seconds; 0: not known
    to expire) for a token the app fetched with getAccessToken, and `token_refused`, set when ChartHop refused
    the org's token and no fresh one could be had (cleared by a fresh token or `orgs set-token`)."""

    org_id: str
    app_user_id: str
    state: OrgState = OrgState.ACTIVE
    token_secret: str = ""
    settings_source: SettingsSource = SettingsSource.REGISTRY
    settings: OrgSettings = field(default_factory=OrgSettings)
    version: int = 0
    created_at: str = ""
    updated_at: str = ""
    token_issued_at: int = 0
    token_expires_at: int = 0
    token_refused: TokenRefusal | None = None
    target_secrets: Mapping[str, str] = field(default_factory=dict)

    def to_item(self) -> dict[str, Any]:
        serializer = TypeSerializer()
        plain: dict[str, Any] = {
            "orgId": self.org_id,
            "appUserId": self.app_user_id,
            "state": self.state.value,
            "tokenSecret": self.token_secret,
            "settingsSource": self.settings_source.value,
            "settings": self.settings.to_document(),
            "version": self.version,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }
        if self.token_expires_at:
            plain.update(tokenIssuedAt=self.token_issued_at, tokenExpiresAt=self.token_expires_at)
        if self.token_refused is not None:
            plain["tokenRefused"] = self.token_refused.to_document()
        if self.target_secrets:
            plain["targetTokenSecrets"] = dict(self.target_secrets)
        return {key: serializer.serialize(value) for key, value in plain.items()}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> OrgRecord:
        """A stored item; settings that fail validation raise InvalidOrgSettings (see resolve_org)."""
        deserializer = TypeDeserializer()
        plain = {key: deserializer.deserialize(value) for key, value in item.items()}
        return cls(
            org_id=str(plain["orgId"]),
            app_user_id=str(plain.get("appUserId", "")),
            state=OrgState(str(plain.get("state", OrgState.ACTIVE.value))),
            token_secret=str(plain.get("tokenSecret", "")),
            settings_source=SettingsSource(str(plain.get("settingsSource", SettingsSource.REGISTRY.value))),
            settings=parse_settings(plain.get("settings") or {}),
            version=int(plain.get("version", 0)),
            created_at=str(plain.get("createdAt", "")),
            updated_at=str(plain.get("updatedAt", "")),
            token_issued_at=int(plain.get("tokenIssuedAt") or 0),
            token_expires_at=int(plain.get("tokenExpiresAt") or 0),
            token_refused=(
                TokenRefusal.from_document(plain["tokenRefused"])
                if isinstance(plain.get("tokenRefused"), Mapping)
                else None
            ),
            target_secrets={
                str(target): str(name)
                for target, name in dict(plain.get("targetTokenSecrets") or {}).items()
                if target in FURTHER_TARGETS and name
            },
        )

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "orgId": self.org_id,
            "state": self.state.value,
            "appUserId": self.app_user_id,
            "tokenSecret": self.token_secret,
            "settingsSource": self.settings_source.value,
            "settings": self.settings.as_assignments(),
            "targetTokenSecrets": dict(self.target_secrets),
            "version": self.version,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            **({"tokenExpiresAt": _iso(self.token_expires_at)} if self.token_expires_at else {}),
            **({"tokenRefused": self.token_refused.to_document()} if self.token_refused is not None else {}),
        }


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _now_iso(clock: Callable[[], float]) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


class OrgRegistry:
    """The registry table. Every write is conditional: `add` only when the org is new, `save` only when the
    stored version is the one read, so a concurrent edit is never silently overwritten."""

    def __init__(
        self, table_name: str, client: DynamoDBClient | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.table_name = table_name
        self._client = client
        self.clock = clock

    @classmethod
    def from_env(cls) -> OrgRegistry:
        """The deployment's registry: the table the stack names in the functions' environment."""
        return cls(os.environ.get(ORG_TABLE_ENV, ""), aws_clients.dynamodb())

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws_clients.dynamodb()
        return self._client

    def get(self, org_id: str) -> OrgRecord | None:
        item = self.client.get_item(TableName=self.table_name, Key={"orgId": {"S": org_id}}, ConsistentRead=True).get(
            "Item"
        )
        return None if item is None else OrgRecord.from_item(item)

    def get_item(self, org_id: str) -> dict[str, Any] | None:
        """The raw item (tests and the tool's JSON output look at exactly what is stored)."""
        item = self.client.get_item(TableName=self.table_name, Key={"orgId": {"S": org_id}}, ConsistentRead=True)
        return dict(item["Item"]) if "Item" in item else None

    def items(self) -> Iterator[dict[str, Any]]:
        """Every stored item, raw, in no particular order (a Scan: for the operator's tool, never on a sync's
        path)."""
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name, ConsistentRead=True):
            yield from (dict(item) for item in page.get("Items", []))

    def all(self) -> Iterator[OrgRecord]:
        """Every org; raises InvalidOrgSettings at an entry whose stored settings do not validate."""
        for item in self.items():
            yield OrgRecord.from_item(item)

    def add(self, record: OrgRecord) -> OrgRecord:
        """Stores a new org (version 1); raises OrgExists when the org is registered already."""
        check_org_id(record.org_id)
        now = _now_iso(self.clock)
        stored = replace(record, version=1, created_at=now, updated_at=now)
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=stored.to_item(),
                ConditionExpression="attribute_not_exists(orgId)",
            )
        except ClientError as exc:
            if condition_failed(exc):
                raise OrgExists(f"org {record.org_id} is registered already") from None
            raise
        return stored

    def save(self, record: OrgRecord) -> OrgRecord:
        """Writes `record` over the stored one if that is still at `record.version`; returns the stored
        record (version + 1). Raises OrgConflict when someone else wrote in between, OrgNotFound when gone."""
        stored = replace(record, version=record.version + 1, updated_at=_now_iso(self.clock))
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=stored.to_item(),
                ConditionExpression="attribute_exists(orgId) AND version = :read",
                ExpressionAttributeValues={":read": {"N": str(record.version)}},
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            if self.get_item(record.org_id) is None:
                raise OrgNotFound(f"org {record.org_id} is not registered") from None
            raise OrgConflict(f"org {record.org_id} changed since it was read (version {record.version})") from None
        return stored

    # The syncs' own writes: the token's metadata only (one UpdateItem each, never the token). Each bumps
    # `version`, so an operator's concurrent edit (conditioned on the version it read) re-reads and keeps it.

    def note_token(self, org_id: str, *, issued_at: int, expires_at: int) -> None:
        """A fresh token (getAccessToken) is in the org's secret: its lifetime, and any refusal mark cleared."""
        self._update_token_fields(
            org_id,
            "SET tokenIssuedAt = :issued, tokenExpiresAt = :expires",
            {":issued": {"N": str(int(issued_at))}, ":expires": {"N": str(int(expires_at))}},
            remove="tokenRefused",
        )

    def mark_token_refused(self, org_id: str, refusal: TokenRefusal, *, default_app_user_id: str | None = None) -> None:
        """ChartHop refused the org's token (see TokenRefusal). `default_app_user_id`: the org is the stack's own
        org, which may have no entry yet: one is made (with the stack's defaults, which it resolves to anyway)."""
        values: dict[str, Any] = {":refused": TypeSerializer().serialize(refusal.to_document())}
        expression = "SET tokenRefused = :refused"
        if default_app_user_id is not None:
            expression += (
                ", appUserId = if_not_exists(appUserId, :app_user), createdAt = if_not_exists(createdAt, :now)"
            )
            values[":app_user"] = {"S": default_app_user_id}
        self._update_token_fields(org_id, expression, values, create=default_app_user_id is not None)

    def _update_token_fields(
        self, org_id: str, expression: str, values: dict[str, Any], *, remove: str = "", create: bool = False
    ) -> None:
        update = f"{expression}, version = if_not_exists(version, :zero) + :one, updatedAt = :now"
        if remove:
            update += f" REMOVE {remove}"
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"orgId": {"S": org_id}},
            "UpdateExpression": update,
            "ExpressionAttributeValues": {
                **values,
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":now": {"S": _now_iso(self.clock)},
            },
        }
        if not create:
            kwargs["ConditionExpression"] = "attribute_exists(orgId)"
        try:
            self.client.update_item(**kwargs)
        except ClientError as exc:
            if condition_failed(exc):
                raise OrgNotFound(f"org {org_id} is not registered") from None
            raise

    def modify(self, org_id: str, change: Callable[[OrgRecord], OrgRecord], *, attempts: int = 5) -> OrgRecord:
        """Applies `change` to the latest record and saves it; on a conflict reads again and reapplies, so
        concurrent edits all land. `change` must be a function of the record it is given."""
        for _ in range(attempts):
            current = self.get(org_id)
            if current is None:
                raise OrgNotFound(f"org {org_id} is not registered")
            try:
                return self.save(change(current))
            except OrgConflict:
                continue
        raise OrgConflict(f"org {org_id} kept changing; try again")


# --- resolving an org -------------------------------------------------------------------------------

NotServedReason = Literal["unknown", "paused", "uninstalled", "no-token", "misconfigured"]


@dataclass(frozen=True)
class OrgConfig:
    """Everything a sync for one org needs: who it is in ChartHop, where its token lives, its settings."""

    org_id: str
    app_user_id: str
    token_secret: str
    settings: EffectiveSettings
    #: The stack's default org served from the stack's parameters (no registry entry).
    from_stack_defaults: bool = False
    settings_source: SettingsSource = SettingsSource.REGISTRY
    #: The token's lifetime (epoch seconds; 0: not known to expire), when the app fetched it (getAccessToken).
    #: Not compared: a refreshed token does not make a new context (the client asks org_tokens for the token).
    token_issued_at: int = field(default=0, compare=False)
    token_expires_at: int = field(default=0, compare=False)
    #: The secrets of the org's own further-target tokens (OrgRecord.target_secrets).
    target_secrets: Mapping[str, str] = field(default_factory=dict)

    @property
    def served(self) -> Literal[True]:
        return True


@dataclass(frozen=True)
class NotServed:
    """This deployment does not sync for the org; `message` says why, for a report or a log line."""

    org_id: str
    reason: NotServedReason
    message: str

    @property
    def served(self) -> Literal[False]:
        return False


OrgResolution = OrgConfig | NotServed
#: Reads an org's settings where they live in ChartHop (charthop_apps.OptionsSettingsReader).
SettingsReader = Callable[[OrgRecord, str], OrgSettings]


def resolve_org(
    org_id: str,
    *,
    registry: OrgRegistry | None = None,
    defaults: StackDefaults | None = None,
    charthop_settings: SettingsReader | None = None,
    continuing: bool = False,
) -> OrgResolution:
    """The org's effective config, or NotServed with the reason (unknown, paused, uninstalled, no-token,
    misconfigured). Handlers call it with no arguments: the registry and defaults come from the function's
    environment; a registry entry always wins over the stack's default org.

    `charthop_settings(record, token_secret)` reads the settings of an org whose settings live in ChartHop.
    `continuing`: for a sync that already started (its checks, its close): a paused org's running syncs are
    followed to their end; pausing only stops new ones. An uninstalled org is never served.
    """
    if registry is None or defaults is None:
        from people_sync.config import AppSettings

        settings = AppSettings.from_env()
        defaults = defaults or StackDefaults.from_settings(settings)
        registry = registry or OrgRegistry.from_env()
    if not ORG_ID_PATTERN.match(org_id):
        return NotServed(org_id, "unknown", f"{org_id!r} is not an org id this deployment serves")
    default_org = org_id == defaults.org_id
    try:
        record = registry.get(org_id) if registry.table_name else None
    except InvalidOrgSettings as exc:
        return NotServed(org_id, "misconfigured", f"org {org_id}'s stored settings are refused: {exc}")
    if record is None:
        if not default_org:
            return NotServed(org_id, "unknown", f"org {org_id} is not registered with this deployment")
        return OrgConfig(
            org_id=org_id,
            app_user_id=defaults.app_user_id,
            token_secret=defaults.token_secret,
            settings=merge_settings(defaults, OrgSettings(), default_org=True),
            from_stack_defaults=True,
        )
    if record.state is OrgState.PAUSED and not continuing:
        return NotServed(org_id, "paused", f"org {org_id} is paused (resume it to sync again)")
    if record.state is OrgState.UNINSTALLED:
        return NotServed(org_id, "uninstalled", f"org {org_id} uninstalled the app; its staged files are kept")
    token_secret = record.token_secret or (defaults.token_secret if default_org else "")
    if not token_secret:
        return NotServed(org_id, "no-token", f"org {org_id} has no ChartHop token yet (orgs set-token {org_id})")
    try:
        overrides = record.settings
        if record.settings_source is SettingsSource.CHARTHOP:
            if charthop_settings is None:
                from people_sync.charthop_apps import settings_reader_for

                charthop_settings = settings_reader_for()
            # only the operator says where an org's data goes: Orgvue and ELMA365 come from the registry
            overrides = charthop_settings(record, token_secret).with_targets_of(record.settings)
        effective = merge_settings(defaults, overrides, default_org=default_org)
    except InvalidOrgSettings as exc:
        return NotServed(org_id, "misconfigured", f"org {org_id}'s settings are refused: {exc}")
    return OrgConfig(
        org_id=org_id,
        app_user_id=record.app_user_id or (defaults.app_user_id if default_org else ""),
        token_secret=token_secret,
        settings=effective,
        settings_source=record.settings_source,
        token_issued_at=record.token_issued_at,
        token_expires_at=record.token_expires_at,
        target_secrets=dict(record.target_secrets),
    )


def refusal(org_id: str, *, registry: OrgRegistry, default_org_id: str) -> NotServed | None:
    """Why the deployment would not sync for `org_id` (None: it would), from the org's entry alone: one
    GetItem, no secret and no settings read (the webhook answers fast; the import starter resolves in full).
    Paused, uninstalled, unknown and token-less orgs are refused; an entry whose settings do not validate is
    misconfigured."""
    if not ORG_ID_PATTERN.match(org_id):
        return NotServed(org_id, "unknown", f"{org_id!r} is not an org id this deployment serves")
    try:
        record = registry.get(org_id) if registry.table_name else None
    except InvalidOrgSettings as exc:
        return NotServed(org_id, "misconfigured", f"org {org_id}'s stored settings are refused: {exc}")
    default_org = org_id == default_org_id
    if record is None:
        if default_org:
            return None
        return NotServed(org_id, "unknown", f"org {org_id} is not registered with this deployment")
    if record.state is OrgState.PAUSED:
        return NotServed(org_id, "paused", f"org {org_id} is paused (resume it to sync again)")
    if record.state is OrgState.UNINSTALLED:
        return NotServed(org_id, "uninstalled", f"org {org_id} uninstalled the app; its staged files are kept")
    if not record.token_secret and not default_org:
        return NotServed(org_id, "no-token", f"org {org_id} has no ChartHop token yet (orgs set-token {org_id})")
    return None
