"""The operator tool's `syncs`, `failed` and `events` commands (registered on cli.cli):

syncs list [--org ORG] [--target T] [--status S] [--since 7d] [--until T] [--limit N] [--json]
syncs show SYNC_ID [--json]                           the sync's record and its timeline
failed list [--org ORG] [--json]                      quarantined files and why
failed retry FAILED_KEY [--to KEY] [--dry-run]        stage it again (a new object version: a new sync)
events redrive [--limit N] [--dry-run] [--json]       replay the failed-events queue, each event once
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from tools.people_sync_admin import operations
from tools.people_sync_admin.cli import _admin, _table, cli, dry_run_option, friendly_errors, json_option


def _when(epoch: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(epoch))) if epoch else "-"


def _cut(text: Any, width: int = 60) -> str:
    words = str(text or "")
    return words if len(words) <= width else words[: width - 1] + "…"


def _duration(record: dict[str, Any]) -> str:
    if not record.get("endedAt") or not record.get("startedAt"):
        return "-"
    return f"{float(record['endedAt']) - float(record['startedAt']):.0f}s"


def _progress_bar(length: int, label: str, hidden: bool) -> Any:
    return click.progressbar(length=max(length, 1), label=label, file=sys.stderr, hidden=hidden)


@cli.group()
def syncs() -> None:
    """Every sync's record and timeline (the sync history, kept PersonalDataRetentionDays)."""


