"""A wired vault with port fakes, shared by the registry and server tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from donjon.core.bus import EventBus, MemorySink
from donjon.core.identity import Principal, PrincipalKind
from donjon.registry import Registry, RequireAdmittedLineage, RequireCleanScan, Stage
from donjon.storage.blobs import FileBlobStore
from donjon.storage.registry import SqlRegistryStore
from donjon.storage.sql import Database, open_database
from tests.registry.fakes import MarkerScanGate, TableAuthorizer

ALICE = Principal("alice")
BOB = Principal("bob")
CI = Principal("ci", PrincipalKind.SERVICE)


@dataclass
class Vault:
    registry: Registry
    authorizer: TableAuthorizer
    sink: MemorySink
    db: Database
    blobs_dir: Path
    scanner: MarkerScanGate


def make_vault(url: str, blobs_dir: Path, *, max_blob_size: int | None = None) -> Vault:
    db = open_database(url)
    sink = MemorySink()
    authorizer = TableAuthorizer()
    scanner = MarkerScanGate()
    registry = Registry(
        SqlRegistryStore(db),
        FileBlobStore(blobs_dir),
        authorizer,
        EventBus([sink]),
        scan_gate=scanner,
        promotion_gates={
            Stage.STAGING: [RequireCleanScan()],
            Stage.PROD: [RequireCleanScan(), RequireAdmittedLineage()],
        },
        max_blob_size=max_blob_size,
    )
    return Vault(registry, authorizer, sink, db, blobs_dir, scanner)
