"""``donjon access`` administration: users, service accounts, groups and API tokens.

Runs against the configured database (``database_url``, default SQLite in
``DONJON_HOME``); every change is published as an event and written to the
audit ledger. A token's secret is printed once, when it is issued.
"""

from __future__ import annotations

import getpass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from donjon.cli.state import CliState, state
from donjon.core.identity import Principal, PrincipalKind

if TYPE_CHECKING:
    from donjon.authz import IdentityService
    from donjon.core.bus import EventBus
    from donjon.storage.sql import Database

user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
service_app = typer.Typer(help="Service accounts (for machines and pipelines).")
group_app = typer.Typer(help="Groups of accounts.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: issue (shown once), list, revoke.")


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


def identity_service(ctx: typer.Context, *, ledgered: bool = True) -> IdentityService:
    """The identity service; changes are ledgered, read-only uses need not be."""
    from donjon.app import build_identity

    cli = state(ctx)
    bus = _ledgered_bus(ctx) if ledgered else cli.app.bus
    return build_identity(cli.settings, bus, sql_database(ctx), local_operator())


def local_operator() -> Principal:
    """Who runs a local administration command: the operating-system user."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        name = "unknown"
    return Principal(f"local:{name}", PrincipalKind.USER, "local administrator")


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
    identity = identity_service(ctx)
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
    identity = identity_service(ctx)
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
    accounts = identity_service(ctx, ledgered=False).accounts()
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
    identity_service(ctx).set_disabled(account_id, True)
    _done(cli, {"id": account_id, "disabled": True}, f"account {account_id} disabled")


@group_app.command("add")
def add_group(
    ctx: typer.Context,
    group_id: Annotated[str, typer.Argument(help="e.g. fraud-analysts")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
) -> None:
    """Create a group."""
    cli = state(ctx)
    identity_service(ctx).create_group(group_id, description)
    _done(cli, {"id": group_id}, f"group {group_id} created")


@group_app.command("add-member")
def add_member(
    ctx: typer.Context,
    group_id: Annotated[str, typer.Argument()],
    account_id: Annotated[str, typer.Argument()],
) -> None:
    """Add an account to a group."""
    cli = state(ctx)
    identity_service(ctx).set_member(group_id, account_id, True)
    _done(cli, {"group": group_id, "account": account_id}, f"{account_id} joined {group_id}")


@group_app.command("remove-member")
def remove_member(
    ctx: typer.Context,
    group_id: Annotated[str, typer.Argument()],
    account_id: Annotated[str, typer.Argument()],
) -> None:
    """Remove an account from a group."""
    cli = state(ctx)
    identity_service(ctx).set_member(group_id, account_id, False)
    _done(cli, {"group": group_id, "account": account_id}, f"{account_id} left {group_id}")


@group_app.command("list")
def list_groups(ctx: typer.Context) -> None:
    """List groups and their members."""
    cli = state(ctx)
    groups = identity_service(ctx, ledgered=False).groups()
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
    issued = identity_service(ctx).issue_token(
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
    tokens = identity_service(ctx, ledgered=False).tokens(account_id)
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
    identity_service(ctx).revoke_token(token_id)
    _done(cli, {"id": token_id, "revoked": True}, f"token {token_id} revoked")