@syncs.command("list")
@click.option("--org", help="Only this org's syncs.")
@click.option("--target", type=click.Choice(["charthop", "orgvue", "elma365"]), help="Only syncs into this target.")
@click.option(
    "--status", type=click.Choice(["RUNNING", "DONE", "ERROR"], case_sensitive=False), help="Only this status."
)
@click.option("--since", default="7d", show_default=True, help="Started after: 7d, 12h, 30m or an ISO time (UTC).")
@click.option("--until", "until_", help="Started before (default: now).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@click.pass_context
@friendly_errors
def list_syncs(
    ctx: click.Context,
    org: str | None,
    target: str | None,
    status: str | None,
    since: str,
    until_: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Syncs newest first (listed by day or org with DynamoDB queries, never a table scan)."""
    found = operations.list_syncs(
        _admin(ctx).deployment,
        org=org,
        target=target,
        status=status,
        since=operations.parse_time(since),
        until=operations.parse_time(until_) if until_ else None,
        limit=limit,
    )
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    if not found:
        click.echo("no syncs in that window")
        return
    rows = [
        (
            str(r["syncId"]),
            _when(r.get("startedAt")),
            str(r.get("orgId", "-")),
            str(r.get("target", "-")),
            str(r.get("trigger", "-")),
            str(r.get("status", "-")),
            _duration(r),
            _cut(r.get("file") or "-", 30),
            _cut(r.get("message") or "", 60),
        )
        for r in found
    ]
    _table(rows, ("SYNC", "STARTED (UTC)", "ORG", "TARGET", "TRIGGER", "STATUS", "TOOK", "FILE", "MESSAGE"))


@syncs.command("show")
@click.argument("sync_id")
@json_option
@click.pass_context
@friendly_errors
def show_sync(ctx: click.Context, sync_id: str, as_json: bool) -> None:
    """One sync: what, when, how it ended, where its reports are, and its timeline."""
    shown = operations.show_sync(_admin(ctx).deployment, sync_id)
    if as_json:
        click.echo(json.dumps(shown, indent=2, default=str))
        return
    fields = [
        ("sync", shown["syncId"]),
        ("org / target", f"{shown.get('orgId', '-')} / {shown.get('target', '-')}"),
        ("trigger", shown.get("trigger", "-") + (f" of {shown['retryOf']}" if shown.get("retryOf") else "")),
        (
            "file",
            f"s3://{shown.get('bucket', '?')}/{shown['key']} (version {shown.get('versionId')})"
            if shown.get("key")
            else "-",
        ),
        ("started / ended", f"{_when(shown.get('startedAt'))} / {_when(shown.get('endedAt'))} ({_duration(shown)})"),
        ("status", shown.get("status", "-")),
        ("message", shown.get("message") or "-"),
        ("rows", " ".join(f"{k}={v}" for k, v in (shown.get("counts") or {}).items()) or "-"),
        ("checks", shown.get("checks", "-")),
        ("import", shown.get("importId") or "-"),
        ("failed/ report", shown.get("failedReport") or "-"),
        ("row-error report", shown.get("rowErrorReport") or "-"),
        ("execution", shown.get("executionArn") or "-"),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<18}{value}")
    click.echo("")
    events = shown["timeline"]
    _table(
        [(_when(e.get("at")), str(e.get("kind")), _cut(e.get("message"), 100)) for e in events],
        ("AT (UTC)", "EVENT", "MESSAGE"),
    )
    if len(events) >= operations_cap():
        click.echo(f"(the timeline keeps at most {operations_cap()} entries)")


def operations_cap() -> int:
    from people_sync.sync_history import TIMELINE_CAP

    return TIMELINE_CAP


@cli.group()
def failed() -> None:
    """Files moved to failed/ (refused or failed imports) and staging them again."""


@failed.command("list")
@click.option("--org", help="Only files of this staging folder (org id, orgvue, elma365, _rejected).")
@json_option
@click.pass_context
@friendly_errors
def list_failed(ctx: click.Context, org: str | None, as_json: bool) -> None:
    """Quarantined files, newest first, with the reason from the report beside each."""
    found = operations.failed_files(_admin(ctx).deployment, org)
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    if not found:
        click.echo("nothing in failed/")
        return
    rows = [
        (
            row["key"],
            str(row["failedAt"]),
            str(row.get("code") or "-"),
            _cut(row.get("from"), 50),
            _cut(row.get("message"), 60),
        )
        for row in found
    ]
    _table(rows, ("KEY", "FAILED AT", "REASON", "FROM", "MESSAGE"))


@failed.command("retry")
@click.argument("key")
@click.option("--to", "to", help="Stage it under this key instead of where it came from (under the staging prefix).")
@dry_run_option
@json_option
@click.pass_context
@friendly_errors
def retry_failed(ctx: click.Context, key: str, to: str | None, dry_run: bool, as_json: bool) -> None:
    """Stage the quarantined file KEY again (after fixing it, or what refused it): a new sync starts."""
    deployment = _admin(ctx).deployment
    retry = operations.retry_failed(deployment, key, to=to, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(retry.to_json_dict(), indent=2))
        return
    target = f"s3://{deployment.target.bucket}/{retry.staged_key}"
    if dry_run:
        click.echo(f"would stage {key} again as {target}")
        return
    click.echo(f"staged {key} again as {target} (version {retry.version_id})")
    if deployment.target.import_on_upload:
        click.echo("its sync starts now: `syncs list --since 10m` shows it (trigger retry)")
    else:
        click.echo("ImportOnUpload is off: press Sync Now in ChartHop to import it")


@cli.group()
def events() -> None:
    """The failed-events queue (S3 uploads, Sync Now requests and execution ends no function could handle)."""


@events.command("redrive")
@click.option("--limit", type=click.IntRange(1), help="At most this many messages.")
@dry_run_option
@json_option
@click.pass_context
@friendly_errors
def redrive(ctx: click.Context, limit: int | None, dry_run: bool, as_json: bool) -> None:
    """Send each queued event to its function again (synchronously); delete it only once handled."""
    run = operations.Redrive(_admin(ctx).deployment, dry_run=dry_run, limit=limit)
    depth = run.depth()
    with _progress_bar(limit or depth, "redriving" if not dry_run else "reading", hidden=as_json or depth == 0) as bar:
        for message in run.messages():
            run.one(message)
            bar.update(1)
    results = run.results
    if as_json:
        click.echo(json.dumps([r.to_json_dict() for r in results], indent=2))
        return
    if not results:
        click.echo("the failed-events queue is empty: nothing to redrive")
        return
    _table(
        [
            (r.message_id[:12], r.kind, r.function.rsplit(":", 1)[-1] or "-", r.outcome, _cut(r.summary, 60))
            for r in results
        ],
        ("MESSAGE", "KIND", "FUNCTION", "OUTCOME", "EVENT"),
    )
    failed_count = sum(1 for r in results if r.outcome.startswith(("failed", "unrecognised")))
    if failed_count and not dry_run:
        ctx.exit(1)
