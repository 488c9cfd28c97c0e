"""SOC wiring: the durable outbox, the sinks of the settings, delivery and metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from donjon.config import Settings
from donjon.core.bus import EventBus, JournalChain
from donjon.core.ports import EventJournal, EventSink
from donjon.soc.jsonl import JsonLinesSink
from donjon.soc.outbox import Dispatcher, Outbox

if TYPE_CHECKING:
    from donjon.monitor.metrics import DonjonMetrics
    from donjon.storage.sql import Database


class Closer(Protocol):
    def close(self) -> None: ...


@dataclass
class SocWiring:
    bus: EventBus
    sinks: list[EventSink]
    closers: list[Closer]
    outbox: Outbox | None = None
    dispatcher: Dispatcher | None = None


def build_sinks(settings: Settings) -> list[EventSink]:
    """The event file (always) plus every ``[[soc.sinks]]`` of the settings."""
    from donjon.config import (
        ElasticSinkSettings,
        HecSinkSettings,
        JsonlSinkSettings,
        NatsSinkSettings,
        SyslogSinkSettings,
        WebhookSinkSettings,
    )

    soc = settings.soc
    sinks: list[EventSink] = [
        JsonLinesSink(
            settings.events_path,
            fsync=settings.events.fsync,
            max_bytes=soc.jsonl_max_bytes,
            backups=soc.jsonl_backups,
        )
    ]
    for cfg in soc.sinks:
        name = cfg.name or cfg.type
        if isinstance(cfg, JsonlSinkSettings):
            sinks.append(
                JsonLinesSink(
                    cfg.path, fsync=cfg.fsync, name=name, max_bytes=cfg.max_bytes,
                    backups=cfg.backups,
                )
            )  # fmt: skip
        elif isinstance(cfg, SyslogSinkSettings):
            from donjon.soc.syslog_sink import SyslogSink

            sinks.append(
                SyslogSink(
                    cfg.host, cfg.port, protocol=cfg.protocol, name=name, payload=cfg.payload,
                    facility=cfg.facility, enterprise_number=cfg.enterprise_number,
                    ca_file=cfg.ca_file, cert_file=cfg.cert_file, key_file=cfg.key_file,
                )
            )  # fmt: skip
        elif isinstance(cfg, HecSinkSettings):
            from donjon.soc.hec import HecSink

            sinks.append(
                HecSink(
                    cfg.url, cfg.token.get_secret_value(), name=name, fmt=cfg.format,
                    index=cfg.index, verify=cfg.verify,
                )
            )  # fmt: skip
        elif isinstance(cfg, ElasticSinkSettings):
            from donjon.soc.elastic import ElasticSink

            sinks.append(
                ElasticSink(
                    cfg.url, index=cfg.index, name=name,
                    api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
                    username=cfg.username,
                    password=cfg.password.get_secret_value() if cfg.password else None,
                    verify=cfg.verify,
                )
            )  # fmt: skip
        elif isinstance(cfg, WebhookSinkSettings):
            from donjon.soc.webhook import WebhookSink

            sinks.append(
                WebhookSink(
                    cfg.url, cfg.secret.get_secret_value(), name=name, fmt=cfg.format,
                    verify=cfg.verify,
                )
            )  # fmt: skip
        elif isinstance(cfg, NatsSinkSettings):
            from donjon.soc.nats import NatsSink

            sinks.append(
                NatsSink(
                    cfg.url, stream=cfg.stream, subject_prefix=cfg.subject_prefix, name=name,
                    fmt=cfg.format,
                )
            )  # fmt: skip
    return sinks


def build_outbox(
    settings: Settings, database: Database | None = None
) -> tuple[Outbox, Closer | None]:
    """The durable outbox on ``soc.outbox_url``, else on ``database`` (the metadata
    database), with the closer of any database it opened itself."""
    from donjon.app.sql import open_sql
    from donjon.storage.outbox import SqlOutboxStore

    if database is not None and settings.soc.outbox_url is None:
        return Outbox(SqlOutboxStore(database)), None
    own = open_sql(settings, settings.soc.outbox_url)
    return Outbox(SqlOutboxStore(own)), Disposer(own.dispose)


def build_soc(
    settings: Settings,
    database: Database | None = None,
    ledger: EventJournal | None = None,
) -> SocWiring:
    """With the outbox (default) the bus journals every event (in the ``ledger`` first,
    when given) and a dispatcher delivers to the sinks; without it the sinks hang
    directly off the bus (best effort)."""
    sinks = build_sinks(settings)
    closers: list[Closer] = [s for s in sinks if hasattr(s, "close")]  # type: ignore[misc]
    if not settings.soc.outbox:
        return SocWiring(EventBus(sinks, journal=ledger), sinks, closers)
    try:
        outbox, disposer = build_outbox(settings, database)
    except ImportError:  # the core install has no SQL driver: best effort, and say so
        logging.getLogger("donjon").warning(
            "events are not stored before delivery: install donjon[soc] for the durable outbox"
        )
        return SocWiring(EventBus(sinks, journal=ledger), sinks, closers)
    soc = settings.soc
    dispatcher = Dispatcher(
        outbox.store,
        sinks,
        batch_size=soc.batch_size,
        max_attempts=soc.max_attempts,
        backoff_base=soc.backoff_base,
        backoff_max=soc.backoff_max,
        idle_wait=soc.relay_interval,
        lease_ttl=soc.lease_seconds,
    )
    closers.append(outbox)  # stops its writer thread before the database goes
    if disposer is not None:
        closers.append(disposer)
    journal: EventJournal = outbox if ledger is None else JournalChain(ledger, outbox)
    if disposer is None and database is not None and ledger is not None:
        journal = _joint_journal(database, ledger) or journal
    return SocWiring(EventBus(journal=journal), sinks, closers, outbox, dispatcher)


def _joint_journal(database: Database, ledger: EventJournal) -> EventJournal | None:
    """The ledger and the outbox on one database: one transaction stores each event in both
    (``donjon.app.journal.SqlJournal``), rather than one for each."""
    try:
        from donjon.app.journal import SqlJournal
        from donjon.audit import Ledger
    except ImportError:
        return None
    return SqlJournal(database, ledger) if isinstance(ledger, Ledger) else None


class Disposer:
    def __init__(self, dispose: Callable[[], None]) -> None:
        self.close = dispose


def build_metrics(soc: SocWiring) -> DonjonMetrics | None:
    """Prometheus metrics fed by the bus, with the outbox's lag; None without the extra."""
    try:
        from donjon.monitor.metrics import DonjonMetrics
    except ImportError:
        return None
    metrics = DonjonMetrics()
    soc.bus.subscribe(metrics)
    if soc.dispatcher is not None:
        dispatcher = soc.dispatcher
        metrics.track_outbox(dispatcher.lag, dispatcher.store.dead_letters, dispatcher.guarantees())
    return metrics
