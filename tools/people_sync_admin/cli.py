"""The command line: `python -m tools.people_sync_admin [--stack NAME] orgs <command> ...` (click).

    orgs list [--json]                                   every org the stack knows, served or not and why
    orgs show ORG_ID                                     one org's entry and the settings its syncs use
    orgs add ORG_ID --app-user-id ID [--token-stdin]     register an org (or reinstall a removed one)
    orgs pause|resume|remove ORG_ID                      stop / restart its syncs; remove keeps its files
    orgs set-token ORG_ID [--target orgvue|elma365]      its ChartHop (or further target's) token, from stdin
                                                         or a hidden prompt, into its own secret (a ChartHop
                                                         token clears a "token refused" mark)
    orgs set ORG_ID key=value ... [--unset key]          its settings over the stack's defaults (orgvue.* and
                                                         elma365.*: where its further targets' files go)
    orgs sync-installs [--fetch-tokens]                  register the orgs ChartHop lists as installs

Every command that writes takes --dry-run. The stack comes from --stack (or PEOPLE_SYNC_STACK) and is read
with the user's AWS credentials (--profile, --region; --endpoint-url for an AWS emulator). Further command
groups (`syncs`, `failed`, `events`) register on `cli` the way `orgs` does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

import boto3
import click
from botocore.exceptions import BotoCoreError, ClientError

from people_sync.errors import ChartHopRejected, ChartHopUnavailable
from people_sync.org_registry import (
    FURTHER_TARGETS,
    SETTING_KEYS,
    TARGET_SETTING_KEYS,
    InvalidOrgSettings,
    OrgConflict,
    OrgNotFound,
    OrgState,
    SettingsSource,
    parse_assignment,
)
from tools.people_sync_admin.onboarding import Onboarding, OnboardingError, Outcome
from tools.people_sync_admin.operations import OperationRefused
from tools.people_sync_admin.stack import Deployment, StackNotReady, from_cloudformation

#: Stands for a token a dry run does not read.
NOT_READ = "(not read in a dry run)"

#: Errors a person can act on: printed as one line, exit status 1 (no traceback).
EXPECTED_ERRORS = (
    OnboardingError,
    InvalidOrgSettings,
    OrgNotFound,
    OrgConflict,
    StackNotReady,
    ChartHopRejected,
    ChartHopUnavailable,
    ClientError,
    BotoCoreError,
    OperationRefused,
)


class AdminContext:
    """What the commands share: the deployment (resolved on first use) and how to reach ChartHop.

    Tests (and the offline demo) pass a ready Deployment as click's `obj`."""

    def __init__(
        self,
        deployment: Deployment | None = None,
        *,
        resolve: Callable[[], Deployment] | None = None,
        onboarding_factory: Callable[[Deployment, bool], Onboarding] | None = None,
    ) -> None:
        self._deployment = deployment
        self._resolve = resolve
        self._onboarding_factory = onboarding_factory

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            if self._resolve is None:
                raise click.UsageError("name the stack: --stack NAME (or set PEOPLE_SYNC_STACK)")
            self._deployment = self._resolve()
        return self._deployment

    def onboarding(self, dry_run: bool = False) -> Onboarding:
        if self._onboarding_factory is not None:
            return self._onboarding_factory(self.deployment, dry_run)
        return Onboarding(self.deployment, dry_run=dry_run)


def friendly_errors[**P, R](command: Callable[P, R]) -> Callable[P, R]:
    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except EXPECTED_ERRORS as exc:
            raise click.ClickException(str(exc)) from None

    return run


dry_run_option = click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
settings_from_option = click.option(
    "--settings-from",
    type=click.Choice([source.value for source in SettingsSource]),
    help="Where the org's settings are read: this registry, or the app's configuration page in ChartHop.",
)


@click.group()
@click.option("--stack", envvar="PEOPLE_SYNC_STACK", help="CloudFormation stack name of the deployment.")
@click.option("--region", envvar="AWS_REGION", help="AWS region of the stack.")
@click.option("--profile", envvar="AWS_PROFILE", help="AWS credentials profile.")
@click.option("--endpoint-url", help="AWS endpoint (an emulator such as moto's server); AWS itself when unset.")
@click.pass_context
def cli(
    ctx: click.Context, stack: str | None, region: str | None, profile: str | None, endpoint_url: str | None
) -> None:
    """people-sync operator tool."""
    if isinstance(ctx.obj, AdminContext):
        return
    if isinstance(ctx.obj, Deployment):
        ctx.obj = AdminContext(ctx.obj)
        return

    def resolve() -> Deployment:
        if not stack:
            raise click.UsageError("name the stack: --stack NAME (or set PEOPLE_SYNC_STACK)")
        try:
            session = boto3.Session(profile_name=profile, region_name=region)
            endpoint = {"endpoint_url": endpoint_url} if endpoint_url else {}
            cloudformation = session.client("cloudformation", **endpoint)  # type: ignore[call-overload]
            return Deployment(from_cloudformation(stack, cloudformation), session, endpoint_url)
        except (ClientError, BotoCoreError, StackNotReady) as exc:
            raise click.ClickException(str(exc)) from None

    ctx.obj = AdminContext(resolve=resolve)


