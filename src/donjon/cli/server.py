"""``donjon server``: serve the vault's HTTP API with uvicorn, one process or N workers.

SIGTERM (or Ctrl-C) drains: the server stops accepting connections, lets in-flight
requests finish (up to ``--graceful-timeout`` seconds), closes the vault and
delivers the outbox (``soc.drain_on_close``), then exits 0.

TLS: ``--tls-cert/--tls-key`` (uvicorn's TLS); ``--tls-client-ca`` also verifies
client certificates, each naming a service account (mTLS). Plain HTTP on a
non-loopback address is refused unless ``--insecure-http`` says a TLS proxy
is in front.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, max=64, help="Worker processes sharing the port (uvicorn)."
        ),
    ] = 1,
    migrate: Annotated[
        bool | None,
        typer.Option(
            "--migrate/--no-migrate",
            help="Migrate the schema on start (default: database_migrate); --no-migrate "
            "refuses an old schema (run `donjon db upgrade` first).",
        ),
    ] = None,
    graceful_timeout: Annotated[
        int,
        typer.Option(
            "--graceful-timeout", min=0, help="Seconds in-flight requests get on SIGTERM."
        ),
    ] = 30,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Server certificate chain (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="Private key of --tls-cert (PEM).")
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            "--tls-client-ca",
            help="Verify client certificates against this CA; a certificate's subject CN "
            "names a service account (mTLS).",
        ),
    ] = None,
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http",
            help="Allow plain HTTP on a non-loopback address (only behind a TLS proxy).",
        ),
    ] = False,
) -> None:
    """Serve the vault (datasets and models) over HTTP; every route but /health needs a token."""
    try:
        import uvicorn

        from donjon.core.net import is_loopback
        from donjon.server.factory import vault_app
        from donjon.server.tls import TlsOptions
    except ImportError as e:
        raise ConfigError(f"the vault server needs: pip install 'donjon[server]' ({e})") from e

    from donjon.app.sql import open_sql
    from donjon.config import load_settings

    cli = state(ctx)
    settings = cli.settings
    overrides = {"database_url": database_url, "database_migrate": migrate}
    if any(v is not None for v in overrides.values()):
        settings = load_settings(cli.config_file, home=cli.home, **overrides)
        cli._settings = settings
    bind_host = host or settings.vault.host
    bind_port = settings.vault.port if port is None else port
    log_level = settings.log_level
    tls = TlsOptions(tls_cert, tls_key, tls_client_ca)
    tls.check(bind_host, insecure_http=insecure_http)
    if not tls.enabled and not is_loopback(bind_host):
        logging.getLogger("donjon").warning(
            "serving plain HTTP on %s (--insecure-http): keep a TLS proxy in front", bind_host
        )
    scheme = "https" if tls.enabled else "http"
    if workers == 1:
        app = vault_app(settings, cli.app)  # closes the vault and the app when it stops
        cli.info(f"serving the vault on {scheme}://{bind_host}:{bind_port} ({settings.sql_url})")
        config = uvicorn.Config(
            app, host=bind_host, port=bind_port, log_level=log_level,
            timeout_graceful_shutdown=graceful_timeout, **tls.uvicorn_options(),
        )  # fmt: skip
        with _exit_cleanly_on_stop():
            uvicorn.Server(config).run()
        return
    open_sql(settings).dispose()  # migrate (or refuse an old schema) once, before the workers
    if cli.app.ledger is not None:
        cli.info(f"ledger key {cli.app.ledger.key_id[:16]}")  # or a clear error, before forking
    _pass_settings_to_workers(cli.config_file, settings.home, database_url)
    cli.info(f"serving the vault on {scheme}://{bind_host}:{bind_port} with {workers} workers")
    with _exit_cleanly_on_stop():
        uvicorn.run(
            "donjon.server.factory:worker_app", factory=True, workers=workers,
            host=bind_host, port=bind_port, log_level=log_level,
            timeout_graceful_shutdown=graceful_timeout, **tls.uvicorn_options(),
        )  # fmt: skip


def _pass_settings_to_workers(
    config_file: Path | None, home: Path, database_url: str | None
) -> None:
    """Workers are fresh interpreters: they read the settings from the environment."""
    from donjon.config_files import find_config_file

    found = find_config_file(config_file)
    if found is not None:
        os.environ["DONJON_CONFIG"] = str(found)
    os.environ["DONJON_HOME"] = str(home)
    if database_url is not None:
        os.environ["DONJON_DATABASE_URL"] = database_url
    os.environ["DONJON_DATABASE_MIGRATE"] = "false"  # the parent migrated; workers only check


@contextmanager
def _exit_cleanly_on_stop() -> Iterator[None]:
    """uvicorn re-raises the SIGTERM / SIGINT it handled once it has shut down, which
    would kill the process (exit 143) before the command's own clean-up; with this
    handler in place the re-raised signal is a no-op and the command returns (exit 0)."""
    stopped: list[int] = []

    def note(signum: int, _frame: object) -> None:
        stopped.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
