"""ChartHop's app-install reads (found in the App API spec): `getInstalledApp`, `getActiveAppInstalls`,
`getAccessToken`; and an org's settings read from its installed app user's `options`, the values its admin
filled in on the app's configuration page (the fields the app declares in `App.configFields`).

The calls go through an existing ChartHopClient (its session, retries and time budget). What the spec
leaves open (the keys and value types inside `options`, which install belongs to which org, which token
may list installs) is assumed in api_assumptions.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from people_sync import api_assumptions as assumed
from people_sync.charthop_client import ChartHopClient
from people_sync.models import CamelModel
from people_sync.org_registry import (
    SETTING_KEYS,
    InvalidOrgSettings,
    OrgRecord,
    OrgSettings,
    settings_from_assignments,
)

#: At most this many pages of installs are read (ChartHop's page size is its own).
MAX_INSTALL_PAGES = 100


class OrgAccess(CamelModel):
    """One entry of User.orgs (found: required orgId, access)."""

    org_id: str
    access: str | None = None
    status: str | None = None


class InstalledApp(CamelModel):
    """An installed app: ChartHop's User of type APP (found: id, appId, status, type, orgs, options).

    Only these fields are kept: `secrets` and `internalOptions` are never read into memory."""

    id: str
    app_id: str | None = None
    status: str | None = None
    type: str | None = None
    orgs: list[OrgAccess] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def org_id(self) -> str | None:
        """(assumption) The org an install belongs to is its app user's org membership."""
        return self.orgs[0].org_id if self.orgs else None

    @property
    def installed(self) -> bool:
        return (self.status or "").upper() not in assumed.CHARTHOP_INSTALL_GONE_STATUSES


@dataclass(frozen=True)
class InstallListing:
    """What getActiveAppInstalls listed, each install once; `truncated` says why the listing may be incomplete
    (None: every page was read to one without `next`). A truncated listing proves no install is gone."""

    installs: list[InstalledApp] = field(default_factory=list)
    truncated: str | None = None


class AccessToken(BaseModel):
    """getAccessToken's answer (found: AccessTokenResponse; required access_token, expires_in). The token is
    a SecretStr: it never shows in a repr, a log line or an error."""

    model_config = ConfigDict(extra="ignore")

    access_token: SecretStr
    expires_in: int
    token_type: str | None = None
    scope: str | None = None


class ChartHopApps:
    """The app-install calls, on a ChartHopClient authenticated with an app token."""

    def __init__(self, client: ChartHopClient) -> None:
        self.client = client

    def installed_app(self, org_id: str, app_user_id: str) -> InstalledApp:
        data = self.client._json("GET", f"/v1/app/org/{org_id}/install/{app_user_id}", what="read the installed app")
        return InstalledApp.model_validate(data)

    def active_installs(self, app_id: str) -> Iterator[InstalledApp]:
        """Every active install of the app that `list_installs` could read (it may be truncated: callers that
        conclude anything from an install's absence use `list_installs`)."""
        yield from self.list_installs(app_id).installs

    def list_installs(self, app_id: str) -> InstallListing:
        """The app's active installs, page after page (getActiveAppInstalls). The spec defines no paging
        parameter; `next` is passed back as `from` (assumption, api_assumptions). Should ChartHop ignore `from`,
        the listing stops at a repeated cursor or at a page that brings no new install, and says it is truncated;
        so it does after MAX_INSTALL_PAGES pages."""
        params: dict[str, Any] = {assumed.CHARTHOP_INSTALLS_HAS_RUN_PROCESS_PARAM: "false"}
        installs: list[InstalledApp] = []
        ids: set[str] = set()
        cursors: set[str] = set()
        for _ in range(MAX_INSTALL_PAGES):
            page = self.client._json("GET", f"/v1/app/install/{app_id}", what="list the app's installs", params=params)
            new = 0
            for user in page.get("data") or []:
                install = InstalledApp.model_validate(user)
                if install.id not in ids:
                    ids.add(install.id)
                    installs.append(install)
                    new += 1
            cursor = page.get(assumed.CHARTHOP_NEXT_FIELD)
            if not cursor:
                return InstallListing(installs)
            cursor = str(cursor)
            if cursor in cursors:
                return InstallListing(installs, f"ChartHop answered the cursor {cursor!r} twice")
            if not new:
                return InstallListing(
                    installs, f"a page with `{assumed.CHARTHOP_NEXT_FIELD}` brought no new install (is `from` ignored?)"
                )
            cursors.add(cursor)
            params = {**params, assumed.CHARTHOP_PAGE_FROM_PARAM: cursor}
        return InstallListing(installs, f"stopped after {MAX_INSTALL_PAGES} pages with more to read")

    def access_token(self, org_id: str, app_user_id: str) -> AccessToken:
        data = self.client._json(
            "GET", f"/v1/app/org/{org_id}/install/{app_user_id}/token", what="read the app's token"
        )
        return AccessToken.model_validate(data)


def settings_from_options(options: Mapping[str, Any]) -> OrgSettings:
    """An org's settings from its installed app's `options`. Keys that are not settings are ignored (the app
    may declare other fields); a field the admin left empty keeps the stack's default. Raises
    InvalidOrgSettings naming the bad field."""
    assignments: dict[str, Any] = {}
    for key in SETTING_KEYS:
        option = assumed.CHARTHOP_OPTION_KEYS.get(key, key)
        value = options.get(option)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        assignments[key] = value
    try:
        return settings_from_assignments(assignments)
    except InvalidOrgSettings as exc:
        raise InvalidOrgSettings(f"the app's configuration in ChartHop: {exc}") from None


ClientFactory = Callable[[str], ChartHopClient]


class OptionsSettingsReader:
    """Reads an org's settings from ChartHop with the org's own token; a value is reused for `max_age`
    seconds (a settings change in ChartHop reaches syncs within that time)."""

    def __init__(
        self,
        client_for_secret: ClientFactory,
        *,
        max_age: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_for_secret = client_for_secret
        self.max_age = max_age
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, OrgSettings]] = {}
        self._lock = threading.Lock()

    def __call__(self, record: OrgRecord, token_secret: str) -> OrgSettings:
        key = (record.org_id, record.app_user_id)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and self.clock() - cached[0] < self.max_age:
            return cached[1]
        if not record.app_user_id:
            raise InvalidOrgSettings("settings are read from ChartHop but the org has no app user id")
        app = ChartHopApps(self.client_for_secret(token_secret)).installed_app(record.org_id, record.app_user_id)
        settings = settings_from_options(app.options)
        with self._lock:
            self._cache[key] = (self.clock(), settings)
        return settings


_reader: OptionsSettingsReader | None = None


def settings_reader_for() -> OptionsSettingsReader:
    """The function's reader: ChartHop at the stack's base URL, tokens from Secrets Manager (cached)."""
    global _reader
    if _reader is None:
        from people_sync import aws_clients
        from people_sync.charthop_client import default_retry
        from people_sync.config import PARAMETER_MAX_AGE, AppSettings

        settings = AppSettings.from_env()

        def client_for(secret: str) -> ChartHopClient:
            token = str(aws_clients.secrets().get(secret, max_age=PARAMETER_MAX_AGE)).strip()
            return ChartHopClient(
                token,
                base_url=settings.charthop_base_url,
                retry=default_retry(backoff_factor=settings.charthop_retry_backoff_seconds),
            )

        _reader = OptionsSettingsReader(client_for)
    return _reader