@cli.group()
def orgs() -> None:
    """The orgs this deployment serves (the org registry)."""


def _admin(ctx: click.Context) -> AdminContext:
    admin = ctx.find_object(AdminContext)
    if admin is None:  # pragma: no cover - cli() always sets one
        raise click.UsageError("no deployment")
    return admin


def _report(outcome: Outcome, as_json: bool = False) -> None:
    if as_json:
        record = outcome.record.to_json_dict() if outcome.record is not None else None
        click.echo(json.dumps({"changed": outcome.changed, "messages": outcome.lines, "org": record}, indent=2))
        return
    for line in outcome.lines:
        click.echo(line)


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@orgs.command("list")
@json_option
@click.pass_context
@friendly_errors
def list_orgs(ctx: click.Context, as_json: bool) -> None:
    """Every org the stack knows: its state, app user, token secret, settings, and whether syncs run."""
    views = _admin(ctx).onboarding().views()
    if as_json:
        click.echo(json.dumps([view.to_json_dict() for view in views], indent=2))
        return
    rows = [
        (
            view.org_id + (" *" if view.default_org else ""),
            view.state,
            ("yes" if view.served else f"no ({view.reason})") + (" !" if view.token_note else ""),
            view.app_user_id or "-",
            view.token,
            view.settings_source,
            " ".join(f"{k}={_value(v)}" for k, v in sorted(view.settings.items())) or "-",
        )
        for view in views
    ]
    _table(rows, ("ORG", "STATE", "SERVED", "APP USER", "TOKEN SECRET", "SETTINGS FROM", "OVERRIDES"))
    click.echo("* the stack's own org (ChartHopOrgId)")
    for view in views:  # what an operator must act on: ChartHop refused the org's token
        if view.token_note:
            click.echo(f"! {view.org_id}: {view.token_note}")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


@orgs.command("show")
@click.argument("org_id")
@click.pass_context
@friendly_errors
def show_org(ctx: click.Context, org_id: str) -> None:
    """One org's entry and the settings its syncs use (JSON)."""
    click.echo(json.dumps(_admin(ctx).onboarding().show(org_id), indent=2))


