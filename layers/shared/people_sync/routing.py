"""Which import target (and which org) a staged file goes to: the folder under the staging prefix names it.

<StagingPrefix><ChartHopOrgId>/roster.csv      -> ChartHop (the stack's own org)
<StagingPrefix><orgId>/roster.csv              -> ChartHop, that org (when the org registry serves it)
<StagingPrefix>orgvue/roster.csv               -> Orgvue   for the stack's own org (when OrgvueBaseUrl is set)
<StagingPrefix>elma365/roster.csv              -> ELMA365  for the stack's own org (when Elma365BaseUrl is set)
<StagingPrefix><orgId>/orgvue/roster.csv       -> Orgvue   for that org (when its settings feed Orgvue)
<StagingPrefix><orgId>/elma365/roster.csv      -> ELMA365  for that org (when its settings feed ELMA365)

An org's further-target folders sit inside its own folder, so everything an org stages is under
`<StagingPrefix><orgId>/` (one prefix to grant its export job, one to list); whether the org feeds the target,
and where, is its settings' business (org_registry.py), decided when the file's sync context is built.
"""

from __future__ import annotations

from people_sync.config import AppSettings

CHARTHOP = "charthop"
ORGVUE = "orgvue"
ELMA365 = "elma365"
#: The staging folder of each further target (ChartHop's folder is the org id).
TARGET_FOLDERS = {ORGVUE: "orgvue", ELMA365: "elma365"}
DISPLAY_NAMES = {CHARTHOP: "ChartHop", ORGVUE: "Orgvue", ELMA365: "ELMA365"}


def enabled_targets(settings: AppSettings) -> list[str]:
    """The targets the stack's own parameters configure (an org may configure further targets of its own)."""
    targets = [CHARTHOP]
    if settings.orgvue_base_url:
        targets.append(ORGVUE)
    if settings.elma365_base_url:
        targets.append(ELMA365)
    return targets


def folder_of_target(target: str, settings: AppSettings, org_id: str | None = None) -> str:
    """The folder (under the staging prefix) a target reads for an org: the org id for ChartHop; for a further
    target, `orgvue` for the stack's own org (as always) and `<orgId>/orgvue` for any other org."""
    org = org_id or settings.org_id
    if target not in TARGET_FOLDERS:  # ChartHop
        return org
    return TARGET_FOLDERS[target] if org == settings.org_id else f"{org}/{TARGET_FOLDERS[target]}"


def folders_of_target(target: str, settings: AppSettings, org_id: str | None = None) -> tuple[str, ...]:
    """Every folder whose files go to `target` for the org: the stack's own org reads its further targets'
    files from `orgvue/` and from `<its id>/orgvue/` alike."""
    org = org_id or settings.org_id
    if target in TARGET_FOLDERS and org == settings.org_id:
        return (TARGET_FOLDERS[target], f"{org}/{TARGET_FOLDERS[target]}")
    return (folder_of_target(target, settings, org),)


def target_for_folder(folder: str, settings: AppSettings) -> str | None:
    """The enabled target whose stack-level staging folder this is, or None."""
    for target in enabled_targets(settings):
        if folder == folder_of_target(target, settings):
            return target
    return None


def _parts(key: str, settings: AppSettings) -> list[str]:
    relative = key[len(settings.staging_prefix) :] if key.startswith(settings.staging_prefix) else ""
    return relative.split("/") if relative else []


def _org_target_folder(parts: list[str]) -> str | None:
    """The further target of `<orgId>/<target folder>/<file>`, or None."""
    if len(parts) != 3 or not all(parts) or parts[0] in TARGET_FOLDERS.values():
        return None
    return next((target for target, folder in TARGET_FOLDERS.items() if folder == parts[1]), None)


def target_for_key(key: str, settings: AppSettings) -> str:
    """The target for an S3 key; ChartHop's flow handles (and refuses) keys in no target's folder."""
    parts = _parts(key, settings)
    nested = _org_target_folder(parts)
    if nested is not None:
        return nested
    folder = parts[0] if len(parts) > 1 else ""
    return target_for_folder(folder, settings) or CHARTHOP


def staging_folders(settings: AppSettings) -> list[str]:
    """Where files may be staged, in words for messages."""
    return [f"{settings.staging_prefix}{folder_of_target(t, settings)}/" for t in enabled_targets(settings)]


def org_for_key(key: str, settings: AppSettings) -> str | None:
    """The ChartHop org whose folder a key is staged in (`<prefix><orgId>/...`, the first folder: a file, its
    further targets' `<orgId>/<target>/<file>`, or any other subfolder), or None when the key is in no folder
    (the stack's own org's flow refuses it) or in one of the stack's own org's further-target folders. A key in
    another subfolder of an org's folder (`<prefix><orgId>/sub/file.csv`) is that org's too: it is refused (or
    set aside, for an org not served) there, never reported in another org's ChartHop."""
    parts = _parts(key, settings)
    if len(parts) < 2 or not parts[0] or parts[0] in TARGET_FOLDERS.values():
        return None
    return parts[0]
