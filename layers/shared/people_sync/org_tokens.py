"""An org's ChartHop token as its syncs use it: kept per org in a warm container with its expiry, refreshed
before it expires and once when ChartHop refuses it, and a refusal that cannot be mended recorded where an
operator sees it.

Where a token comes from: the org's own secret (the operator's `orgs set-token`, or a token the app fetched
earlier). When ChartHop refuses it (401), the secret is read again first (an operator or another container
may have stored a newer one); then, for an org other than the stack's own, the app asks ChartHop for the
installed app's current token (getAccessToken, with the stack's own org's token: see api_assumptions.py),
stores it in the org's secret and records its lifetime on the org's registry entry. A token fetched that way
expires after `expires_in` seconds: it is refreshed before then (REFRESH_MARGIN_SECONDS, at most a quarter of
its life, ahead), and a warm container never keeps sending an expired one.

Bounds: a client asks for a fresh token at most once per call (charthop_client.py), a refresh that failed is
not tried again for the same token for FAILED_REFRESH_PAUSE_SECONDS, and nothing here loops. A token is never
logged, put in an error or written anywhere but the org's secret.

When no fresh token can be had, `record_refusal` marks the org's registry entry (when, which operation, which
sync process was left open), logs an ERROR and emits `OrgTokenRefused` (dimensions target, org); the admin
tool's `orgs list`/`orgs show` show it and `orgs set-token` clears it. Other orgs are not affected: each org has
its own token, its own Sync Now slot and its own import queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from people_sync import sync_metrics
from people_sync.errors import ChartHopTokenRefused, SyncError
from people_sync.org_registry import OrgRegistry, TokenRefusal

if TYPE_CHECKING:
    from people_sync.charthop_apps import AccessToken
    from people_sync.config import AppSettings

logger = logging.getLogger(__name__)

#: A fetched token is refreshed this long before it expires (or a quarter of its lifetime, if that is shorter).
REFRESH_MARGIN_SECONDS = 300
REFRESH_MARGIN_SHARE = 0.25
#: After a refresh failed, the same token is not refreshed again for this long in this container.
FAILED_REFRESH_PAUSE_SECONDS = 60

#: Asks ChartHop for the org's installed app's current token (getAccessToken).
Minter = Callable[[], "AccessToken"]
#: Keeps a fresh token: (token, issued_at, expires_at) into the org's secret and its registry entry.
Keeper = Callable[[str, int, int], None]
#: The org's secret, read now (not from a cache).
Reader = Callable[[], str]


class OrgToken:
    """One org's token in one container (a charthop_client.TokenSource); thread-safe."""

    def __init__(
        self,
        org_id: str,
        token: str,
        *,
        issued_at: int = 0,
        expires_at: int = 0,
        mint: Minter | None = None,
        keep: Keeper | None = None,
        read_secret: Reader | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.org_id = org_id
        self._token = token
        #: What the org's secret held when last read through the cache (see `observe`).
        self._seen = token
        self._issued_at = issued_at
        self._expires_at = expires_at
        self._mint = mint
        self._keep = keep
        self._read_secret = read_secret
        self.clock = clock
        self._failed: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def can_refresh(self) -> bool:
        return self._mint is not None

    @property
    def expires_at(self) -> int:
        return self._expires_at

    def observe(self, secret_value: str, *, issued_at: int, expires_at: int) -> None:
        """What the org's secret (through the container's cache) and its registry entry say now. A secret that
        changed since it was last seen is adopted (an operator's set-token, another container's refresh); an
        unchanged one does not undo a refresh made here (the cache may still hold the older value). Skipped
        while a refresh is under way (it sets the token itself): building a context never waits on ChartHop."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if secret_value and secret_value != self._seen:
                self._seen = secret_value
                self._adopt(secret_value, issued_at, expires_at)
            elif secret_value == self._token and expires_at != self._expires_at:
                self._issued_at, self._expires_at = issued_at, expires_at
        finally:
            self._lock.release()

    def token(self) -> str:
        """The token to send now: refreshed first when it expires within the margin (and can be refreshed)."""
        with self._lock:
            if self._due() and self._may_refresh(self._token):
                self._refresh("expiring")
            return self._token

    def refused(self, token: str) -> str | None:
        """ChartHop answered 401 to `token`: a fresher one (already here, in the secret, or fetched from
        ChartHop), or None when there is none."""
        with self._lock:
            if token != self._token:
                return self._token  # refreshed meanwhile (another thread of this container)
            if self._read_secret is not None:
                try:
                    stored = self._read_secret().strip()
                except Exception:  # the secret cannot be read now: fetching one from ChartHop may still work
                    logger.warning(
                        "could not read the org's token secret again", extra={"org_id": self.org_id}, exc_info=True
                    )
                    stored = ""
                if stored and stored != token:
                    self._seen = stored
                    self._adopt(stored, 0, 0)
                    logger.info("using the token stored meanwhile in the org's secret", extra={"org_id": self.org_id})
                    return stored
            if not self._may_refresh(token):
                return None
            return self._refresh("refused")

    # --- inside the lock ----------------------------------------------------------------------------

    def _adopt(self, token: str, issued_at: int, expires_at: int) -> None:
        self._token, self._issued_at, self._expires_at = token, issued_at, expires_at

    def _due(self) -> bool:
        if not self._expires_at:
            return False
        life = max(0, self._expires_at - self._issued_at) if self._issued_at else REFRESH_MARGIN_SECONDS * 4
        margin = min(REFRESH_MARGIN_SECONDS, REFRESH_MARGIN_SHARE * life)
        return self.clock() >= self._expires_at - margin

    def _may_refresh(self, token: str) -> bool:
        if self._mint is None:
            return False
        failed = self._failed.get(token)
        return failed is None or self.clock() - failed >= FAILED_REFRESH_PAUSE_SECONDS

    def _refresh(self, why: str) -> str | None:
        assert self._mint is not None
        replaced = self._token
        where = {"org_id": self.org_id, "reason": why}
        try:
            minted = self._mint()
        except SyncError as error:
            self._failed[replaced] = self.clock()
            logger.warning("could not fetch a fresh token for the org", extra={**where, "error": error.user_message})
            return None
        except Exception:  # e.g. the stack's own org's entry or secret cannot be read: the refusal stands
            self._failed[replaced] = self.clock()
            logger.warning("could not fetch a fresh token for the org", extra=where, exc_info=True)
            return None
        fresh = minted.access_token.get_secret_value().strip()
        if not fresh or (fresh == replaced and why == "refused"):
            self._failed[replaced] = self.clock()
            logger.warning("ChartHop handed back the token it refused; no fresh token", extra=where)
            return None
        issued = int(self.clock())
        expires = issued + minted.expires_in if minted.expires_in > 0 else 0
        if fresh == replaced and self._expires_at and expires <= self._expires_at:
            self._failed[replaced] = self.clock()  # the same token, no longer-lived: not asked again for a while
            logger.warning("ChartHop handed back the same token, no longer-lived; used until it expires", extra=where)
            return None
        self._adopt(fresh, issued, expires)
        self._failed.pop(replaced, None)
        if self._keep is not None:
            try:
                self._keep(fresh, issued, expires)
            except Exception:  # this container goes on with it; others fetch their own
                logger.warning(
                    "could not store the fresh token; used by this container only", extra=where, exc_info=True
                )
        logger.info(
            "fetched a fresh token for the org", extra={**where, "expires_at": _iso(expires) if expires else None}
        )
        sync_metrics.emit_for("charthop", self.org_id, "OrgTokenRefreshed", 1)
        return fresh


def record_refusal(
    registry: OrgRegistry,
    org_id: str,
    error: ChartHopTokenRefused,
    *,
    sync_process_id: str | None = None,
    default_app_user_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> TokenRefusal:
    """ChartHop refused the org's token and no fresh one could be had: the mark on its registry entry, an ERROR
    log line and the `OrgTokenRefused` metric. `default_app_user_id` when the org is the stack's own org (its
    entry is made if it has none). A failed registry write is logged: the log line and metric still tell."""
    refusal = TokenRefusal(
        at=_iso(clock()),
        operation=error.operation,
        sync_process_id=sync_process_id or "",
        message=error.user_message,
    )
    where: dict[str, Any] = {
        "org_id": org_id,
        "operation": error.operation,
        "sync_process_id": sync_process_id,
        "left_open": bool(sync_process_id),
        "action": f"orgs set-token {org_id}",
    }
    try:
        if registry.table_name:
            registry.mark_token_refused(org_id, refusal, default_app_user_id=default_app_user_id)
    except Exception:
        logger.warning("could not mark the refused token on the org's entry", extra=where, exc_info=True)
    logger.error(
        "ChartHop refused the org's token; nothing is written to its ChartHop until a working token is stored",
        extra=where,
    )
    sync_metrics.emit_for("charthop", org_id, "OrgTokenRefused", 1)
    return refusal


def note_refusal(
    settings: AppSettings, org_id: str, error: ChartHopTokenRefused, *, sync_process_id: str | None = None
) -> TokenRefusal:
    """record_refusal in a function: the registry named by its environment; `settings` are the sync context's
    (the org's own app user when it is the stack's own org, whose entry may have to be made)."""
    registry = OrgRegistry.from_env()
    own = org_id == settings.org_id
    return record_refusal(
        registry,
        org_id,
        error,
        sync_process_id=sync_process_id,
        default_app_user_id=settings.app_user_id if own else None,
    )


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
