"""Diff two dataset versions, and verify a version against its manifest.

Records are matched by the id column when both versions have one; otherwise as a multiset:
first identical rows, then rows with identical content (all columns but label and id) whose
label differs. What is left is removed (old) or added (new).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from donjon.core.artifacts import ArtifactRef, Digest
from donjon.core.findings import Finding, Location, Subject
from donjon.core.severity import Severity
from donjon.data import rules
from donjon.data.manifest import (
    Manifest,
    file_entries,
    files_root,
    is_manifest,
    load_manifest,
    manifest_files,
    manifest_records,
    read_records,
)
from donjon.data.tabular import BOOKKEEPING_PREFIX, data_format
from donjon.errors import DataError

MAX_LISTED = 1000


@dataclass(frozen=True)
class RecordDiff:
    old_count: int
    new_count: int
    keyed_by: str  # "id", "content" or "path"
    unchanged: int
    added: tuple[int, ...]  # row indices in the new version (or paths for files)
    removed: tuple[int, ...]  # row indices in the old version
    changed: tuple[tuple[int, int], ...]  # (old, new) same key, other content
    relabelled: tuple[tuple[int, int, str | None, str | None], ...]  # (old, new, from, to)
    added_paths: tuple[str, ...] = ()
    removed_paths: tuple[str, ...] = ()
    changed_paths: tuple[str, ...] = ()

    @property
    def label_changes(self) -> Counter[str]:
        return Counter(f"{a} -> {b}" for _, _, a, b in self.relabelled)

    @property
    def clean(self) -> bool:
        return not (
            self.added or self.removed or self.changed or self.relabelled or self.added_paths
        ) and not (self.removed_paths or self.changed_paths)


@dataclass(frozen=True)
class DiffReport:
    old: Manifest
    new: Manifest
    records: RecordDiff
    schema_added: tuple[str, ...] = ()
    schema_removed: tuple[str, ...] = ()
    schema_retyped: tuple[tuple[str, str, str], ...] = ()
    class_counts_old: dict[str, int] = field(default_factory=dict)
    class_counts_new: dict[str, int] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        r = self.records
        return {
            "old": {"source": self.old.source, "root": self.old.root, "count": r.old_count},
            "new": {"source": self.new.source, "root": self.new.root, "count": r.new_count},
            "keyed_by": r.keyed_by,
            "unchanged": r.unchanged,
            "added": len(r.added) + len(r.added_paths),
            "removed": len(r.removed) + len(r.removed_paths),
            "changed": len(r.changed) + len(r.changed_paths),
            "relabelled": len(r.relabelled),
            "label_changes": dict(r.label_changes.most_common()),
            "class_counts": {"old": self.class_counts_old, "new": self.class_counts_new},
            "schema": {
                "added": list(self.schema_added),
                "removed": list(self.schema_removed),
                "retyped": [list(t) for t in self.schema_retyped],
            },
            "added_rows": list(r.added[:MAX_LISTED]) or list(r.added_paths[:MAX_LISTED]),
            "removed_rows": list(r.removed[:MAX_LISTED]) or list(r.removed_paths[:MAX_LISTED]),
            "changed_rows": [list(p) for p in r.changed[:MAX_LISTED]]
            or list(r.changed_paths[:MAX_LISTED]),
            "relabelled_rows": [list(p) for p in r.relabelled[:MAX_LISTED]],
            "findings": [f.fingerprint for f in self.findings],
        }


def subject_of(manifest: Manifest) -> Subject:
    digest = Digest.parse(manifest.root)
    return Subject(artifact=ArtifactRef(manifest.source, digest, kind="dataset"))


# -- record matching ------------------------------------------------------------


def _digest_words(column: pa.ChunkedArray) -> np.ndarray:
    """16-byte digests as an (n, 2) uint64 matrix, without Python objects."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    raw = np.frombuffer(array.buffers()[1], dtype=np.uint8)
    start = array.offset * 16
    return raw[start : start + len(array) * 16].view("<u8").reshape(-1, 2)


def _frame(table: pa.Table) -> pd.DataFrame:
    rows, content = _digest_words(table.column("row")), _digest_words(table.column("content"))
    return pd.DataFrame(
        {
            "idx": np.arange(table.num_rows),
            "r0": rows[:, 0],
            "r1": rows[:, 1],
            "c0": content[:, 0],
            "c1": content[:, 1],
            "key": table.column("key").to_pandas(),
            "label": table.column("label").to_pandas(),
        }
    )


