"""Dataset manifests: a Merkle root over files (folders) or over records (tables).

The manifest is a small JSON document (format ``donjon.data.manifest/v1``, see
``docs/data.md``). For tables it sits next to a record table, a Parquet file with one
row per record (key, row digest, content digest, label), whose SHA-256 the manifest
records; the Merkle root is computed over the row digests in order. Building streams the
data in batches, so memory stays bounded whatever the number of rows.

Signing is a port: :class:`ManifestSigner` signs :meth:`Manifest.signing_payload`, the
canonical JSON of the manifest without its signatures. The provenance capability
provides the implementation; this module never imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from donjon.data.merkle import MerkleAccumulator
from donjon.data.tabular import (
    DEFAULT_BATCH_ROWS,
    Batches,
    blank_cells,
    data_format,
    encode_rows,
    npz_table,
    open_batches,
    row_digests,
)
from donjon.errors import DataError, InputError

FORMAT = "donjon.data.manifest/v1"
RECORDS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("row", pa.binary(16)),
        ("content", pa.binary(16)),
        ("label", pa.string()),
    ]
)
Progress = Callable[[int], None]


class ManifestSigner(Protocol):
    """Signs a manifest's canonical payload; returns a JSON-able signature entry."""

    def sign(self, payload: bytes) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    size: int
    digest: str


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Manifest:
    """What a dataset version contained, verifiable later."""

    kind: str  # "files" or "records"
    source: str
    root: str
    count: int
    created: str
    data_format: str
    schema: tuple[Column, ...] = ()
    label_column: str | None = None
    id_column: str | None = None
    records_file: str | None = None
    records_digest: str | None = None
    files: tuple[FileEntry, ...] = ()
    signatures: tuple[dict[str, Any], ...] = ()
    format: str = FORMAT
    path: Path | None = field(default=None, compare=False)  # where it was read from

    def to_dict(self, *, with_signatures: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        data["schema"] = [asdict(c) for c in self.schema]
        data["files"] = [asdict(f) for f in self.files]
        data["signatures"] = list(self.signatures) if with_signatures else []
        if not with_signatures:
            data.pop("signatures")
        return data

    def signing_payload(self) -> bytes:
        """Canonical JSON of everything but the signatures (what a signer signs)."""
        return json.dumps(self.to_dict(with_signatures=False), sort_keys=True).encode()

    def signed(self, signer: ManifestSigner) -> Manifest:
        return replace(self, signatures=(*self.signatures, signer.sign(self.signing_payload())))

    @property
    def records_path(self) -> Path | None:
        if self.records_file is None:
            return None
        base = self.path.parent if self.path is not None else Path.cwd()
        return base / self.records_file

    def source_path(self) -> Path | None:
        """The data the manifest describes, resolved next to the manifest when relative."""
        candidate = Path(self.source)
        if not candidate.is_absolute() and self.path is not None:
            candidate = self.path.parent / candidate
        return candidate if candidate.exists() else None


# -- files ----------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_symlink():
                raise DataError(f"{path}: symbolic links are not followed in a dataset folder")
            yield path


def file_entries(folder: Path, progress: Progress | None = None) -> list[FileEntry]:
    entries = []
    for path in _walk(folder):
        rel = path.relative_to(folder).as_posix()
        entries.append(FileEntry(rel, path.stat().st_size, f"sha256:{_file_digest(path)}"))
        if progress:
            progress(1)
    entries.sort(key=lambda e: e.path)
    return entries


def files_root(entries: Sequence[FileEntry]) -> str:
    acc = MerkleAccumulator()
    acc.extend(
        e.path.encode() + b"\x00" + bytes.fromhex(e.digest.partition(":")[2]) for e in entries
    )
    return f"sha256:{acc.root().hex()}"


def manifest_files(folder: Path, progress: Progress | None = None) -> Manifest:
    entries = file_entries(folder, progress)
    return Manifest(
        kind="files",
        source=str(folder),
        root=files_root(entries),
        count=len(entries),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        data_format="files",
        files=tuple(entries),
    )


# -- records --------------------------------------------------------------------


def _check_columns(schema: pa.Schema, label: str | None, key: str | None) -> None:
    for option, name in (("label column", label), ("id column", key)):
        if name is not None and name not in schema.names:
            raise InputError(f"{option} {name!r} is not among the columns {schema.names}")


def _records_batches(
    batches: Batches, label: str | None, key: str | None
) -> Iterator[tuple[pa.RecordBatch, list[bytes]]]:
    """Each input batch, turned into the record-table batch, with its row digests."""
    names = batches.schema.names
    blanked = [j for j, c in enumerate(names) if c in {label, key}]
    for batch in batches.batches:
        encoded = encode_rows(batch, names)
        rows = row_digests(encoded)
        blank_cells(encoded, blanked)  # content: the same row with label and id nulled
        content = row_digests(encoded, person=b"donjon.content")
        n = batch.num_rows
        keys = (
            pa.array([str(v) for v in batch.column(key).to_pylist()], pa.string())
            if key
            else pa.nulls(n, pa.string())
        )
        labels = batch.column(label).cast(pa.string()) if label else pa.nulls(n, pa.string())
        out = pa.record_batch(
            [keys, pa.array(rows, pa.binary(16)), pa.array(content, pa.binary(16)), labels],
            schema=RECORDS_SCHEMA,
        )
        yield out, rows


def manifest_arrays(
    X: Any,
    y: Any | None,
    records_out: Path,
    *,
    source: str = "<arrays>",
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Manifest:
    """Manifest in-memory arrays ``X`` (n, ...) and labels ``y`` as records ``X[j]..., y``.

    The encoding is the one an ``.npz`` of the same arrays gets, so both manifest alike.
    """
    import numpy as np

    arrays = {"X": np.asarray(X)} | ({} if y is None else {"y": np.asarray(y)})
    table = npz_table(arrays)
    batches = Batches(table.schema, iter(table.to_batches(batch_rows)), table.num_rows)
    return _manifest_batches(
        batches, records_out, source, "npz", "y" if y is not None else None, None, None
    )


def manifest_records(
    data: Path,
    records_out: Path,
    *,
    label_column: str | None = None,
    id_column: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Progress | None = None,
    skip_prefix: str | None = None,
) -> Manifest:
    """Manifest a table (CSV, Parquet, .npz), writing its record table to ``records_out``;
    columns whose names start with ``skip_prefix`` are left out (a diff leaves out the
    bookkeeping columns ``data filter`` adds)."""
    batches = open_batches(data, batch_rows)
    if skip_prefix:
        batches = _without_columns(batches, skip_prefix)
    return _manifest_batches(
        batches, records_out, str(data), data_format(data), label_column, id_column, progress
    )


def _without_columns(batches: Batches, prefix: str) -> Batches:
    kept = [name for name in batches.schema.names if not name.startswith(prefix)]
    if len(kept) == len(batches.schema.names):
        return batches
    schema = pa.schema([batches.schema.field(name) for name in kept])
    return Batches(schema, (batch.select(kept) for batch in batches.batches), batches.rows)


def _manifest_batches(
    batches: Batches,
    records_out: Path,
    source: str,
    fmt: str,
    label_column: str | None,
    id_column: str | None,
    progress: Progress | None,
) -> Manifest:
    _check_columns(batches.schema, label_column, id_column)
    if records_out.exists():
        raise InputError(f"{records_out} already exists; Donjon never overwrites it")
    acc = MerkleAccumulator()
    total = 0
    try:
        with pq.ParquetWriter(records_out, RECORDS_SCHEMA) as writer:
            for out, rows in _records_batches(batches, label_column, id_column):
                writer.write_batch(out)
                acc.extend(rows)
                total += len(rows)
                if progress:
                    progress(len(rows))
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        records_out.unlink(missing_ok=True)
        raise DataError(f"cannot read {source}: {e}") from e
    except BaseException:
        records_out.unlink(missing_ok=True)
        raise
    schema = tuple(Column(f.name, str(f.type)) for f in batches.schema)
    return Manifest(
        kind="records",
        source=source,
        root=f"sha256:{acc.root().hex()}",
        count=total,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        data_format=fmt,
        schema=schema,
        label_column=label_column,
        id_column=id_column,
        records_file=records_out.name,
        records_digest=f"sha256:{_file_digest(records_out)}",
    )


def build_manifest(
    data: Path,
    out: Path,
    *,
    label_column: str | None = None,
    id_column: str | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Manifest ``data`` (folder or table) and save it to ``out`` (plus its record table)."""
    if out.exists():
        raise InputError(f"{out} already exists; Donjon never overwrites a manifest")
    if not data.exists():
        raise InputError(f"{data} does not exist")
    if data_format(data) == "files":
        manifest = manifest_files(data, progress)
    else:
        records = out.with_name(out.name.removesuffix(".json") + ".records.parquet")
        manifest = manifest_records(
            data, records, label_column=label_column, id_column=id_column, progress=progress
        )
    source = os.path.relpath(data.resolve(), out.resolve().parent)
    manifest = replace(manifest, source=Path(source).as_posix())
    save_manifest(manifest, out)
    return replace(manifest, path=out)


# -- persistence -----------------------------------------------------------------


def save_manifest(manifest: Manifest, out: Path) -> None:
    out.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")


def load_manifest(path: Path) -> Manifest:
    """Read a manifest; DataError when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise DataError(f"{path}: not a Donjon data manifest (format {data.get('format')!r})")
        return Manifest(
            kind=data["kind"],
            source=data["source"],
            root=data["root"],
            count=int(data["count"]),
            created=data["created"],
            data_format=data["data_format"],
            schema=tuple(Column(**c) for c in data.get("schema", [])),
            label_column=data.get("label_column"),
            id_column=data.get("id_column"),
            records_file=data.get("records_file"),
            records_digest=data.get("records_digest"),
            files=tuple(FileEntry(**f) for f in data.get("files", [])),
            signatures=tuple(data.get("signatures", [])),
            path=path,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: cannot read manifest: {e}") from e


def is_manifest(path: Path) -> bool:
    return path.is_file() and path.name.endswith(".json")


def read_records(manifest: Manifest) -> pa.Table:
    """The record table of a manifest, checked against the digest and root it records."""
    records = manifest.records_path
    if records is None or not records.is_file():
        raise DataError(f"record table {manifest.records_file!r} of the manifest is missing")
    if f"sha256:{_file_digest(records)}" != manifest.records_digest:
        raise DataError(f"{records}: the record table does not match its manifest digest")
    table = pq.read_table(records)
    if not table.schema.equals(RECORDS_SCHEMA):
        raise DataError(f"{records}: unexpected record table schema")
    acc = MerkleAccumulator()
    for chunk in table.column("row").chunks:
        acc.extend(chunk.to_pylist())
    if f"sha256:{acc.root().hex()}" != manifest.root or table.num_rows != manifest.count:
        raise DataError(f"{records}: the record table does not match the manifest's root")
    return table
