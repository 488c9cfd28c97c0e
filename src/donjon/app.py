"""Composition root: Settings in, wired services out.

The only place that knows which adapter serves which port. The CLI and the
server build one :class:`Donjon` and call its services; capabilities never
reach for settings or adapters themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from donjon.catalog import rule_registry
from donjon.config import Settings
from donjon.core.bus import EventBus
from donjon.core.ports import Authenticator, Authorizer
from donjon.core.ports import EventSink
from donjon.core.rules import RuleRegistry
from donjon.errors import ConfigError
from donjon.soc.jsonl import JsonLinesSink
from donjon.soc.outbox import Dispatcher, Outbox


class _Closer(Protocol):
    def close(self) -> None: ...

if TYPE_CHECKING:
    from donjon.audit import Ledger
    from donjon.authz import CedarAuthorizer, CredentialAuthenticator, IdentityService
from donjon.registry.model import Stage
from donjon.registry.ports import PromotionGate, ScanGate
from donjon.soc.jsonl import JsonLinesSink

if TYPE_CHECKING:
    from donjon.registry import Registry
    from donjon.storage.blobs import FileBlobStore
    from donjon.storage.sql import Database

if TYPE_CHECKING:
    from donjon.scan.policy import ScanPolicy


@dataclass
class Donjon:
    """The wired application. Close it to flush and release sinks."""

    settings: Settings
    bus: EventBus
    rules: RuleRegistry
    _closers: list[_Closer] = field(default_factory=list, repr=False)
    outbox: Outbox | None = None
    dispatcher: Dispatcher | None = None
    metrics: Any = None  # donjon.monitor.metrics.DonjonMetrics when prometheus-client is there

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
    jsonl = JsonLinesSink(settings.events_path, fsync=settings.events.fsync)
    bus = EventBus([jsonl])
    return Donjon(settings=settings, bus=bus, rules=rule_registry(), _closers=[jsonl])


# -- identities, authorisation and the audit ledger (issue 5: authz / audit) --------
# Builders for the lead to wire into ``build``; each opens its own database handle.


def build_ledger(settings: Settings, database: Database | None = None) -> Ledger:
    """The tamper-evident ledger (an ``EventJournal``) on ``database`` or ``settings.sql_url``."""
    from donjon.audit import Ledger
    from donjon.storage.ledger import SqlLedgerStore
    from donjon.storage.ledger_keys import FileKeyProvider
    from donjon.storage.sql import open_database

    return Ledger(
        SqlLedgerStore(database or open_database(settings.sql_url)),
        keys=FileKeyProvider(settings.keys_dir),
        key_id=settings.audit.key_id,
        checkpoint_every=settings.audit.checkpoint_every,
    )


def build_identity(
    settings: Settings, bus: EventBus, database: Database | None = None
) -> IdentityService:
    """Users, groups, service accounts and API tokens on ``settings.sql_url``."""
    from donjon.authz import IdentityService
    from donjon.storage.identity import SqlIdentityStore
    from donjon.storage.sql import open_database

    store = SqlIdentityStore(database or open_database(settings.sql_url))
    return IdentityService(store, publish=bus.publish)


def build_authenticator(
    settings: Settings, bus: EventBus, database: Database | None = None
) -> CredentialAuthenticator:
    """The ``Authenticator`` port: API tokens, plus JWTs when an issuer is configured."""
    from donjon.authz import (
        CredentialAuthenticator,
        JwksSource,
        JwtAuthenticator,
        TokenAuthenticator,
    )
    from donjon.storage.identity import SqlIdentityStore
    from donjon.storage.sql import open_database

    tokens = TokenAuthenticator(SqlIdentityStore(database or open_database(settings.sql_url)))
    jwt = None
    authz = settings.authz
    if authz.jwt_issuer:
        if not authz.jwt_audience:
            raise ConfigError("authz.jwt_issuer is set but authz.jwt_audience is not")
        jwks = JwksSource(path=authz.jwks_path, url=authz.jwks_url)
        jwt = JwtAuthenticator(
            jwks,
            issuer=authz.jwt_issuer,
            audience=authz.jwt_audience,
            algorithms=authz.jwt_algorithms,
            principal_claim=authz.jwt_principal_claim,
            groups_claim=authz.jwt_groups_claim,
        )
    return CredentialAuthenticator(tokens, jwt, publish=bus.publish)


def build_authorizer(settings: Settings, bus: EventBus) -> CedarAuthorizer:
    """The ``Authorizer`` port: Cedar policies from ``settings.policy_path``.

    A missing policy file is an empty policy set: everything is denied.
    """
    from donjon.authz import CedarAuthorizer, load_policies

    path = settings.policy_path
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except OSError as e:
        raise ConfigError(f"cannot read policy file {path}: {e}") from e
    return CedarAuthorizer(load_policies(text, str(path)), publish=bus.publish)
# -- the vault (issue 5) -------------------------------------------------------
# The registry needs access control (``donjon.authz``) and, for its admission
# gates, the scanner and provenance checks: build_vault takes them as ports, so
# the wiring of those capabilities stays in one place (here).


@dataclass
class VaultServices:
    """The registry with its database; close it to release connections."""

    registry: Registry
    authenticator: Authenticator
    database: Database
    blobs: FileBlobStore
    bus: EventBus

    def close(self) -> None:
        self.database.dispose()


def build_vault(
    settings: Settings,
    authenticator: Authenticator,
    authorizer: Authorizer,
    bus: EventBus,
    *,
    scan_gate: ScanGate | None = None,
    promotion_gates: Mapping[Stage, Sequence[PromotionGate]] | None = None,
) -> VaultServices:
    """Wire the vault: SQL catalogue (SQLite or PostgreSQL), blob folder, gates.

    Default gates: ``staging`` needs a clean push-time scan; ``prod`` needs a
    clean scan and admitted lineage (unless ``vault.require_lineage`` is off).
    Add the signature and provenance gates to ``promotion_gates`` as they land.
    """
    from donjon.registry import Registry, RequireAdmittedLineage, RequireCleanScan
    from donjon.storage.blobs import FileBlobStore
    from donjon.storage.registry import SqlRegistryStore
    from donjon.storage.sql import open_database

    database = open_database(settings.sql_url)
    blobs = FileBlobStore(settings.blobs_dir)
    if promotion_gates is None:
        prod: list[PromotionGate] = [RequireCleanScan()]
        if settings.vault.require_lineage:
            prod.append(RequireAdmittedLineage())
        promotion_gates = {Stage.STAGING: [RequireCleanScan()], Stage.PROD: prod}
    registry = Registry(
        SqlRegistryStore(database),
        blobs,
        authorizer,
        bus,
        scan_gate=scan_gate,
        promotion_gates=promotion_gates,
        max_blob_size=settings.vault.max_upload_bytes,
    )
    return VaultServices(registry, authenticator, database, blobs, bus)


def vault_access(settings: Settings) -> tuple[Authenticator, Authorizer]:
    """The vault's authenticator and authorizer: ``donjon.authz`` wired from settings.

    Until access control is wired the vault refuses to start (fail closed):
    there is no anonymous or allow-all mode.
    """
    raise ConfigError(
        "the vault needs access control (donjon.authz) and none is wired in donjon.app"
    )
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


def build_metrics(soc: SocWiring) -> Any:
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
    outbox, disposer = build_outbox(settings)
    soc = settings.soc
    dispatcher = Dispatcher(
        outbox.store,
        sinks,
        batch_size=soc.batch_size,
        max_attempts=soc.max_attempts,
        backoff_base=soc.backoff_base,
        backoff_max=soc.backoff_max,
    )
    closers.append(disposer)
    return SocWiring(EventBus(journal=outbox), sinks, closers, outbox, dispatcher)


class _Disposer:
    def __init__(self, dispose: Callable[[], None]) -> None:
        self.close = dispose
def scan_policy(settings: Settings) -> ScanPolicy:
    """The scanner's policy from the ``[scan]`` settings (built-in lists plus the user's)."""
    from donjon.scan.policy import ScanPolicy

    scan = settings.scan
    return ScanPolicy().with_extra(
        allow=scan.allow,
        deny=scan.deny,
        max_seconds=scan.max_seconds,
        max_opcodes=scan.max_opcodes,
        max_nesting=scan.max_nesting,
        max_members=scan.max_members,
        max_member_bytes=scan.max_member_bytes,
        max_total_bytes=scan.max_total_bytes,
        max_ratio=scan.max_ratio,
        workers=scan.workers,
    )
