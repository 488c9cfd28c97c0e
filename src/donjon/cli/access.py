"""``donjon access``: explain decisions, list who may, and administer identities locally.

Administration runs against the configured database (``database_url``, default
SQLite in ``DONJON_HOME``); every change is published as an event and written
to the audit ledger. A token's secret is printed once, when it is issued.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from donjon.cli.state import CliState, ExitCode, state
from donjon.core.decision import Decision
from donjon.core.identity import Principal, PrincipalKind
from donjon.errors import InputError

if TYPE_CHECKING:
    from donjon.authz import CedarAuthorizer, IdentityService
    from donjon.core.bus import EventBus
    from donjon.storage.sql import Database

app = typer.Typer(help="Who may do what: explain, who-can, users, groups, tokens.")
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
service_app = typer.Typer(help="Service accounts (for machines and pipelines).")
group_app = typer.Typer(help="Groups of accounts.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: issue (shown once), list, revoke.")
policy_app = typer.Typer(help="The Cedar policy file.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(service_app, name="service-account", no_args_is_help=True)
app.add_typer(group_app, name="group")
app.add_typer(token_app, name="token", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

ContextOpt = Annotated[
    list[str] | None,
    typer.Option("--context", "-x", help="A request fact k=v (stage=prod, signed=true)."),
]


def sql_database(ctx: typer.Context) -> Database:
    """One database handle per command, disposed when the command ends."""
    root = ctx.find_root()
    found = root.meta.get("donjon.sql")
    if found is None:
        from donjon.storage.sql import open_database

        found = open_database(state(ctx).settings.sql_url)
        root.meta["donjon.sql"] = found
        root.call_on_close(found.dispose)
    database: Database = found
    return database


def _ledgered_bus(ctx: typer.Context) -> EventBus:
    """A bus whose journal includes the audit ledger: admin changes are always recorded.

    The app's bus journals every event in the ledger unless ``audit.ledger`` is
    off; then admin changes still go to the ledger, ahead of the app's journal.
    """
    from donjon.app import build_ledger
    from donjon.core.bus import EventBus, JournalChain

    cli = state(ctx)
    if cli.settings.audit.ledger:
        return cli.app.bus
    ledger = build_ledger(cli.settings, sql_database(ctx))
    outbox = cli.app.outbox
    journal = ledger if outbox is None else JournalChain(ledger, outbox)
    return EventBus(cli.app.bus.sinks, journal=journal)


def _identity(ctx: typer.Context, *, ledgered: bool = True) -> IdentityService:
    """The identity service; changes are ledgered, read-only uses need not be."""
    from donjon.app import build_identity

    cli = state(ctx)
    bus = _ledgered_bus(ctx) if ledgered else cli.app.bus
    return build_identity(cli.settings, bus, sql_database(ctx))


def _authorizer(cli: CliState, policies: Path | None) -> CedarAuthorizer:
    from donjon.app import build_authorizer

    settings = cli.settings
    if policies is not None:
        settings = settings.model_copy(
            update={"authz": settings.authz.model_copy(update={"policy_path": policies})}
        )
    return build_authorizer(settings, cli.app.bus)


def parse_context(items: list[str] | None) -> dict[str, Any]:
    context: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected k=v, got {item!r}", param_hint="--context")
        if key in ("signed", "scan_clean"):
            if value.lower() not in ("true", "false"):
                raise typer.BadParameter(f"{key} must be true or false", param_hint="--context")
            context[key] = value.lower() == "true"
        else:
            context[key] = value
    return context


def _principal(ctx: typer.Context, spec: str, groups: list[str] | None) -> Principal:
    """``alice`` (looked up), ``user:alice`` or ``service:ci`` (looked up when known)."""
    kind_text, sep, name = spec.partition(":")
    if not sep:
        kind_text, name = "", spec
    kinds = {"user": PrincipalKind.USER, "service": PrincipalKind.SERVICE}
    if kind_text and kind_text not in kinds:
        raise typer.BadParameter("use NAME, user:NAME or service:NAME", param_hint="PRINCIPAL")
    identity = _identity(ctx, ledgered=False)
    try:
        account = identity.account(name)
    except InputError:
        if not kind_text:
            raise InputError(
                f"no account {name!r}; say user:{name} to ask hypothetically"
            ) from None
        return Principal(name, kinds[kind_text], groups=tuple(sorted(set(groups or ()))))
    if kind_text and account.kind is not kinds[kind_text]:
        raise InputError(f"account {name!r} is a {account.kind.value}, not a {kind_text}")
    return Principal(
        account.id,
        account.kind,
        account.display_name,
        tuple(sorted({*account.groups, *(groups or ())})),
    )


def _decision_dict(decision: Decision) -> dict[str, Any]:
    return {
        "effect": decision.effect.value,
        "principal": str(decision.principal),
        "groups": list(decision.principal.groups),
        "action": decision.action,
        "resource": decision.resource,
        "reasons": list(decision.reasons),
        "policy_ids": list(decision.policy_ids),
    }


@app.command("explain")
def explain(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(help="alice, user:alice or service:ci-bot")],
    action: Annotated[str, typer.Argument(help="e.g. dataset.read, model.deploy, admin")],
    resource: Annotated[str, typer.Argument(help="e.g. datasets/fraud/tx, models/fraud-clf@3")],
    context: ContextOpt = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Assume membership of a group.")
    ] = None,
    policies: Annotated[
        Path | None, typer.Option("--policies", help="Policy file (default: the settings').")
    ] = None,
) -> int:
    """Say whether PRINCIPAL may do ACTION on RESOURCE and which policies decided (1: denied)."""
    cli = state(ctx)
    facts = parse_context(context)
    who = _principal(ctx, principal, group)
    decision = _authorizer(cli, policies).decide(who, action, resource, facts)
    if cli.json:
        cli.print_json(_decision_dict(decision))
    else:
        verb = "ALLOW" if decision.allowed else "DENY"
        cli.out.print(f"{verb} {who} {action} {resource}")
        if who.groups:
            cli.out.print(f"  groups: {', '.join(who.groups)}")
        for reason in decision.reasons:
            cli.out.print(f"  {reason}", markup=False)
    return ExitCode.OK if decision.allowed else ExitCode.FINDINGS


@app.command("who-can")
def who_can(
    ctx: typer.Context,
    action: Annotated[str, typer.Argument(help="e.g. dataset.read")],
    resource: Annotated[str, typer.Argument(help="e.g. datasets/fraud/transactions")],
    context: ContextOpt = None,
    policies: Annotated[Path | None, typer.Option("--policies", help="Policy file.")] = None,
) -> None:
    """List the accounts that may do ACTION on RESOURCE, with the policies that permit it."""
    cli = state(ctx)
    facts = parse_context(context)
    identity = _identity(ctx, ledgered=False)
    principals = [a.principal() for a in identity.accounts() if not a.disabled]
    allowed = _authorizer(cli, policies).who_can(principals, action, resource, facts)
    if cli.json:
        cli.print_json([_decision_dict(d) for d in allowed])
        return
    table = Table("principal", "groups", "permitted by", title=f"who can {action} {resource}")
    for decision in allowed:
        p = decision.principal
        table.add_row(str(p), ", ".join(p.groups), ", ".join(decision.policy_ids))
    cli.out.print(table)


@policy_app.command("check")
def check_policies(
    ctx: typer.Context,
    path: Annotated[
        Path | None, typer.Argument(help="Policy file (default: the settings').")
    ] = None,
) -> None:
    """Parse and validate a Cedar policy file against Donjon's schema."""
    from donjon.authz import load_policies

    cli = state(ctx)
    target = path or cli.settings.policy_path
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {target}: {e}") from e
    loaded = load_policies(text, str(target))
    names = [loaded.describe(p) for p in loaded.names]
    if cli.json:
        cli.print_json({"file": str(target), "policies": names})
    else:
        cli.out.print(f"{target}: {len(names)} policies valid")
        for name in names:
            cli.out.print(f"  {name}")


