"""Where staged files live in the bucket, and how to find and open them."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection
from datetime import UTC
from typing import IO, TYPE_CHECKING, Any

from people_sync.errors import InvalidStagedFile, NoStagedFile
from people_sync.models import StagedFile

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CSV_SUFFIX = ".csv"
#: Files that cannot be imported are moved here (outside the staging prefix, so nothing re-triggers).
FAILED_PREFIX = "failed/"
#: Row-error reports of finished imports: reports/<folder>/<file>.errors.csv (outside the staging prefix too).
REPORTS_PREFIX = "reports/"


def staged_file_from_s3_record(
    bucket: str,
    raw_key: str,
    version_id: str | None,
    size: int | None,
    *,
    prefix: str,
    target_folders: Collection[str] = (),
) -> StagedFile:
    """Reads `{prefix}{folder}/{name}` out of an object key. The folder is the org id, or (for an org's
    further target, one of `target_folders`) `{orgId}/{target folder}`: the StagedFile's `org_id` is that
    folder, which refused files are moved under (failed/<folder>/)."""
    key = raw_key
    if not key.startswith(prefix):
        raise InvalidStagedFile(f"{key} is outside the staging prefix {prefix}.")
    parts = key[len(prefix) :].split("/")
    if len(parts) == 3 and all(parts) and parts[1] in target_folders and parts[0] not in target_folders:
        return StagedFile(bucket=bucket, key=key, version_id=version_id, org_id=f"{parts[0]}/{parts[1]}", size=size)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise InvalidStagedFile(f"{key} must be staged as {prefix}<orgId>/<file>.csv.")
    return StagedFile(bucket=bucket, key=key, version_id=version_id, org_id=parts[0], size=size)


def latest_staged_file(s3: S3Client, bucket: str, prefix: str, org_id: str) -> StagedFile:
    """The most recently staged CSV for an org: what "Sync Now" imports.

    S3 lists modification times to the second; files staged within the same second are ordered by
    key, so timestamped names (roster-2026-11-23T0900.csv) pick the later export.
    """
    org_prefix = f"{prefix}{org_id}/"
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=org_prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(org_prefix) :]
            if "/" in name or not name.lower().endswith(CSV_SUFFIX):
                continue
            if newest is None or (item["LastModified"], item["Key"]) > (newest["LastModified"], newest["Key"]):
                newest = item
    if newest is None:
        raise NoStagedFile(f"No CSV is staged under s3://{bucket}/{org_prefix}: upload one and press Sync Now again.")
    head = s3.head_object(Bucket=bucket, Key=newest["Key"])
    return StagedFile(
        bucket=bucket, key=newest["Key"], version_id=head.get("VersionId"), org_id=org_id, size=head["ContentLength"]
    )


def open_staged_file(s3: S3Client, staged: StagedFile) -> tuple[IO[bytes], int]:
    """A streaming body of exactly the staged version, and its length."""
    kwargs = {"Bucket": staged.bucket, "Key": staged.key}
    if staged.version_id and staged.version_id != "null":
        kwargs["VersionId"] = staged.version_id
    response = s3.get_object(**kwargs)  # type: ignore[arg-type]
    body: IO[bytes] = response["Body"]  # type: ignore[assignment] # StreamingBody reads like a binary file
    return body, int(response["ContentLength"])


def quarantine(
    s3: S3Client,
    *,
    bucket: str,
    key: str,
    version_id: str | None,
    folder: str,
    report: dict[str, Any],
) -> str:
    """Moves a staged object to `failed/<folder>/` with a JSON report beside it; returns the new key.

    The bucket is versioned: the original stays as a noncurrent version of its key. If a newer
    upload replaced the object meanwhile, that newer version is left staged.

    The new key names the staged version, not the moment of the move (`<uploaded>-<version tag>-<name>`): a
    move that is retried (a close that failed after it, a redelivered event) writes the same copy and report
    again instead of a second copy, and two uploads of one name never share a copy.
    """
    source: dict[str, str] = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        source["VersionId"] = version_id
    uploaded = s3.head_object(**source)["LastModified"]  # type: ignore[arg-type]
    stamp = uploaded.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    tag = hashlib.sha256(f"{key}#{version_id}".encode()).hexdigest()[:8]
    name = key.rsplit("/", 1)[-1] or "unnamed"
    target = f"{FAILED_PREFIX}{folder}/{stamp}-{tag}-{name}"
    full_report = {
        "file": f"s3://{bucket}/{key}",
        "versionId": version_id,
        "movedTo": f"s3://{bucket}/{target}",
        "failedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **report,
    }
    # The report first: a failure between the two leaves a report and the file still staged, never a copy in
    # failed/ that nothing explains (campaign seed 181: the report's PutObject failed after the copy).
    s3.put_object(
        Bucket=bucket,
        Key=f"{target}.report.json",
        Body=json.dumps(full_report, indent=2).encode(),
        ContentType="application/json",
    )
    s3.copy_object(Bucket=bucket, Key=target, CopySource=source)  # type: ignore[arg-type]
    if _is_current_version(s3, bucket, key, version_id):
        s3.delete_object(Bucket=bucket, Key=key)
    return target


def _is_current_version(s3: S3Client, bucket: str, key: str, version_id: str | None) -> bool:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError:
        return False
    return version_id in (None, "null") or head.get("VersionId") == version_id
