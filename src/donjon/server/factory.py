"""The whole vault app from settings: for ``donjon server`` and its uvicorn workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from donjon.app import Donjon
    from donjon.config import Settings
    from donjon.server.ui.console import Console
    from donjon.server.ui.wiring import ConsoleOptions


def vault_app(settings: Settings, donjon: Donjon, console: ConsoleOptions | None = None) -> FastAPI:
    """The vault on ``donjon``'s bus, ledger and outbox, with ``/readyz`` checks; the
    outbox relay runs while it serves (one per outbox among workers, by lease); when the
    server stops it closes the vault and ``donjon`` (the outbox is drained)."""
    from donjon.app import build_vault, vault_access
    from donjon.server.app import ServerLimits, create_app
    from donjon.storage.auth_failures import SqlAuthFailures
    from donjon.storage.console_sessions import SqlSessionRows

    if donjon.ledger is not None:  # the registered key or a clear error; then sign on time
        donjon.ledger.start_anchoring()
    authenticator, authorizer = vault_access(settings, donjon.bus)
    from donjon.server.ui.wiring import ConsoleOptions, add_console

    services = build_vault(settings, authenticator, authorizer, donjon.bus, app=donjon)
    consoles: list[Console] = []  # stopped first at shutdown (the console's warm-up)
    app = create_app(
        services.registry,
        services.authenticator,
        services.bus,
        limits=ServerLimits.from_settings(settings.vault),
        readiness=services.readiness(),
        on_startup=(donjon.start_delivery,),
        on_shutdown=(lambda: _stop_all(consoles), services.close, donjon.close),
        shared_failures=SqlAuthFailures(services.database),
    )
    identify = getattr(authenticator, "verify", None) or authenticator.authenticate
    mounted = add_console(  # the web console under /ui, on the same identities, policies, ledger
        app,
        services.registry,
        identify,
        ledger=donjon.ledger,
        dispatcher=donjon.dispatcher,
        options=console or ConsoleOptions.from_settings(settings.vault),
        session_rows=SqlSessionRows(services.database),  # shared by workers and replicas
    )
    consoles.append(mounted)
    return app


def _stop_all(consoles: list[Console]) -> None:
    for console in consoles:
        console.stop()


def worker_app() -> FastAPI:
    """One uvicorn worker of ``donjon server --workers N`` (``uvicorn --factory``): its
    settings come from the environment and settings file the parent process set."""
    from donjon.app import build
    from donjon.config import load_settings

    settings = load_settings()
    donjon = build(settings)
    try:
        return vault_app(settings, donjon)
    except BaseException:
        donjon.close()
        raise
