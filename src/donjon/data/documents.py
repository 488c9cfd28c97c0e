"""A dataset version's documents as the vault keeps them: its manifest and its check reports.

Both are JSON objects naming the SHA-256 of the bytes they describe
(``dataset_digest``: the vault refuses a document about other bytes):

* ``donjon.data.manifest-document/v1``: the manifest (``donjon data manifest``)
  and, for a table of at most :data:`MAX_EMBEDDED_RECORDS` records, its record
  digests (key, row and content digests, label: the record table, as columns),
  so that two versions can be diffed from their documents alone, exactly as
  ``donjon data diff`` diffs them;
* ``donjon.data.check-document/v1``: a ``donjon data check`` report (JSON form).

:func:`inspect_document` checks one (structure, and that the record digests
make the manifest's Merkle root) and returns a small summary.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from donjon.data.manifest import FORMAT as MANIFEST_FORMAT
from donjon.data.manifest import RECORDS_SCHEMA, Manifest, manifest_records, read_records
from donjon.data.merkle import MerkleAccumulator
from donjon.errors import InputError

MANIFEST_DOCUMENT = "donjon.data.manifest-document/v1"
CHECK_DOCUMENT = "donjon.data.check-document/v1"
MAX_EMBEDDED_RECORDS = 100_000  # about 9 MB of JSON; larger tables keep the manifest only
_HEX16 = re.compile(r"[0-9a-f]{32}")


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


def manifest_document(
    manifest: Manifest, dataset_digest: str, records: pa.Table | None
) -> dict[str, Any]:
    """The manifest document of a version whose bytes have ``dataset_digest``."""
    embedded = None
    if records is not None and records.num_rows <= MAX_EMBEDDED_RECORDS:
        embedded = {
            "key": records.column("key").to_pylist(),
            "row": [b.hex() for b in records.column("row").to_pylist()],
            "content": [b.hex() for b in records.column("content").to_pylist()],
            "label": records.column("label").to_pylist(),
        }
    body = manifest.to_dict()
    body.pop("records_file", None)  # a local file name: meaningless in the vault
    return {
        "format": MANIFEST_DOCUMENT,
        "dataset_digest": dataset_digest,
        "manifest": body,
        "records": embedded,
    }


def check_document(report: Mapping[str, Any], dataset_digest: str) -> dict[str, Any]:
    """The check document of a report (``CheckReport.to_dict()``) on ``dataset_digest``."""
    return {"format": CHECK_DOCUMENT, "dataset_digest": dataset_digest, "report": dict(report)}


def records_table(document: Mapping[str, Any]) -> pa.Table | None:
    """The record table embedded in a manifest document (None when it has none)."""
    records = document.get("records")
    if not records:
        return None
    return pa.table(
        {
            "key": pa.array(records["key"], pa.string()),
            "row": pa.array([bytes.fromhex(h) for h in records["row"]], pa.binary(16)),
            "content": pa.array([bytes.fromhex(h) for h in records["content"]], pa.binary(16)),
            "label": pa.array(records["label"], pa.string()),
        },
        schema=RECORDS_SCHEMA,
    )


def manifest_document_of(
    data: Path, *, label_column: str | None = None, id_column: str | None = None
) -> dict[str, Any]:
    """Manifest the table at ``data`` (as ``donjon data manifest`` does): its document."""
    with tempfile.TemporaryDirectory(prefix="donjon-manifest-") as tmp:
        out = Path(tmp) / "data.records.parquet"
        manifest = manifest_records(data, out, label_column=label_column, id_column=id_column)
        manifest = replace(manifest, source=data.name, path=out.with_name("data.json"))
        return manifest_document(manifest, file_digest(data), read_records(manifest))


def inspect_document(kind: str, data: bytes) -> dict[str, Any]:
    """Check a ``manifest`` or ``check`` document; its summary, or InputError."""
    try:
        document = json.loads(data)
        if kind == "manifest":
            return _inspect_manifest(document)
        if kind == "check":
            return _inspect_check(document)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"malformed {kind} document: {e}") from None
    raise InputError(f"not a dataset document kind: {kind!r}")


def _inspect_manifest(document: Mapping[str, Any]) -> dict[str, Any]:
    if document.get("format") != MANIFEST_DOCUMENT:
        raise InputError(f"not a manifest document (format {document.get('format')!r})")
    manifest = document["manifest"]
    if manifest.get("format") != MANIFEST_FORMAT or manifest["kind"] not in ("records", "files"):
        raise InputError("the manifest is not a Donjon data manifest")
    count, root = int(manifest["count"]), str(manifest["root"])
    records = document.get("records")
    if records:
        columns = [records[c] for c in ("key", "row", "content", "label")]
        if any(not isinstance(c, list) or len(c) != count for c in columns):
            raise InputError(f"the record digests are not {count} rows of four columns")
        if not all(isinstance(h, str) and _HEX16.fullmatch(h) for h in columns[1] + columns[2]):
            raise InputError("a record digest is not 32 hex digits")
        acc = MerkleAccumulator()
        acc.extend(bytes.fromhex(h) for h in columns[1])
        if f"sha256:{acc.root().hex()}" != root:
            raise InputError("the record digests do not make the manifest's Merkle root")
    return {
        "kind": manifest["kind"],
        "count": count,
        "root": root,
        "data_format": str(manifest.get("data_format", "")),
        "columns": len(manifest.get("schema") or ()),
        "label_column": manifest.get("label_column"),
        "id_column": manifest.get("id_column"),
        "record_digests": bool(records),
    }


def _inspect_check(document: Mapping[str, Any]) -> dict[str, Any]:
    if document.get("format") != CHECK_DOCUMENT:
        raise InputError(f"not a check document (format {document.get('format')!r})")
    report = document["report"]
    flagged = report["flagged"]
    for verdict in flagged:
        int(verdict["row"])
        float(verdict["score"])
    return {
        "records": int(report["records"]),
        "risk": str(report["risk"]["level"]),
        "flagged": len(flagged),
        "suspects": len(report.get("suspects") or ()),
        "detectors": sorted(report.get("detectors") or {}),
        "findings": len(report.get("findings") or ()),
    }
