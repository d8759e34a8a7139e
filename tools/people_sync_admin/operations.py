"""What the operator tool's `syncs`, `failed` and `events` commands do (cli.py prints it): read the sync
history, stage a quarantined file again, and redrive the failed-events queue. Every write has a dry run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from people_sync.routing import TARGET_FOLDERS
from people_sync.staging import FAILED_PREFIX
from people_sync.sync_history import SyncHistoryReader
from tools.people_sync_admin.stack import Deployment, StackNotReady

REPORT_SUFFIX = ".report.json"
#: Messages taken off the queue per receive, and how long a message being redriven stays invisible to others.
BATCH = 10
REDRIVE_VISIBILITY_SECONDS = 120


class OperationRefused(Exception):
    """The operation would do something wrong (e.g. stage a file outside the staging prefix)."""


def history(deployment: Deployment) -> SyncHistoryReader:
    return SyncHistoryReader(
        _needed(deployment.target.history_table, "SyncHistoryTableName"), deployment.client("dynamodb")
    )


def _needed(value: str, output: str) -> str:
    if not value:
        raise StackNotReady(f"the stack has no output {output}: deploy this version of template.yaml first")
    return value


def parse_time(text: str, now: float | None = None) -> float:
    """ "7d", "12h", "30m" ago, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    from datetime import UTC, datetime

    now = time.time() if now is None else now
    units = {"d": 86400, "h": 3600, "m": 60}
    if text and text[-1] in units and text[:-1].isdigit():
        return now - int(text[:-1]) * units[text[-1]]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise OperationRefused(f"not a time: {text!r} (use e.g. 7d, 12h, 30m or 2026-05-01T09:00)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def list_syncs(
    deployment: Deployment,
    *,
    org: str | None,
    target: str | None,
    status: str | None,
    since: float,
    until: float | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first; org through the byOrg index, target and status filtered as read."""
    found = []
    for record in history(deployment).records(org=org, since=since, until=until):
        if target and record.get("target") != target:
            continue
        if status and str(record.get("status", "")).upper() != status.upper():
            continue
        found.append(record)
        if len(found) >= limit:
            break
    return found


def show_sync(deployment: Deployment, sync_id: str) -> dict[str, Any]:
    reader = history(deployment)
    record = reader.record(sync_id)
    if record is None:
        raise OperationRefused(f"no sync {sync_id} in the history (it may have expired)")
    return {**record, "timeline": reader.events(sync_id)}


# --- failed/ -------------------------------------------------------------------------------------------


def failed_files(
    deployment: Deployment, org: str | None = None, progress: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """Files under failed/ (each with its report: why, from where, by which sync), newest first."""
    s3 = deployment.client("s3")
    bucket = _needed(deployment.target.bucket, "StagingBucketName")
    prefix = f"{FAILED_PREFIX}{org}/" if org else FAILED_PREFIX
    objects = [
        item
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if not item["Key"].endswith(REPORT_SUFFIX)
    ]
    found = []
    for item in objects:
        report = _report(s3, bucket, item["Key"])
        found.append(
            {
                "key": item["Key"],
                "size": item["Size"],
                "failedAt": report.get("failedAt") or item["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "from": report.get("file"),
                "code": report.get("code"),
                "message": report.get("message"),
                "syncProcessId": report.get("syncProcessId"),
                "retriedAs": report.get("retriedAs"),
            }
        )
        if progress:
            progress(1)
    return sorted(found, key=lambda row: str(row["failedAt"]), reverse=True)


def _report(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{key}{REPORT_SUFFIX}")["Body"].read()
    except s3.exceptions.ClientError:
        return {}
    document = json.loads(body)
    return document if isinstance(document, dict) else {}


@dataclass
class Retry:
    failed_key: str
    staged_key: str
    version_id: str | None = None
    done: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "failedKey": self.failed_key,
            "stagedKey": self.staged_key,
            "versionId": self.version_id,
            "staged": self.done,
        }


def retry_failed(deployment: Deployment, key: str, *, to: str | None = None, dry_run: bool = False) -> Retry:
    """Stages a quarantined file again, as a new object version of the key it came from (or `to`): S3 starts a
    new sync for it. Refused unless that key is under the staging prefix; the history shows the sync as a retry."""
    s3 = deployment.client("s3")
    bucket = _needed(deployment.target.bucket, "StagingBucketName")
    prefix = deployment.target.staging_prefix
    if not key.startswith(FAILED_PREFIX) or key.endswith(REPORT_SUFFIX):
        raise OperationRefused(f"{key} is not a quarantined file (failed/<folder>/<file>; see `failed list`)")
    report = _report(s3, bucket, key)
    origin = str(report.get("file") or "")
    source_key = origin.removeprefix(f"s3://{bucket}/") if origin.startswith(f"s3://{bucket}/") else ""
    staged_key = to or source_key
    if not staged_key:
        raise OperationRefused(f"the report of {key} does not say where it came from; name the key with --to")
    rest = staged_key[len(prefix) :].split("/") if staged_key.startswith(prefix) else []
    # <folder>/<file>, or an org's further target's <orgId>/orgvue/<file> (routing.py)
    further = len(rest) == 3 and rest[1] in TARGET_FOLDERS.values() and rest[0] not in TARGET_FOLDERS.values()
    if len(rest) not in (2, 3) or not all(rest) or (len(rest) == 3 and not further):
        raise OperationRefused(
            f"{staged_key} is not under the staging prefix {prefix} as {prefix}<folder>/<file> (or "
            f"{prefix}<orgId>/<further target>/<file>); nothing was staged (name another key with --to)"
        )
    retry = Retry(key, staged_key)
    if dry_run:
        return retry
    head = s3.head_object(Bucket=bucket, Key=key)  # fails clearly if the failed/ copy is gone
    copied = s3.copy_object(
        Bucket=bucket,
        Key=staged_key,
        CopySource={
            "Bucket": bucket,
            "Key": key,
            **({"VersionId": head["VersionId"]} if head.get("VersionId") else {}),
        },
        MetadataDirective="REPLACE",
        Metadata={"people-sync-retry-of": key},
        ContentType=head.get("ContentType") or "text/csv",
    )
    retry.version_id = copied.get("VersionId")
    retry.done = True
    if retry.version_id and deployment.target.history_table:
        history(deployment).mark_retry(bucket, staged_key, retry.version_id, key, deployment.target.retention_days)
    return retry


# --- the failed-events queue -------------------------------------------------------------------------


@dataclass
class Redriven:
    message_id: str
    kind: str
    function: str
    outcome: str  # "redriven", "failed: ...", "would redrive", "unrecognised"
    summary: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "kind": self.kind,
            "function": self.function,
            "outcome": self.outcome,
            "summary": self.summary,
        }


@dataclass
class Redrive:
    deployment: Deployment
    dry_run: bool = False
    limit: int | None = None
    results: list[Redriven] = field(default_factory=list)

    @property
    def queue_url(self) -> str:
        return _needed(self.deployment.target.failed_events_queue, "FailedEventsQueueUrl")

    def depth(self) -> int:
        attributes = self.deployment.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0))

    def messages(self) -> Iterator[dict[str, Any]]:
        """Each message once. A dry run leaves every message visible (visibility 0) and stops at one seen before."""
        sqs, seen = self.deployment.client("sqs"), set[str]()
        while self.limit is None or len(seen) < self.limit:
            batch = sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=BATCH,
                VisibilityTimeout=0 if self.dry_run else REDRIVE_VISIBILITY_SECONDS,
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            fresh = [message for message in batch if message["MessageId"] not in seen]
            if not fresh:
                return
            for message in fresh:
                seen.add(message["MessageId"])
                yield message

    def one(self, message: dict[str, Any]) -> Redriven:
        """Sends the message's original event to its function again (synchronously: only an event its function
        handled is deleted). The functions are idempotent per event, so a redrive never starts a sync twice."""
        kind, function, payload = self.original_event(message)
        if not function or payload is None:
            result = Redriven(message["MessageId"], kind, "", "unrecognised: left in the queue")
        elif self.dry_run:
            result = Redriven(message["MessageId"], kind, function, "would redrive", _summary(payload))
        else:
            answer = self.deployment.client("lambda").invoke(
                FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
            )
            body = answer["Payload"].read().decode() if "Payload" in answer else ""
            if answer.get("FunctionError"):
                error = _error_message(body)
                result = Redriven(
                    message["MessageId"], kind, function, f"failed: {error}; left in the queue", _summary(payload)
                )
            else:
                self.deployment.client("sqs").delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                result = Redriven(message["MessageId"], kind, function, "redriven", _summary(payload))
        self.results.append(result)
        return result

    def original_event(self, message: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
        """(kind, function, event): a Lambda on-failure record holds the event it was invoked with
        (`requestPayload`) and the function (`requestContext.functionArn`); an EventBridge dead letter is the raw
        event, for the rule's target (the TARGET_ARN attribute, else the stack's finalizer)."""
        try:
            body = json.loads(message["Body"])
        except ValueError:
            return "unreadable", "", None
        if not isinstance(body, dict):
            return "unreadable", "", None
        context = body.get("requestContext")
        if isinstance(context, dict) and "requestPayload" in body:
            return "lambda-async-failure", _unqualified(str(context.get("functionArn", ""))), body["requestPayload"]
        if "detail-type" in body and "source" in body:
            attributes = message.get("MessageAttributes", {})
            target = attributes.get("TARGET_ARN", {}).get("StringValue") or self.deployment.target.finalizer_function
            return "eventbridge-dead-letter", _unqualified(target), body
        return "unknown", "", None


def _unqualified(function_arn: str) -> str:
    """arn:...:function:name[:qualifier] -> arn:...:function:name (the function's current version)."""
    parts = function_arn.split(":")
    return ":".join(parts[:7]) if len(parts) > 7 and parts[5] == "function" else function_arn


def _summary(event: Any) -> str:
    if not isinstance(event, dict):
        return ""
    if "Records" in event:
        keys = [r.get("s3", {}).get("object", {}).get("key", "?") for r in event["Records"]]
        return "S3 upload " + ", ".join(unquote_plus(str(key)) for key in keys)
    if "detail-type" in event:
        detail = event.get("detail") or {}
        return f"{event['detail-type']}: {detail.get('name', '')} {detail.get('status', '')}".strip()
    if "syncProcessId" in event:
        return f"Sync Now {event.get('orgId', '')}/{event['syncProcessId']}"
    return ", ".join(sorted(event))[:80]


def _error_message(body: str) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return body[:200]
    return (
        str(payload.get("errorMessage") or payload.get("errorType") or payload)[:200]
        if isinstance(payload, dict)
        else body[:200]
    )
