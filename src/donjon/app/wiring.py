"""The wired application: settings, the bus with its journals, rules and delivery."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from donjon.app.access import build_ledger
from donjon.app.soc import Closer, Disposer, build_metrics, build_soc
from donjon.catalog import rule_registry
from donjon.config import Settings
from donjon.core.bus import EventBus
from donjon.core.rules import RuleRegistry
from donjon.soc.outbox import Dispatcher, Outbox

if TYPE_CHECKING:
    from donjon.audit import Ledger
    from donjon.monitor.metrics import DonjonMetrics
    from donjon.storage.sql import Database


@dataclass
class Donjon:
    """The wired application. Close it to flush and release sinks."""

    settings: Settings
    bus: EventBus
    _closers: list[Closer] = field(default_factory=list, repr=False)
    outbox: Outbox | None = None
    dispatcher: Dispatcher | None = None
    metrics: DonjonMetrics | None = None  # when prometheus-client is installed
    ledger: Ledger | None = None  # the audit ledger, the bus's first journal
    _closed: bool = field(default=False, repr=False)

    @property
    def rules(self) -> RuleRegistry:
        """Every rule Donjon ships (imported on first use: it loads every capability)."""
        return rule_registry()

    def deliver(self, timeout: float = 10.0) -> bool:
        """Deliver the outbox to every sink now; True when all caught up."""
        return self.dispatcher.drain(timeout) if self.dispatcher is not None else True

    def start_delivery(self) -> None:
        """Deliver the outbox in the background until :meth:`close` (which drains it)."""
        if self.dispatcher is not None:
            self.dispatcher.start()

    @contextmanager
    def delivering(self) -> Iterator[Donjon]:
        """Deliver the outbox in the background while the block runs (a long-running
        service), then drain it and give the relay lease up."""
        if self.dispatcher is None:
            yield self
            return
        self.dispatcher.start()
        try:
            yield self
        finally:
            self.dispatcher.stop(self.settings.soc.drain_on_close)

    def close(self) -> None:
        """Deliver what the outbox holds (``soc.drain_on_close``), then release everything.
        Closing twice does nothing more."""
        if self._closed:
            return
        self._closed = True
        if self.ledger is not None:  # a clean shutdown: sign and witness the tail first
            self.ledger.close()
        if self.dispatcher is not None:
            self.dispatcher.stop(self.settings.soc.drain_on_close)
        for closer in self._closers:
            closer.close()

    def __enter__(self) -> Donjon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build(settings: Settings) -> Donjon:
    """Wire the embedded defaults, or the production adapters the settings name."""
    logging.getLogger("donjon").setLevel(settings.log_level.upper())
    database = None
    closers: list[Closer] = []
    if settings.audit.ledger or settings.soc.outbox:
        try:
            import donjon.storage.sql  # noqa: F401
        except ImportError:  # the core install (scanning only) has no SQL driver
            pass
        else:
            from donjon.app.sql import open_sql

            database = open_sql(settings)
            closers.append(Disposer(database.dispose))
    ledger = _ledger(settings, database)
    soc = build_soc(settings, database, ledger)
    if ledger is not None:
        from donjon.audit import EventWitness

        ledger.add_witness(EventWitness(soc.bus.publish))
    return Donjon(
        settings=settings,
        bus=soc.bus,
        _closers=[*soc.closers, *closers],
        outbox=soc.outbox,
        dispatcher=soc.dispatcher,
        metrics=build_metrics(soc),
        ledger=ledger,
    )


def _ledger(settings: Settings, database: Database | None) -> Ledger | None:
    """The audit ledger as the bus's first journal, or None (and say so) when it can't be."""
    if not settings.audit.ledger:
        return None
    if database is not None:
        try:
            return build_ledger(settings, database)
        except ImportError:  # SQL is there, the audit extra (cryptography) is not
            pass
    logging.getLogger("donjon").warning(
        "events are not ledgered: install donjon[audit] for the tamper-evident ledger"
    )
    return None
