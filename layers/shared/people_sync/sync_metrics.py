"""Per-sync metrics with the dimensions `target` and `org` (the dashboard's "per target and org" widgets).

Powertools' Metrics object puts one set of dimensions on every metric of an invocation; these need their own,
so each is written at once as one CloudWatch embedded-metric-format (EMF) line on stdout, in the namespace
POWERTOOLS_METRICS_NAMESPACE (`PeopleSync`), unless POWERTOOLS_METRICS_DISABLED says not to (the offline stack).

Cardinality stays low: `target` is one of the known targets (anything else is "other"), and `org` is the org the
sync's context serves (an onboarded org id, so bounded by the org registry; never a file, sync or user id); an
id that does not look like one (characters outside [A-Za-z0-9_.-], or longer than 64) is "other".
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from people_sync.sync_service import SyncContext

logger = logging.getLogger(__name__)

NAMESPACE_DEFAULT = "PeopleSync"
KNOWN_TARGETS = ("charthop", "orgvue", "elma365")
DIMENSIONS = ("target", "org")
#: Every metric emitted here, with its unit (template tests check that the dashboard shows each).
METRICS = {
    "SyncsStarted": "Count",
    "SyncsDone": "Count",
    "SyncsFailed": "Count",
    "DuplicateSyncsClosed": "Count",
    "UploadBytes": "Bytes",
    "UploadSeconds": "Seconds",
    "ImportDurationSeconds": "Seconds",
    "ChecksPerSync": "Count",
    # an org's token (org_tokens.py) and files staged for an org that is not served (sync_start.py)
    "OrgTokenRefused": "Count",
    "OrgTokenRefreshed": "Count",
    "UnservedOrgFiles": "Count",
}
_ORG = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def dimensions(target: str, org: str) -> dict[str, str]:
    return {
        "target": target if target in KNOWN_TARGETS else "other",
        "org": org if _ORG.match(org or "") else "other",
    }


def document(name: str, value: float, unit: str, dims: dict[str, str], namespace: str, at: float) -> dict[str, Any]:
    """One EMF document: the metric `name` under `dims` (and the service name, as Powertools adds it)."""
    service = os.environ.get("POWERTOOLS_SERVICE_NAME", "people-sync")
    return {
        "_aws": {
            "Timestamp": int(at * 1000),
            "CloudWatchMetrics": [
                {"Namespace": namespace, "Dimensions": [list(DIMENSIONS)], "Metrics": [{"Name": name, "Unit": unit}]}
            ],
        },
        **dims,
        "service": service,
        name: value,
    }


def disabled() -> bool:
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    return bool(is_metrics_disabled())


def emit(ctx: SyncContext, name: str, value: float, *, unit: str | None = None) -> None:
    """Writes the metric for the context's target and org; a failure is logged, never raised."""
    emit_for(ctx.target.name, ctx.org_id, name, value, unit=unit)


def emit_for(target: str, org: str, name: str, value: float, *, unit: str | None = None) -> None:
    """Writes the metric for `target` and `org` where there is no sync context (an org's token, a file of an org
    not served: pass "other" for an org the registry does not know); a failure is logged, never raised."""
    try:
        if disabled():
            return
        dims = dimensions(target, org)
        namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE_DEFAULT
        line = document(name, value, unit or METRICS.get(name, "Count"), dims, namespace, time.time())
        print(json.dumps(line, separators=(",", ":")), flush=True)  # EMF: CloudWatch reads it from stdout
    except Exception:  # metrics never fail a sync
        logger.warning("could not emit metric %s", name, exc_info=True)