@policy_app.command("schema")
def show_schema(ctx: typer.Context) -> None:
    """Print the Cedar schema policies are validated against."""
    from donjon.authz import SCHEMA

    state(ctx).out.file.write(SCHEMA.lstrip())


# -- administration --------------------------------------------------------------


def _done(cli: CliState, data: dict[str, Any], text: str) -> None:
    if cli.json:
        cli.print_json(data)
    else:
        cli.out.print(text)


@user_app.command("add")
def add_user(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="e.g. alice")],
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="Join a group.")] = None,
) -> None:
    """Create a user account."""
    cli = state(ctx)
    identity = _identity(ctx)
    identity.create_user(user_id, name)
    for g in group or []:
        identity.set_member(g, user_id)
    _done(cli, {"id": user_id, "kind": "user", "groups": group or []}, f"user {user_id} created")


@service_app.command("add")
def add_service(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="e.g. ci-bot")],
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="Join a group.")] = None,
) -> None:
    """Create a service account."""
    cli = state(ctx)
    identity = _identity(ctx)
    identity.create_service_account(account_id, name)
    for g in group or []:
        identity.set_member(g, account_id)
    _done(
        cli,
        {"id": account_id, "kind": "service", "groups": group or []},
        f"service account {account_id} created",
    )


@user_app.command("list")
def list_accounts(ctx: typer.Context) -> None:
    """List user and service accounts with their groups."""
    cli = state(ctx)
    accounts = _identity(ctx, ledgered=False).accounts()
    if cli.json:
        cli.print_json(
            [
                {
                    "id": a.id,
                    "kind": a.kind.value,
                    "name": a.display_name,
                    "disabled": a.disabled,
                    "groups": list(a.groups),
                }
                for a in accounts
            ]
        )
        return
    table = Table("id", "kind", "name", "groups", "disabled", title=f"{len(accounts)} accounts")
    for a in accounts:
        table.add_row(
            a.id,
            a.kind.value,
            a.display_name or "",
            ", ".join(a.groups),
            "yes" if a.disabled else "",
        )
    cli.out.print(table)


