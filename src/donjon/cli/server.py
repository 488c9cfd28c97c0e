"""``donjon server``: serve the vault's HTTP API with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from donjon.cli.state import state
from donjon.errors import ConfigError


def server(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option("--port", min=0, max=65535)] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="postgresql://... (default: SQLite in DONJON_HOME)."),
    ] = None,
) -> None:
    """Serve the vault (datasets and models) over HTTP; every route but /health needs a token."""
    try:
        import uvicorn

        from donjon.server import ServerLimits, create_app
    except ImportError as e:
        raise ConfigError(f"the vault server needs: pip install 'donjon[server]' ({e})") from e

    from donjon.app import build_vault, vault_access
    from donjon.config import load_settings

    cli = state(ctx)
    settings = cli.settings
    if database_url is not None:
        settings = load_settings(cli.config_file, home=cli.home, database_url=database_url)
        cli._settings = settings
    authenticator, authorizer = vault_access(settings, cli.app.bus)
    services = build_vault(settings, authenticator, authorizer, cli.app.bus, app=cli.app)
    app = create_app(
        services.registry,
        services.authenticator,
        services.bus,
        limits=ServerLimits(max_upload_bytes=settings.vault.max_upload_bytes),
    )
    bind_host = host or settings.vault.host
    bind_port = settings.vault.port if port is None else port
    cli.info(f"serving the vault on http://{bind_host}:{bind_port} ({services.database.url})")
    try:
        uvicorn.run(app, host=bind_host, port=bind_port, log_level=settings.log_level)
    finally:
        services.close()
