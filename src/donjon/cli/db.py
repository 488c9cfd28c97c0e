"""``donjon db``: the SQL schema, for deployments that migrate as a step of their own."""

from __future__ import annotations

from typing import Annotated

import typer

from donjon.cli.state import ExitCode, state

app = typer.Typer(help="The SQL database: upgrade and check its schema.", no_args_is_help=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="postgresql://... (default: the settings' database)."),
]


def _urls(ctx: typer.Context, database_url: str | None) -> list[str]:
    settings = state(ctx).settings
    urls = [database_url or settings.sql_url]
    if database_url is None and settings.soc.outbox_url not in (None, settings.sql_url):
        urls.append(str(settings.soc.outbox_url))  # the outbox in a database of its own
    return urls


@app.command("upgrade")
def upgrade(ctx: typer.Context, database_url: DatabaseUrl = None) -> None:
    """Migrate the schema to this version's head (safe to run from several places at once)."""
    from donjon.storage.sql import migrate, open_database, schema_is_current

    cli = state(ctx)
    for url in _urls(ctx, database_url):
        database = open_database(url, upgrade=False)
        try:
            current = schema_is_current(database)
            if not current:
                migrate(database)
            if cli.json:
                cli.print_json({"database": database.url, "migrated": not current})
            else:
                cli.info(f"{database.url}: {'already current' if current else 'migrated to head'}")
        finally:
            database.dispose()


@app.command("check")
def check(ctx: typer.Context, database_url: DatabaseUrl = None) -> None:
    """Exit 0 when the schema is at this version's head, 1 when it needs `donjon db upgrade`."""
    from donjon.storage.sql import open_database, schema_is_current

    cli = state(ctx)
    stale = False
    for url in _urls(ctx, database_url):
        database = open_database(url, upgrade=False)
        try:
            current = schema_is_current(database)
        finally:
            database.dispose()
        stale = stale or not current
        if cli.json:
            cli.print_json({"database": database.url, "current": current})
        else:
            cli.info(f"{database.url}: {'current' if current else 'needs donjon db upgrade'}")
    if stale:
        raise typer.Exit(ExitCode.FINDINGS)
