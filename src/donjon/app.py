"""Composition root: Settings in, wired services out.

The only place that knows which adapter serves which port. The CLI and the
server build one :class:`Donjon` and call its services; capabilities never
reach for settings or adapters themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from donjon.catalog import rule_registry
from donjon.config import Settings
from donjon.core.bus import EventBus
from donjon.core.ports import EventSink
from donjon.core.rules import RuleRegistry
from donjon.soc.jsonl import JsonLinesSink
from donjon.soc.outbox import Dispatcher, Outbox

if TYPE_CHECKING:
    from donjon.monitor.metrics import DonjonMetrics


class _Closer(Protocol):
    def close(self) -> None: ...


@dataclass
class Donjon:
    """The wired application. Close it to flush and release sinks."""

    settings: Settings
    bus: EventBus
    rules: RuleRegistry
    _closers: list[_Closer] = field(default_factory=list, repr=False)
    outbox: Outbox | None = None
    dispatcher: Dispatcher | None = None
    metrics: DonjonMetrics | None = None  # when prometheus-client is installed

    def deliver(self, timeout: float = 10.0) -> bool:
        """Deliver the outbox to every sink now; True when all caught up."""
        return self.dispatcher.drain(timeout) if self.dispatcher is not None else True

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop(self.settings.soc.drain_on_close)
        for closer in self._closers:
            closer.close()

    def __enter__(self) -> Donjon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build(settings: Settings) -> Donjon:
    """Wire the embedded defaults (and, later, the production adapters) from settings."""
    logging.getLogger("donjon").setLevel(settings.log_level.upper())
    soc = build_soc(settings)
    return Donjon(
        settings=settings,
        bus=soc.bus,
        rules=rule_registry(),
        _closers=soc.closers,
        outbox=soc.outbox,
        dispatcher=soc.dispatcher,
        metrics=build_metrics(soc),
    )


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
        metrics.track_outbox(dispatcher.lag, dispatcher.store.dead_letters)
    return metrics


# -- SOC: the outbox, the sinks and their delivery ----------------------------


@dataclass
class SocWiring:
    bus: EventBus
    sinks: list[EventSink]
    closers: list[_Closer]
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


def build_outbox(settings: Settings) -> tuple[Outbox, _Closer]:
    """The durable outbox on ``soc.outbox_url``, else the metadata database, and its closer."""
    from donjon.storage.outbox import SqlOutboxStore
    from donjon.storage.sql import open_database

    database = open_database(settings.soc.outbox_url or settings.sql_url)
    return Outbox(SqlOutboxStore(database)), _Disposer(database.dispose)


def build_soc(settings: Settings) -> SocWiring:
    """With the outbox (default) the bus journals every event and a dispatcher delivers
    to the sinks; without it the sinks hang directly off the bus (best effort)."""
    sinks = build_sinks(settings)
    closers: list[_Closer] = [s for s in sinks if hasattr(s, "close")]  # type: ignore[misc]
    if not settings.soc.outbox:
        return SocWiring(EventBus(sinks), sinks, closers)
    try:
        outbox, disposer = build_outbox(settings)
    except ImportError:  # the core install has no SQL driver: best effort, and say so
        logging.getLogger("donjon").warning(
            "events are not stored before delivery: install donjon[soc] for the durable outbox"
        )
        return SocWiring(EventBus(sinks), sinks, closers)
    soc = settings.soc
    dispatcher = Dispatcher(
        outbox.store,
        sinks,
        batch_size=soc.batch_size,
        max_attempts=soc.max_attempts,
        backoff_base=soc.backoff_base,
        backoff_max=soc.backoff_max,
    )
    closers += [outbox, disposer]
    return SocWiring(EventBus(journal=outbox), sinks, closers, outbox, dispatcher)


class _Disposer:
    def __init__(self, dispose: Callable[[], None]) -> None:
        self.close = dispose
