"""Which import target (and which org) a staged file goes to: the folder under the staging prefix names it.

<StagingPrefix><ChartHopOrgId>/roster.csv  -> ChartHop (the stack's own org)
<StagingPrefix><orgId>/roster.csv          -> ChartHop, that org (when the org registry serves it)
<StagingPrefix>orgvue/roster.csv           -> Orgvue   (when OrgvueBaseUrl is set)
<StagingPrefix>elma365/roster.csv          -> ELMA365  (when Elma365BaseUrl is set)
"""

from __future__ import annotations

from people_sync.config import AppSettings

CHARTHOP = "charthop"
ORGVUE = "orgvue"
ELMA365 = "elma365"
#: The staging folder of each further target (ChartHop's folder is the org id).
TARGET_FOLDERS = {ORGVUE: "orgvue", ELMA365: "elma365"}


def enabled_targets(settings: AppSettings) -> list[str]:
    targets = [CHARTHOP]
    if settings.orgvue_base_url:
        targets.append(ORGVUE)
    if settings.elma365_base_url:
        targets.append(ELMA365)
    return targets


def folder_of_target(target: str, settings: AppSettings) -> str:
    return settings.org_id if target == CHARTHOP else TARGET_FOLDERS[target]


def target_for_folder(folder: str, settings: AppSettings) -> str | None:
    """The enabled target whose staging folder this is, or None."""
    for target in enabled_targets(settings):
        if folder == folder_of_target(target, settings):
            return target
    return None


def target_for_key(key: str, settings: AppSettings) -> str:
    """The target for an S3 key; ChartHop's flow handles (and refuses) keys in no target's folder."""
    relative = key[len(settings.staging_prefix) :] if key.startswith(settings.staging_prefix) else ""
    folder = relative.split("/", 1)[0] if "/" in relative else ""
    return target_for_folder(folder, settings) or CHARTHOP


def staging_folders(settings: AppSettings) -> list[str]:
    """Where files may be staged, in words for messages."""
    return [f"{settings.staging_prefix}{folder_of_target(t, settings)}/" for t in enabled_targets(settings)]


def org_for_key(key: str, settings: AppSettings) -> str | None:
    """The ChartHop org whose folder a key is staged in (`<prefix><orgId>/...`, the first folder), or None when
    the key is in no folder (the stack's own org's flow refuses it) or in a further target's folder. A key in a
    subfolder of an org's folder (`<prefix><orgId>/sub/file.csv`) is that org's too: it is refused (or set aside,
    for an org not served) there, never reported in another org's ChartHop."""
    relative = key[len(settings.staging_prefix) :] if key.startswith(settings.staging_prefix) else ""
    parts = relative.split("/")
    if len(parts) < 2 or not parts[0] or parts[0] in TARGET_FOLDERS.values():
        return None
    return parts[0]