@user_app.command("disable")
def disable(ctx: typer.Context, account_id: Annotated[str, typer.Argument()]) -> None:
    """Disable an account (its tokens stop working at once)."""
    cli = state(ctx)
    _identity(ctx).set_disabled(account_id, True)
    _done(cli, {"id": account_id, "disabled": True}, f"account {account_id} disabled")


@group_app.command("add")
def add_group(
    ctx: typer.Context,
    group_id: Annotated[str, typer.Argument(help="e.g. fraud-analysts")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
) -> None:
    """Create a group."""
    cli = state(ctx)
    _identity(ctx).create_group(group_id, description)
    _done(cli, {"id": group_id}, f"group {group_id} created")


@group_app.command("add-member")
def add_member(
    ctx: typer.Context,
    group_id: Annotated[str, typer.Argument()],
    account_id: Annotated[str, typer.Argument()],
) -> None:
    """Add an account to a group."""
    cli = state(ctx)
    _identity(ctx).set_member(group_id, account_id, True)
    _done(cli, {"group": group_id, "account": account_id}, f"{account_id} joined {group_id}")


@group_app.command("remove-member")
def remove_member(
    ctx: typer.Context,
    group_id: Annotated[str, typer.Argument()],
    account_id: Annotated[str, typer.Argument()],
) -> None:
    """Remove an account from a group."""
    cli = state(ctx)
    _identity(ctx).set_member(group_id, account_id, False)
    _done(cli, {"group": group_id, "account": account_id}, f"{account_id} left {group_id}")


@group_app.command("list")
def list_groups(ctx: typer.Context) -> None:
    """List groups and their members."""
    cli = state(ctx)
    groups = _identity(ctx, ledgered=False).groups()
    if cli.json:
        cli.print_json(
            [
                {"id": g["id"], "description": g["description"], "members": g["members"]}
                for g in groups
            ]
        )
        return
    table = Table("group", "members", "description", title=f"{len(groups)} groups")
    for g in groups:
        table.add_row(g["id"], ", ".join(g["members"]), g["description"])
    cli.out.print(table)


@token_app.command("issue")
def issue_token(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="The account the token acts as.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", help="dataset.read, model.*, admin or * (repeatable)."),
    ] = None,
    ttl_days: Annotated[
        int | None, typer.Option("--ttl-days", min=1, help="Lifetime (default: settings').")
    ] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
) -> None:
    """Issue an API token. Its secret is printed once, now, and never again."""
    cli = state(ctx)
    days = ttl_days or cli.settings.authz.token_ttl_days
    issued = _identity(ctx).issue_token(
        account_id, scope or ["*"], timedelta(days=days), description
    )
    info = issued.info
    expires = info.expires_at.isoformat() if info.expires_at else None
    if cli.json:
        cli.print_json(
            {
                "id": info.id,
                "account": info.owner,
                "scopes": list(info.scopes),
                "expires_at": expires,
                "token": issued.secret,
            }
        )
        return
    cli.info(f"token {info.id} for {info.owner}, scopes {' '.join(info.scopes)}, expires {expires}")
    cli.info("store it now: it is shown once and cannot be recovered")
    cli.out.print(issued.secret)


@token_app.command("list")
def list_tokens(
    ctx: typer.Context,
    account_id: Annotated[
        str | None, typer.Option("--account", help="Only this account's.")
    ] = None,
) -> None:
    """List tokens (ids, owners, scopes, expiry; never the secrets)."""
    cli = state(ctx)
    tokens = _identity(ctx, ledgered=False).tokens(account_id)
    rows: list[dict[str, Any]] = [
        {
            "id": t.id,
            "account": t.owner,
            "scopes": list(t.scopes),
            "created_at": t.created_at.isoformat(),
            "expires_at": t.expires_at.isoformat() if t.expires_at else None,
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            "description": t.description,
        }
        for t in tokens
    ]
    if cli.json:
        cli.print_json(rows)
        return
    table = Table("id", "account", "scopes", "expires", "revoked", title=f"{len(rows)} tokens")
    for r in rows:
        table.add_row(
            r["id"],
            r["account"],
            " ".join(r["scopes"]),
            r["expires_at"] or "never",
            r["revoked_at"] or "",
        )
    cli.out.print(table)


@token_app.command("revoke")
def revoke_token(ctx: typer.Context, token_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a token by its id (tok_...)."""
    cli = state(ctx)
    _identity(ctx).revoke_token(token_id)
    _done(cli, {"id": token_id, "revoked": True}, f"token {token_id} revoked")
