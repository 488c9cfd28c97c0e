"""``donjon.data``: dataset manifests and diffs, provenance filtering, poisoning detectors."""

from donjon.data.diff import DiffReport, RecordDiff, diff, verify_manifest
from donjon.data.manifest import (
    Manifest,
    ManifestSigner,
    build_manifest,
    load_manifest,
    read_records,
)

__all__ = [
    "DiffReport",
    "Manifest",
    "ManifestSigner",
    "RecordDiff",
    "build_manifest",
    "diff",
    "load_manifest",
    "read_records",
    "verify_manifest",
]
