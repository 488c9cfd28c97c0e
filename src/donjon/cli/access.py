"""``donjon access``: explain decisions, list who may, and administer identities locally.

Administration runs against the configured database (``database_url``, default
SQLite in ``DONJON_HOME``); every change is published as an event and written
to the audit ledger. A token's secret is printed once, when it is issued.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from donjon.cli.access_admin import group_app, identity_service, service_app, token_app, user_app
from donjon.cli.state import CliState, ExitCode, state
from donjon.core.decision import Decision
from donjon.core.identity import Principal, PrincipalKind
from donjon.core.textfile import read_text
from donjon.errors import InputError

if TYPE_CHECKING:
    from donjon.authz import CedarAuthorizer

app = typer.Typer(help="Who may do what: explain, who-can, users, groups, tokens.")
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
    identity = identity_service(ctx, ledgered=False)
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
    from donjon.authz import ACTIONS

    if action not in ACTIONS:
        raise typer.BadParameter(
            f"unknown action {action!r}; choose from {', '.join(ACTIONS)}", param_hint="ACTION"
        )
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
    identity = identity_service(ctx, ledgered=False)
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
    text = read_text(target, "policy file")  # with Notepad's byte-order mark too
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