def _match(old: pd.DataFrame, new: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    """Pair rows equal on ``on`` as multisets (k-th occurrence with k-th occurrence)."""
    old = old.assign(occ=old.groupby(on, sort=False).cumcount())
    new = new.assign(occ=new.groupby(on, sort=False).cumcount())
    return old.merge(new, on=[*on, "occ"], suffixes=("_old", "_new"))


def _labels(values: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in values]


def diff_records(old: pa.Table, new: pa.Table, *, by_id: bool) -> RecordDiff:
    a, b = _frame(old), _frame(new)
    changed: list[tuple[int, int]] = []
    if by_id:
        if a["key"].duplicated().any() or b["key"].duplicated().any():
            raise DataError("the id column has duplicate values; ids must be unique to diff")
        pairs = a.merge(b, on="key", suffixes=("_old", "_new"))
        same_row = (pairs.r0_old == pairs.r0_new) & (pairs.r1_old == pairs.r1_new)
        same_content = (pairs.c0_old == pairs.c0_new) & (pairs.c1_old == pairs.c1_new)
        relabel = pairs[~same_row & same_content]
        other = pairs[~same_row & ~same_content]
        changed = list(zip(other.idx_old.tolist(), other.idx_new.tolist(), strict=True))
        unchanged = int(same_row.sum())
        matched_old, matched_new = set(pairs.idx_old), set(pairs.idx_new)
    else:
        same = _match(a, b, ["r0", "r1"])
        rest_a = a[~a.idx.isin(same.idx_old)]
        rest_b = b[~b.idx.isin(same.idx_new)]
        relabel = _match(rest_a, rest_b, ["c0", "c1"])
        unchanged = len(same)
        matched_old = set(same.idx_old) | set(relabel.idx_old)
        matched_new = set(same.idx_new) | set(relabel.idx_new)
    relabelled = list(
        zip(
            relabel.idx_old.tolist(),
            relabel.idx_new.tolist(),
            _labels(relabel.label_old),
            _labels(relabel.label_new),
            strict=True,
        )
    )
    removed = a.idx[~a.idx.isin(matched_old)].tolist()
    added = b.idx[~b.idx.isin(matched_new)].tolist()
    return RecordDiff(
        old.num_rows,
        new.num_rows,
        "id" if by_id else "content",
        unchanged,
        tuple(added),
        tuple(removed),
        tuple(changed),
        tuple(relabelled),
    )


def diff_files(old: Manifest, new: Manifest) -> RecordDiff:
    a = {e.path: e.digest for e in old.files}
    b = {e.path: e.digest for e in new.files}
    return RecordDiff(
        len(a),
        len(b),
        "path",
        sum(1 for p in a if b.get(p) == a[p]),
        (),
        (),
        (),
        (),
        tuple(sorted(set(b) - set(a))),
        tuple(sorted(set(a) - set(b))),
        tuple(sorted(p for p in a if p in b and a[p] != b[p])),
    )


# -- loading either side ----------------------------------------------------------


@dataclass
class Side:
    """A version to compare: its manifest, and its record table when it has one."""

    manifest: Manifest
    records: pa.Table | None


def _open_side(
    path: Path,
    workdir: Path,
    name: str,
    label_column: str | None,
    id_column: str | None,
    progress: Callable[[int], None] | None,
) -> Side:
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if is_manifest(path):
        manifest = load_manifest(path)
        return Side(manifest, read_records(manifest) if manifest.kind == "records" else None)
    if data_format(path) == "files":
        return Side(manifest_files(path, progress), None)
    out = workdir / f"{name}.records.parquet"
    manifest = manifest_records(  # records as the data holds them, not data filter's columns
        path,
        out,
        label_column=label_column,
        id_column=id_column,
        progress=progress,
        skip_prefix=BOOKKEEPING_PREFIX,
    )
    manifest = Manifest(**{**manifest.__dict__, "path": workdir / f"{name}.json"})
    return Side(manifest, read_records(manifest))


def verify_manifest(
    manifest: Manifest, progress: Callable[[int], None] | None = None, data: Path | None = None
) -> tuple[Finding, ...]:
    """Rehash the data a manifest names (or ``data``, a copy of it elsewhere: a pulled or
    moved file); a mismatch is a DJ-DAT-001 finding (none: verified).

    Raises DataError when the data cannot be found (nothing was verified).
    """
    source = manifest.source_path() if data is None else data if data.exists() else None
    if source is None:
        named = manifest.source if data is None else str(data)
        raise DataError(f"the data {named!r} of the manifest cannot be found")
    if manifest.kind == "files":
        entries = file_entries(source, progress)
        if files_root(entries) == manifest.root:
            return ()
        now = Manifest(**{**manifest.__dict__, "files": tuple(entries), "path": None})
        changes = diff_files(manifest, now)
        evidence: dict[str, Any] = {
            "added": list(changes.added_paths[:MAX_LISTED]),
            "removed": list(changes.removed_paths[:MAX_LISTED]),
            "changed": list(changes.changed_paths[:MAX_LISTED]),
        }
    else:
        recorded = read_records(manifest)
        with tempfile.TemporaryDirectory(prefix="donjon-verify-") as tmp:
            out = Path(tmp) / "now.records.parquet"
            now = manifest_records(
                source,
                out,
                label_column=manifest.label_column,
                id_column=manifest.id_column,
                progress=progress,
            )
            if now.root == manifest.root:
                return ()
            current = Manifest(**{**now.__dict__, "path": out.with_name("now.json")})
            changes = diff_records(
                recorded, read_records(current), by_id=manifest.id_column is not None
            )
        evidence = {
            "added_rows": list(changes.added[:MAX_LISTED]),
            "removed_rows": list(changes.removed[:MAX_LISTED]),
            "changed_rows": [list(p) for p in changes.changed[:MAX_LISTED]],
            "relabelled_rows": [list(p[:2]) for p in changes.relabelled[:MAX_LISTED]],
        }
    summary = ", ".join(f"{k}: {len(v)}" for k, v in evidence.items() if v)
    finding = Finding(
        rules.MANIFEST_MISMATCH,
        subject_of(manifest),
        f"{manifest.source} no longer matches its manifest ({summary or 'content differs'})",
        Location(member=manifest.source),
        evidence={"manifest_root": manifest.root, **evidence},
    )
    return (finding,)


def _class_counts(table: pa.Table | None) -> dict[str, int]:
    if table is None:
        return {}
    labels = table.column("label")
    if labels.null_count == len(labels):
        return {}
    counts = labels.value_counts().to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in counts}


