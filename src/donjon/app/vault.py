"""Vault wiring: the registry on its SQL catalogue and blob folder, with its gates.

The registry needs access control (``donjon.authz``) and, for its admission
gates, the scanner and provenance checks: ``build_vault`` takes them as ports.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.config import Settings
from donjon.core.artifacts import Digest
from donjon.core.bus import EventBus
from donjon.core.ports import Authenticator, Authorizer, BlobStore
from donjon.registry.attachments import AttachmentInspector
from donjon.registry.model import Stage
from donjon.registry.ports import PromotionGate, ScanGate

if TYPE_CHECKING:
    from donjon.app.journal import SqlTransactionJournal
    from donjon.app.wiring import Donjon
    from donjon.provenance.policy import Policy
    from donjon.registry import Registry
    from donjon.storage.sql import Database


EMPTY_BLOB = Digest("sha256", hashlib.sha256(b"").hexdigest())


@dataclass
class VaultServices:
    """The registry with its database; close it to release connections."""

    registry: Registry
    authenticator: Authenticator
    database: Database
    blobs: BlobStore
    bus: EventBus

    def close(self) -> None:
        self.database.dispose()

    def readiness(self) -> dict[str, Callable[[], object]]:
        """The checks of ``GET /readyz``: the database (reachable, schema current) and the
        blob store (a real round trip: a HEAD on S3, a writable folder on disk)."""
        from donjon.storage.sql import require_current

        def database() -> None:
            require_current(self.database)

        def blobs() -> None:
            self.blobs.exists(EMPTY_BLOB)
            root = getattr(self.blobs, "root", None)
            if isinstance(root, Path) and not os.access(root / "tmp", os.W_OK):
                raise OSError(f"the blob folder {root} is not writable")

        return {"database": database, "blobs": blobs}


def build_vault(
    settings: Settings,
    authenticator: Authenticator,
    authorizer: Authorizer,
    bus: EventBus,
    *,
    scan_gate: ScanGate | None = None,
    promotion_gates: Mapping[Stage, Sequence[PromotionGate]] | None = None,
    app: Donjon | None = None,
) -> VaultServices:
    """Wire the vault: SQL catalogue (SQLite or PostgreSQL), blob folder, gates.

    Every pushed model is scanned (a dirty scan quarantines it); the promotion
    gates are :func:`stage_gates` unless ``promotion_gates`` is given, and
    the watch's enrolment gate on the stages ``[watch]`` names. With
    ``app`` (whose bus is ``bus``), each write's events go to its ledger and
    outbox in the write's own transaction (:mod:`donjon.app.journal`).
    """
    from donjon.app.sql import open_sql
    from donjon.registry import Registry
    from donjon.storage.blobs import FileBlobStore
    from donjon.storage.registry import SqlRegistryStore

    database = open_sql(settings)
    blobs: BlobStore
    if settings.vault.s3_bucket:
        import boto3  # credentials: the standard AWS chain, never Donjon's settings

        from donjon.storage.s3_blobs import S3BlobStore

        client = boto3.client("s3", endpoint_url=settings.vault.s3_endpoint_url)
        blobs = S3BlobStore(client, settings.vault.s3_bucket, settings.vault.s3_prefix)
    else:
        blobs = FileBlobStore(settings.blobs_dir)
    if scan_gate is None:
        from donjon.app.gates import ModelScanGate
        from donjon.app.scan import scan_policy
        from donjon.core.severity import Severity

        scan_gate = ModelScanGate(
            scan_policy(settings), Severity.parse(settings.scan.fail_on), bus.publish_all
        )
    enrolment = None
    if promotion_gates is None:
        from donjon.app.watch_gate import watch_gate

        gates = stage_gates(settings)
        enrolment = watch_gate(settings, bus, database)  # enrols versions entering a watched stage
        if enrolment is not None:
            for stage in enrolment.stages():
                gates.setdefault(stage, []).append(enrolment)
        promotion_gates = gates
    registry = Registry(
        SqlRegistryStore(database, _journal(settings, database, app)),
        blobs,
        authorizer,
        bus,
        scan_gate=scan_gate,
        promotion_gates=promotion_gates,
        max_blob_size=settings.vault.max_upload_bytes,
        inspector=_inspector(),
    )
    if enrolment is not None:
        enrolment.attach = registry.attach
    _watch_fingerprints(settings, database, registry)
    return VaultServices(registry, authenticator, database, blobs, bus)


def _journal(
    settings: Settings, database: Database, app: Donjon | None
) -> SqlTransactionJournal | None:
    """The app's ledger and outbox, joined to the registry's transactions."""
    if app is None:
        return None
    from donjon.app.journal import SqlTransactionJournal

    shared = settings.soc.outbox_url in (None, settings.sql_url)
    journal = SqlTransactionJournal(
        database,
        app.ledger,
        outbox=app.outbox is not None and shared,
        late_outbox=app.outbox if app.outbox is not None and not shared else None,
    )
    return journal if journal.active else None


GATE_NAMES = ("clean-scan", "lineage", "signature", "provenance")


def stage_gates(settings: Settings) -> dict[Stage, list[PromotionGate]]:
    """The promotion gates of each stage, from ``vault.gates`` or the defaults.

    Defaults: ``staging`` needs a clean push-time scan; ``prod`` needs a clean
    scan and admitted lineage (unless ``vault.require_lineage`` is off), plus a
    valid signature by a trusted key and admitted provenance when trust is
    configured (``vault.trusted_keys``, ``trusted_roots`` or ``verify_policy``):
    without trusted keys nothing could ever pass them. A gate named in
    ``vault.gates`` that cannot be built (``signature`` without trust) is a
    ConfigError: the vault does not start rather than wave versions through.
    """
    from donjon.errors import ConfigError

    vault = settings.vault
    trust = bool(vault.trusted_keys or vault.trusted_roots or vault.verify_policy)
    if vault.gates is None:
        prod = ["clean-scan", *(["lineage"] if vault.require_lineage else [])]
        if trust:
            prod += ["signature", "provenance"]
        names = {"staging": ["clean-scan"], "prod": prod}
    else:
        names = vault.gates
    gates: dict[Stage, list[PromotionGate]] = {}
    for stage_name, gate_names in names.items():
        try:
            stage = Stage(stage_name)
        except ValueError:
            raise ConfigError(f"vault.gates: unknown stage {stage_name!r}") from None
        gates[stage] = [_gate(settings, gate) for gate in gate_names]
    return gates


def _gate(settings: Settings, name: str) -> PromotionGate:
    from donjon.errors import ConfigError
    from donjon.registry import RequireAdmittedLineage, RequireCleanScan

    if name == "clean-scan":
        return RequireCleanScan()
    if name in ("lineage", "admitted-lineage"):
        return RequireAdmittedLineage()
    if name not in ("signature", "provenance"):
        raise ConfigError(f"vault.gates: unknown gate {name!r}; use one of {GATE_NAMES}")
    from donjon.app.attestation import AdmittedProvenanceGate, TrustedSignatureGate

    policy = trust_policy(settings)
    if policy is None:
        raise ConfigError(
            f"vault.gates names {name!r} but no trust is configured: set vault.trusted_keys, "
            "vault.trusted_roots or vault.verify_policy"
        )
    if name == "signature":
        return TrustedSignatureGate(policy)
    if not policy.builder_keys:
        raise ConfigError("the provenance gate needs builder keys (vault.trusted_keys or policy)")
    return AdmittedProvenanceGate(policy)


def trust_policy(settings: Settings) -> Policy | None:
    """The verification policy of the gates: ``vault.verify_policy``, else the trusted keys."""
    from donjon.errors import ConfigError, InputError
    from donjon.provenance.certs import load_certificates
    from donjon.provenance.keys import load_public_key
    from donjon.provenance.policy import Policy

    vault = settings.vault

    def here(path: Path) -> Path:
        return path if path.is_absolute() else settings.home / path

    try:
        if vault.verify_policy is not None:
            return Policy.load(here(vault.verify_policy))
        if not (vault.trusted_keys or vault.trusted_roots):
            return None
        keys = tuple(load_public_key(here(p)) for p in vault.trusted_keys)
        return Policy(
            public_keys=keys,
            anchors=tuple(load_certificates(here(p) for p in vault.trusted_roots)),
            builder_keys=keys,
        )
    except InputError as e:
        raise ConfigError(f"vault trust: {e}") from e


def _inspector() -> AttachmentInspector | None:
    """Attached documents are parsed with ``donjon.provenance`` when it is installed."""
    try:
        import donjon.provenance.bundle  # noqa: F401 - needs cryptography (extra 'provenance')
        from donjon.app.attestation import DocumentInspector
    except ImportError:
        return None
    return DocumentInspector()


def _watch_fingerprints(settings: Settings, database: Database, registry: Registry) -> None:
    """Every fingerprint attached to a version puts it on the watch list (in this database),
    once a home's watch list of older versions joined it."""
    from donjon.app.watch_gate import enrol_on_attach, watch_list

    registry.on_attached.append(enrol_on_attach(watch_list(settings, database)))
