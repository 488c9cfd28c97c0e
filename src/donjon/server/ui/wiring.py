"""The console on a wired Donjon: its event index on the ledger, lag from the outbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from donjon.config import VaultSettings
from donjon.core.clock import SystemClock
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.identity import Principal
from donjon.core.ports import Clock
from donjon.core.severity import Severity
from donjon.errors import ConfigError
from donjon.registry import Registry
from donjon.server.ui.console import Console, mount_console
from donjon.server.ui.events import EventIndex
from donjon.server.ui.oidc import OidcConfig, OidcLogin
from donjon.server.ui.sessions import SessionRows
from donjon.server.ui.sigma import SigmaBoard
from donjon.server.ui.views import Sources

if TYPE_CHECKING:
    from donjon.audit import Ledger
    from donjon.soc.outbox import Dispatcher


def ledger_verifier(
    ledger: Ledger, publish: Callable[[SecurityEvent], object]
) -> Callable[[], dict[str, Any]]:
    """Verify the whole ledger and record the verdict as an ``audit.verify`` event."""

    def verify() -> dict[str, Any]:
        result = ledger.verify()
        verdict = result.to_dict()
        publish(
            SecurityEvent(
                kind=EventKind.AUDIT,
                source="console",
                action="audit.verify",
                message=(
                    f"ledger verified: {result.entries} entries"
                    if result.ok
                    else f"ledger verification failed at entry {result.first_bad_seq}"
                ),
                severity=Severity.INFO if result.ok else Severity.CRITICAL,
                outcome=Outcome.SUCCESS if result.ok else Outcome.FAILURE,
                attributes={k: verdict[k] for k in ("entries", "checkpoints", "first_bad_seq")},
            )
        )
        return verdict

    return verify


@dataclass(frozen=True)
class ConsoleOptions:
    """How long a session lives, how often pages poll, and the clock they run on."""

    session_ttl: float = 900.0
    poll_seconds: float = 30.0
    clock: Clock = field(default_factory=SystemClock)
    warm: bool = True  # read the ledger's tail and run the Sigma rules at start
    oidc: OidcConfig | None = None  # sign-in through an OpenID Connect provider

    @classmethod
    def from_settings(cls, vault: VaultSettings) -> ConsoleOptions:
        oidc = None
        if vault.console_oidc_issuer and vault.console_oidc_client_id:
            secret = vault.console_oidc_client_secret
            oidc = OidcConfig(
                vault.console_oidc_issuer,
                vault.console_oidc_client_id,
                secret.get_secret_value() if secret else None,
                groups_claim=vault.console_oidc_groups_claim,
            )
        elif vault.console_oidc_issuer or vault.console_oidc_client_id:
            raise ConfigError("console OIDC needs both console_oidc_issuer and _client_id")
        return cls(
            session_ttl=vault.console_session_seconds,
            poll_seconds=vault.console_poll_seconds,
            oidc=oidc,
        )


def _start_of(index: EventIndex) -> Callable[[], int]:
    """Where the index starts reading the ledger (read once to know)."""

    def start() -> int:
        index.refresh()
        return index.first_seq

    return start


def add_console(
    app: FastAPI,
    registry: Registry,
    authenticate: Callable[[str], Principal],
    *,
    ledger: Ledger | None,
    dispatcher: Dispatcher | None,
    options: ConsoleOptions | None = None,
    session_rows: SessionRows | None = None,
) -> Console:
    """Mount the console on the vault's ``app``: the hook of ``donjon server``."""
    options = options or ConsoleOptions()
    index = EventIndex(ledger.entries, head=ledger.head) if ledger is not None else None
    sources = Sources(
        index=index,
        ledger_head=ledger.head if ledger is not None else None,
        checkpoints=ledger.checkpoints if ledger is not None else None,
        outbox_lag=dispatcher.lag if dispatcher is not None else None,
        entries=ledger.entries if ledger is not None else None,
        sigma=SigmaBoard(ledger.entries, _start_of(index)) if ledger and index else None,
    )
    console = mount_console(
        app,
        registry=registry,
        authenticate=authenticate,
        clock=options.clock,
        sources=sources,
        verify_ledger=ledger_verifier(ledger, registry.bus.publish) if ledger else None,
        session_ttl=options.session_ttl,
        poll_seconds=options.poll_seconds,
        session_rows=session_rows,
        oidc=OidcLogin(options.oidc) if options.oidc else None,
    )
    if options.warm:  # the first page after a start then costs what any page costs
        console.start_warm_up()
    return console
