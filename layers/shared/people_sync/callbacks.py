"""Signed callback URLs: a target that calls back (Orgvue) gets a URL naming the sync and a signature,
so the callback route acts only on calls for syncs this deployment started."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

SYNC_PARAMETER = "sync"
SIGNATURE_PARAMETER = "sig"


def signature(sync_id: str, key: str) -> str:
    return hmac.new(key.encode(), sync_id.encode(), hashlib.sha256).hexdigest()


def callback_url(base_url: str, sync_id: str, key: str) -> str:
    separator = "&" if "?" in base_url else "?"
    query = urlencode({SYNC_PARAMETER: sync_id, SIGNATURE_PARAMETER: signature(sync_id, key)})
    return f"{base_url}{separator}{query}"


def is_signed(sync_id: str | None, presented: str | None, key: str) -> bool:
    """Constant-time check of a callback's signature."""
    if not sync_id or not presented or not key:
        return False
    return hmac.compare_digest(signature(sync_id, key), presented)
