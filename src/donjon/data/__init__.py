"""``donjon.data``: dataset manifests and diffs, provenance filtering, poisoning detectors.

The public names load lazily, so ``donjon.data.rules`` (read by the rule catalogue) works
on the core install, without the ``data`` extra's NumPy, pandas and pyarrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.core.lazy import lazy_exports

if TYPE_CHECKING:
    from donjon.data.checks import CheckReport, check
    from donjon.data.diffs import DiffReport, RecordDiff, diff, verify_manifest
    from donjon.data.manifest import (
        Manifest,
        ManifestSigner,
        build_manifest,
        load_manifest,
        read_records,
    )
    from donjon.data.sources import FilterResult, SourcePolicy, filter_dataset

_WHERE = {
    "CheckReport": "checks",
    "check": "checks",
    "DiffReport": "diffs",
    "RecordDiff": "diffs",
    "diff": "diffs",
    "verify_manifest": "diffs",
    "Manifest": "manifest",
    "ManifestSigner": "manifest",
    "build_manifest": "manifest",
    "load_manifest": "manifest",
    "read_records": "manifest",
    "FilterResult": "sources",
    "SourcePolicy": "sources",
    "filter_dataset": "sources",
}

__all__ = [
    "CheckReport",
    "DiffReport",
    "FilterResult",
    "Manifest",
    "ManifestSigner",
    "RecordDiff",
    "SourcePolicy",
    "build_manifest",
    "check",
    "diff",
    "filter_dataset",
    "load_manifest",
    "read_records",
    "verify_manifest",
]


__getattr__ = lazy_exports(__name__, _WHERE, globals())