def diff(
    old: Path,
    new: Path,
    *,
    label_column: str | None = None,
    id_column: str | None = None,
    verify: bool = True,
    progress: Callable[[int], None] | None = None,
) -> DiffReport:
    """Diff two versions, each a manifest (``.json``) or the data itself."""
    with tempfile.TemporaryDirectory(prefix="donjon-diff-") as tmp:
        work = Path(tmp)
        a = _open_side(old, work, "old", label_column, id_column, progress)
        b = _open_side(new, work, "new", label_column, id_column, progress)
        findings: list[Finding] = []
        if verify:
            for side in (a, b):
                path = side.manifest.path
                if path is not None and path.parent != work and side.manifest.source_path():
                    findings += verify_manifest(side.manifest, progress)
        if a.manifest.kind != b.manifest.kind:
            raise DataError("cannot diff a folder of files against a table")
        if a.records is None or b.records is None:
            records = diff_files(a.manifest, b.manifest)
        else:
            by_id = a.manifest.id_column is not None and b.manifest.id_column is not None
            records = diff_records(a.records, b.records, by_id=by_id)
        report = _report(a, b, records, findings)
    return report


def _report(a: Side, b: Side, records: RecordDiff, findings: list[Finding]) -> DiffReport:
    old_types = {c.name: c.type for c in a.manifest.schema}
    new_types = {c.name: c.type for c in b.manifest.schema}
    added = tuple(n for n in new_types if n not in old_types)
    removed = tuple(n for n in old_types if n not in new_types)
    retyped = tuple(
        (n, old_types[n], new_types[n])
        for n in old_types
        if n in new_types and old_types[n] != new_types[n]
    )
    subject = subject_of(b.manifest)
    if added or removed or retyped:
        findings.append(
            Finding(
                rules.SCHEMA_CHANGE,
                subject,
                f"schema changed: {len(added)} column(s) added, {len(removed)} removed, "
                f"{len(retyped)} retyped",
                evidence={"added": list(added), "removed": list(removed), "retyped": retyped},
            )
        )
    if records.relabelled:
        changes = records.label_changes
        top, top_count = changes.most_common(1)[0]
        share = top_count / len(records.relabelled)
        severity = Severity.HIGH if share >= 0.5 and top_count >= 5 else Severity.MEDIUM
        findings.append(
            Finding(
                rules.LABEL_CHANGES,
                subject,
                f"{len(records.relabelled)} record(s) changed label; most often {top} "
                f"({top_count})",
                severity=severity,
                evidence={
                    "label_changes": dict(changes.most_common()),
                    "rows": [p[1] for p in records.relabelled[:MAX_LISTED]],
                },
            )
        )
    return DiffReport(
        a.manifest,
        b.manifest,
        records,
        added,
        removed,
        retyped,
        _class_counts(a.records),
        _class_counts(b.records),
        tuple(findings),
    )
