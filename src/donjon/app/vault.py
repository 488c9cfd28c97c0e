"""Vault wiring: the registry on its SQL catalogue and blob folder, with its gates.

The registry needs access control (``donjon.authz``) and, for its admission
gates, the scanner and provenance checks: ``build_vault`` takes them as ports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from donjon.config import Settings
from donjon.core.bus import EventBus
from donjon.core.ports import Authenticator, Authorizer, BlobStore
from donjon.registry.model import Stage
from donjon.registry.ports import PromotionGate, ScanGate

if TYPE_CHECKING:
    from donjon.registry import Registry
    from donjon.storage.sql import Database


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

    Default gates: every pushed model is scanned (a dirty scan quarantines it);
    ``staging`` needs a clean push-time scan; ``prod`` needs a
    clean scan and admitted lineage (unless ``vault.require_lineage`` is off).
    Add the signature and provenance gates to ``promotion_gates`` as they land.
    """
    from donjon.registry import Registry, RequireAdmittedLineage, RequireCleanScan
    from donjon.storage.blobs import FileBlobStore
    from donjon.storage.registry import SqlRegistryStore
    from donjon.storage.sql import open_database

    database = open_database(settings.sql_url)
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