@orgs.command("add")
@click.argument("org_id")
@click.option("--app-user-id", required=True, help="The app's user id in that org (its ChartHop install).")
@click.option("--token-stdin", is_flag=True, help="Read the org's ChartHop token from stdin into its secret.")
@settings_from_option
@dry_run_option
@json_option
@click.pass_context
@friendly_errors
def add_org(
    ctx: click.Context,
    org_id: str,
    app_user_id: str,
    token_stdin: bool,
    settings_from: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Register ORG_ID (or reinstall it after `remove`)."""
    # a dry run does not read the token: nothing is stored, only where it would go is shown
    token = (NOT_READ if dry_run else _read_token(hidden_prompt=False)) if token_stdin else None
    source = SettingsSource(settings_from) if settings_from else SettingsSource.REGISTRY
    _report(_admin(ctx).onboarding(dry_run).add(org_id, app_user_id, token=token, settings_source=source), as_json)


def _state_command(name: str, state: OrgState, doc: str) -> None:
    @orgs.command(name, help=doc)
    @click.argument("org_id")
    @dry_run_option
    @json_option
    @click.pass_context
    @friendly_errors
    def command(ctx: click.Context, org_id: str, dry_run: bool, as_json: bool) -> None:
        _report(_admin(ctx).onboarding(dry_run).set_state(org_id, state), as_json)


_state_command("pause", OrgState.PAUSED, "Stop syncing ORG_ID for now (its files stay staged).")
_state_command("resume", OrgState.ACTIVE, "Sync a paused ORG_ID again.")
_state_command("remove", OrgState.UNINSTALLED, "Mark ORG_ID uninstalled: no more syncs; staged files are kept.")


@orgs.command("set-token")
@click.argument("org_id")
@click.option(
    "--target",
    type=click.Choice(["charthop", *FURTHER_TARGETS]),
    default="charthop",
    show_default=True,
    help="Whose token: the org's ChartHop app token, or its API token for a further target it feeds.",
)
@dry_run_option
@click.pass_context
@friendly_errors
def set_token(ctx: click.Context, org_id: str, target: str, dry_run: bool) -> None:
    """Store ORG_ID's ChartHop token, or its Orgvue / ELMA365 API token (--target), in its own secret (stdin,
    or a prompt that hides it). Never written to the org table or printed."""
    token = NOT_READ if dry_run else _read_token(hidden_prompt=True, what=TOKEN_NAMES[target])
    _report(_admin(ctx).onboarding(dry_run).set_token(org_id, token, target))


#: What each target's token is called at the hidden prompt.
TOKEN_NAMES = {"charthop": "ChartHop token", "orgvue": "Orgvue API token (JWT)", "elma365": "ELMA365 API token"}


def _read_token(*, hidden_prompt: bool, what: str = "ChartHop token") -> str:
    """The token from stdin (piped), or typed at a hidden prompt; never echoed."""
    stdin = sys.stdin
    if hidden_prompt and stdin.isatty():
        token = str(click.prompt(what, hide_input=True, confirmation_prompt=True, err=True))
    else:
        token = stdin.readline()
    token = token.strip()
    if not token:
        raise click.ClickException("no token given on stdin; nothing was stored")
    return token


@orgs.command("set")
@click.argument("org_id")
@click.argument("assignments", nargs=-1)
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Back to the stack's default.")
@settings_from_option
@dry_run_option
@json_option
@click.pass_context
@friendly_errors
def set_settings(
    ctx: click.Context,
    org_id: str,
    assignments: tuple[str, ...],
    unset: tuple[str, ...],
    settings_from: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Change ORG_ID's settings: key=value ... (lists comma-separated).

    Keys: skipErrors, upsert, createGroups, disableSyncHireDate, disableOverwritePerson, importDryRun,
    notifyUserIds, notifyAppName, importSource, requiredColumns, furtherTargets, importOnUpload.

    Further targets (where the files the org stages under <orgId>/orgvue/ and <orgId>/elma365/ go, over the
    stack's Orgvue and ELMA365 parameters; set here only, never from ChartHop): orgvue.baseUrl,
    orgvue.tenantId, orgvue.datasetId, orgvue.defaultAction, orgvue.idKey, orgvue.dateFormat,
    orgvue.implicitDelete, elma365.baseUrl, elma365.namespace, elma365.code, elma365.chunkRows,
    elma365.directoryId. `--unset orgvue` drops all of a target's keys.
    """
    if not assignments and not unset and not settings_from:
        keys = ", ".join((*SETTING_KEYS, *TARGET_SETTING_KEYS))
        raise click.UsageError(f"give key=value pairs, --unset KEY or --settings-from; keys: {keys}")
    parsed = dict(parse_assignment(text) for text in assignments)
    source = SettingsSource(settings_from) if settings_from else None
    _report(_admin(ctx).onboarding(dry_run).set_settings(org_id, parsed, unset, source), as_json)


@orgs.command("sync-installs")
@click.option("--app-id", help="The ChartHop app id (default: the stack's ChartHopAppId).")
@click.option("--token-stdin", is_flag=True, help="Read ChartHop with this token (default: the stack's token).")
@click.option("--fetch-tokens", is_flag=True, help="Store each org's app token (getAccessToken) in its secret.")
@click.option("--mark-uninstalled", is_flag=True, help="Mark registered orgs ChartHop no longer lists uninstalled.")
@settings_from_option
@dry_run_option
@json_option
@click.pass_context
@friendly_errors
def sync_installs(
    ctx: click.Context,
    app_id: str | None,
    token_stdin: bool,
    fetch_tokens: bool,
    mark_uninstalled: bool,
    settings_from: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Register the orgs ChartHop lists as active installs of the app (getActiveAppInstalls)."""
    token = _read_token(hidden_prompt=False) if token_stdin else None
    rows = (
        _admin(ctx)
        .onboarding(dry_run)
        .sync_installs(
            app_id=app_id,
            token=token,
            fetch_tokens=fetch_tokens,
            mark_uninstalled=mark_uninstalled,
            settings_source=SettingsSource(settings_from) if settings_from else SettingsSource.REGISTRY,
        )
    )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("ChartHop lists no active installs of the app")
        return
    _table([(row["orgId"], row["appUserId"], row["action"]) for row in rows], ("ORG", "APP USER", "ACTION"))


# The `syncs`, `failed` and `events` groups (issue 14) register themselves on `cli`.
from tools.people_sync_admin import operator_cli  # noqa: E402, F401


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="people-sync-admin")
