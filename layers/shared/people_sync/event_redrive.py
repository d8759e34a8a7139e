"""Redriving the failed-events queue: events a function could not handle after Lambda's retries (an upload whose
sync could not be opened while ChartHop was down, a "Sync Now" whose loop could not start, an execution-ended
event the finalizer could not take) are sent to their function again once it can handle them.

Every such event is idempotent for its function (an upload per object version, a press per sync process, an
execution's end per execution), so a redrive never starts a second sync: at worst it finds the work done. A
message is deleted only after its function handled the event (a synchronous invoke without a function error);
one that fails again stays in the queue and is tried on a later run, until it is older than `max_age_seconds`:
then it is left for a person (the FailedEventsAlarm is on the queue's depth).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

#: An SQS client (boto3's; the project installs no SQS type stubs).
SQSClient = Any

logger = logging.getLogger(__name__)

#: Messages read per receive (SQS's maximum).
BATCH = 10
#: A message being redriven is hidden this long, so an overlapping run does not redrive it at the same time.
REDRIVE_VISIBILITY_SECONDS = 300
#: A message whose redrive failed again is hidden this long: the next scheduled run tries it.
RETRY_VISIBILITY_SECONDS = 240
#: A message too old to redrive automatically is hidden this long between looks.
TOO_OLD_VISIBILITY_SECONDS = 6 * 3600  # SQS allows at most 12 h in all per receive
EventKind = Literal["lambda-async-failure", "eventbridge-dead-letter", "unrecognised"]


@dataclass(frozen=True)
class FailedEvent:
    """What a failed-events message holds: the event and the function that could not handle it."""

    kind: EventKind
    function: str
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class Redriven:
    message_id: str
    kind: EventKind
    function: str
    outcome: Literal["redriven", "failed", "too-old", "unrecognised", "would-redrive"]
    detail: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "kind": self.kind,
            "function": self.function,
            "outcome": self.outcome,
            "detail": self.detail,
        }


def failed_event(message: dict[str, Any], *, eventbridge_target: str) -> FailedEvent:
    """A Lambda on-failure record carries the event (`requestPayload`) and the function
    (`requestContext.functionArn`); an EventBridge dead letter is the raw event, for the rule's target (its
    TARGET_ARN attribute, else `eventbridge_target`)."""
    try:
        body = json.loads(message.get("Body") or "")
    except ValueError:
        return FailedEvent("unrecognised", "", None)
    if not isinstance(body, dict):
        return FailedEvent("unrecognised", "", None)
    context = body.get("requestContext")
    payload = body.get("requestPayload")
    if isinstance(context, dict) and isinstance(payload, dict):
        return FailedEvent("lambda-async-failure", unqualified(str(context.get("functionArn", ""))), payload)
    if "detail-type" in body and "source" in body:
        attributes = message.get("MessageAttributes") or {}
        target = (attributes.get("TARGET_ARN") or {}).get("StringValue") or eventbridge_target
        return FailedEvent("eventbridge-dead-letter", unqualified(str(target)), body)
    return FailedEvent("unrecognised", "", None)


def unqualified(function_arn: str) -> str:
    """arn:...:function:name[:qualifier] -> arn:...:function:name (the function's current version)."""
    parts = function_arn.split(":")
    return ":".join(parts[:7]) if len(parts) > 7 and parts[5] == "function" else function_arn


def redrive_failed_events(
    sqs: SQSClient,
    lambda_client: LambdaClient,
    queue_url: str,
    *,
    eventbridge_target: str,
    max_age_seconds: float,
    max_messages: int,
    deadline: float | None = None,
    retry_visibility_seconds: int = RETRY_VISIBILITY_SECONDS,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> list[Redriven]:
    """Redrives up to `max_messages` messages younger than `max_age_seconds`, each once per run, stopping at
    `deadline` (monotonic seconds: a Lambda's remaining time). A dry run only says what it would do and leaves
    every message visible."""
    done: list[Redriven] = []
    seen: set[str] = set()
    failed_again: list[str] = []  # receipt handles: hidden until the run ends, so this run sees each message once
    while len(seen) < max_messages and (deadline is None or monotonic() < deadline):
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(BATCH, max_messages - len(seen)),
            VisibilityTimeout=0 if dry_run else REDRIVE_VISIBILITY_SECONDS,
            MessageAttributeNames=["All"],
            AttributeNames=["SentTimestamp"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        fresh = [message for message in batch if message.get("MessageId") not in seen]
        if not fresh:
            break
        for message in fresh:
            seen.add(str(message.get("MessageId")))
            result = _one(sqs, lambda_client, queue_url, message, eventbridge_target, max_age_seconds, dry_run, clock)
            if result.outcome == "failed":
                failed_again.append(message["ReceiptHandle"])
            done.append(result)
    for receipt in failed_again:  # the next run may try them again
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=retry_visibility_seconds
        )
    return done


def _one(
    sqs: SQSClient,
    lambda_client: LambdaClient,
    queue_url: str,
    message: dict[str, Any],
    eventbridge_target: str,
    max_age_seconds: float,
    dry_run: bool,
    clock: Callable[[], float],
) -> Redriven:
    message_id = str(message.get("MessageId"))
    event = failed_event(message, eventbridge_target=eventbridge_target)
    if event.payload is None or not event.function:
        logger.warning("failed event not recognised; left for a person", extra={"message_id": message_id})
        return Redriven(message_id, event.kind, "", "unrecognised")
    sent = float((message.get("Attributes") or {}).get("SentTimestamp", clock() * 1000)) / 1000
    age = clock() - sent
    if age > max_age_seconds:
        if not dry_run:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=TOO_OLD_VISIBILITY_SECONDS
            )
        return Redriven(message_id, event.kind, event.function, "too-old", f"{int(age)} s old")
    if dry_run:
        return Redriven(message_id, event.kind, event.function, "would-redrive")
    answer = lambda_client.invoke(
        FunctionName=event.function, InvocationType="RequestResponse", Payload=json.dumps(event.payload).encode()
    )
    if answer.get("FunctionError"):
        body = answer["Payload"].read().decode(errors="replace") if "Payload" in answer else ""
        logger.warning(
            "redriven event failed again; kept for a later run",
            extra={"message_id": message_id, "function": event.function, "error": body[:300]},
        )
        return Redriven(message_id, event.kind, event.function, "failed", body[:300])
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    logger.info("failed event redriven", extra={"message_id": message_id, "function": event.function})
    return Redriven(message_id, event.kind, event.function, "redriven")


__all__ = ["FailedEvent", "Redriven", "failed_event", "redrive_failed_events", "unqualified"]
