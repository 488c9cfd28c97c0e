"""Reading tabular data (CSV, Parquet, ``.npz``) in bounded batches, and the canonical row encoding.

Canonical encoding of a row: the cells in schema order, each a one-byte type tag and a
fixed-width payload, so every row of a schema has the same width and whole batches encode
with vectorised NumPy:

=====  ==========================================================  =====
tag    cell                                                        bytes
=====  ==========================================================  =====
``n``  null (any type), payload zero                               1 + 8
``b``  boolean, 0 or 1 as big-endian int64                         1 + 8
``i``  signed or unsigned integer as big-endian int64 (uint64
       above 2**63-1 wraps: two's complement of the same bits)     1 + 8
``f``  floating point as big-endian IEEE-754 float64; ``-0.0`` is
       written as ``0.0`` and every NaN as the quiet NaN
       ``0x7ff8000000000000``                                      1 + 8
``s``  anything else (strings, bytes, dates, decimals) as the
       first 8 bytes of BLAKE2b-64 of its UTF-8 text / bytes       1 + 8
=====  ==========================================================  =====

``.npz`` files are read as a zip of ``.npy`` members with ``allow_pickle=False``: object
arrays are refused, nothing is ever unpickled.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.lib import format as npy_format

from donjon.core.textfile import bom_encoding, sniff_delimiter
from donjon.errors import DataError, InputError

BOOKKEEPING_PREFIX = "_donjon_"  # columns Donjon adds (data filter's row, source, reason)
CELL_WIDTH = 9
DEFAULT_BATCH_ROWS = 65_536
TABULAR_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_CANONICAL_NAN = np.array([0x7FF8000000000000], dtype=np.uint64).view(np.float64)[0]


def data_format(path: Path) -> str:
    """``csv``, ``parquet``, ``npz`` or ``files`` (a folder); InputError otherwise."""
    if path.is_dir():
        return "files"
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in TABULAR_SUFFIXES:
        return TABULAR_SUFFIXES[suffix]
    raise InputError(
        f"{path}: unsupported data format {suffix!r}; use a folder, .csv, .parquet or .npz"
    )


# -- .npz -------------------------------------------------------------------


def read_npz(path: Path, max_bytes: int = 8 << 30) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file; object (pickled) arrays are refused, never loaded."""
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise DataError(f"{path}: member {info.filename!r} is not a .npy array")
                if info.file_size > max_bytes:
                    raise DataError(f"{path}: member {info.filename!r} is too large")
                with archive.open(info) as member:
                    arrays[info.filename[:-4]] = npy_format.read_array(member, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz of plain arrays: {e}") from e
    return arrays


def npz_table(arrays: dict[str, np.ndarray], label: str = "y") -> pa.Table:
    """Arrays ``X`` (n, ...) and optional label ``y`` (n,) as a table ``X[0]..X[d-1], y``."""
    if "X" not in arrays:
        raise DataError(f"an .npz data set needs an array 'X'; it has {sorted(arrays)}")
    features = np.asarray(arrays["X"])
    if features.ndim == 0:
        raise DataError("array 'X' must have one row per record")
    flat = features.reshape(features.shape[0], -1)
    columns: dict[str, Any] = {f"X[{j}]": flat[:, j] for j in range(flat.shape[1])}
    if label in arrays:
        labels = np.asarray(arrays[label])
        if labels.shape[0] != flat.shape[0]:
            raise DataError(f"'X' has {flat.shape[0]} rows but {label!r} has {labels.shape[0]}")
        columns[label] = labels.reshape(labels.shape[0], -1)[:, 0]
    return pa.table(columns)


# -- batches ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batches:
    """A schema and an iterator of record batches of bounded size."""

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    rows: int | None  # when known up front (Parquet metadata, arrays)


def open_batches(path: Path, batch_rows: int = DEFAULT_BATCH_ROWS) -> Batches:
    """Stream ``path`` (CSV, Parquet or .npz) in batches of at most ``batch_rows`` rows."""
    fmt = data_format(path)
    try:
        if fmt == "parquet":
            # no pre-buffering: with it, pyarrow keeps every row group read so far
            parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
            return Batches(
                parquet.schema_arrow,
                parquet.iter_batches(batch_size=batch_rows),
                parquet.metadata.num_rows,
            )
        if fmt == "csv":
            dialect = csv_dialect(path)
            reader = pacsv.open_csv(
                path, read_options=dialect.read_options(), parse_options=dialect.parse_options()
            )
            return Batches(reader.schema, iter(reader), None)
        if fmt == "npz":
            table = npz_table(read_npz(path))
            return Batches(table.schema, iter(table.to_batches(batch_rows)), table.num_rows)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    raise InputError(f"{path} is a folder, not a table")


def read_table(path: Path) -> pa.Table:
    """The whole table (for detectors, which need every row at once)."""
    fmt = data_format(path)
    try:
        if fmt == "parquet":
            return pq.read_table(path)
        if fmt == "csv":
            dialect = csv_dialect(path)
            return pacsv.read_csv(
                path, read_options=dialect.read_options(), parse_options=dialect.parse_options()
            )
        if fmt == "npz":
            return npz_table(read_npz(path))
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    raise InputError(f"{path} is a folder, not a table")


def read_text_table(path: Path) -> pa.Table:
    """A CSV file with every cell as the text it holds (``007`` stays ``007``, ``NA`` stays
    ``NA``): for writing records out again unchanged. InputError when it is not UTF-8 text."""
    dialect = csv_dialect(path)
    read, parse = dialect.read_options(), dialect.parse_options()
    try:
        names = pacsv.open_csv(path, read_options=read, parse_options=parse).schema.names
        text = pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        return pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=text)
    except pa.ArrowInvalid as e:
        if "UTF8" in str(e) or "utf8" in str(e).lower():
            raise InputError(
                f"{path} is not UTF-8 text ({e}); re-encode it as UTF-8 "
                f"(e.g. iconv -f latin1 -t utf-8)"
            ) from e
        raise DataError(f"cannot read {path}: {e}") from e
    except (pa.ArrowIOError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from e


def write_table(table: pa.Table, path: Path, delimiter: str | None = None) -> None:
    """Write ``table`` as CSV (``delimiter``: a ``.tsv`` gets tabs, else commas) or Parquet
    (by suffix), UTF-8; never overwrites an existing file."""
    if path.exists():
        raise InputError(f"{path} already exists; Donjon never overwrites data")
    fmt = data_format(path)
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "csv":
        sep = delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
        # the standard library's writer quotes a cell only when it must, as the input did
        with path.open("x", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter=sep, lineterminator="\n")
            writer.writerow(table.column_names)
            for batch in table.to_batches(DEFAULT_BATCH_ROWS):
                writer.writerows(
                    zip(*(column.to_pylist() for column in batch.columns), strict=True)
                )
    else:
        raise InputError(f"{path}: write .csv or .parquet")


# -- CSV dialects ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CsvDialect:
    """How a CSV file is written: its text encoding (from a byte-order mark, else UTF-8)
    and its delimiter (``donjon.core.textfile``: the same rule as every other reader)."""

    encoding: str = "utf-8"
    delimiter: str = ","

    def read_options(self) -> pacsv.ReadOptions:
        # pyarrow drops a UTF-8 byte-order mark itself and transcodes any other encoding
        encoding = "utf-8" if self.encoding == "utf-8-sig" else self.encoding
        return pacsv.ReadOptions(block_size=1 << 22, encoding=encoding)

    def parse_options(self) -> pacsv.ParseOptions:
        return pacsv.ParseOptions(delimiter=self.delimiter)


def csv_dialect(path: Path, head_bytes: int = 1 << 16) -> CsvDialect:
    """The dialect of the CSV file at ``path``, from its first ``head_bytes``."""
    with path.open("rb") as handle:
        head = handle.read(head_bytes)
    encoding = bom_encoding(head)
    text = head.decode(encoding, errors="replace")
    return CsvDialect(encoding, sniff_delimiter(text.split("\n", 1)[0].rstrip("\r"), path.suffix))


# -- canonical encoding -------------------------------------------------------


def _tag_column(out: np.ndarray, col: int, tag: bytes) -> None:
    out[:, col * CELL_WIDTH] = tag[0]


def _hash_texts(values: Sequence[Any]) -> np.ndarray:
    digests = np.zeros((len(values), 8), dtype=np.uint8)
    for i, value in enumerate(values):
        if value is None:
            continue
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        digests[i] = np.frombuffer(hashlib.blake2b(raw, digest_size=8).digest(), dtype=np.uint8)
    return digests


def encode_column(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One column as an (n, 9) uint8 matrix of canonical cells."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    n = len(array)
    cells = np.zeros((n, CELL_WIDTH), dtype=np.uint8)
    kind = array.type
    if pa.types.is_null(kind):
        cells[:, 0] = ord("n")
        return cells
    valid = np.ones(n, dtype=bool) if array.null_count == 0 else ~np.asarray(array.is_null())
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind):
        tag = "b" if pa.types.is_boolean(kind) else "i"
        filled = pc.fill_null(array, False if tag == "b" else 0)
        values = np.asarray(filled.to_numpy(zero_copy_only=False)).astype(np.int64)
        cells[:, 1:] = values.astype(">i8").view(np.uint8).reshape(n, 8)
    elif pa.types.is_floating(kind):
        tag = "f"
        values = np.asarray(pc.fill_null(array, 0.0).to_numpy(zero_copy_only=False))
        values = values.astype(np.float64)
        values[values == 0.0] = 0.0
        values[np.isnan(values)] = _CANONICAL_NAN
        cells[:, 1:] = values.astype(">f8").view(np.uint8).reshape(n, 8)
    else:
        tag = "s"
        textual = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        if not textual and not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            array = pc.cast(array, pa.string())
        cells[:, 1:] = _hash_texts(array.to_pylist())
    cells[:, 0] = ord(tag)
    if not valid.all():
        cells[~valid, 0] = ord("n")
        cells[~valid, 1:] = 0
    return cells


def encode_rows(batch: pa.RecordBatch | pa.Table, columns: Sequence[str]) -> np.ndarray:
    """Rows of ``batch`` restricted to ``columns`` as an (n, 9 * len(columns)) matrix."""
    out = np.empty((batch.num_rows, CELL_WIDTH * len(columns)), dtype=np.uint8)
    for j, name in enumerate(columns):
        out[:, j * CELL_WIDTH : (j + 1) * CELL_WIDTH] = encode_column(batch.column(name))
    return out


def blank_cells(encoded: np.ndarray, positions: Sequence[int]) -> None:
    """Overwrite the cells at ``positions`` with the null cell, in place."""
    for j in positions:
        encoded[:, j * CELL_WIDTH] = ord("n")
        encoded[:, j * CELL_WIDTH + 1 : (j + 1) * CELL_WIDTH] = 0


def row_digests(encoded: np.ndarray, person: bytes = b"donjon.row.v1") -> list[bytes]:
    """BLAKE2b-128 of each canonical row (``person`` separates the uses of the hash)."""
    rows = np.ascontiguousarray(encoded)
    width = rows.shape[1]
    view = memoryview(rows.tobytes())
    blake = hashlib.blake2b
    return (
        [
            blake(view[start : start + width], digest_size=16, person=person).digest()
            for start in range(0, rows.shape[0] * width, width)
        ]
        if width
        else [blake(b"", digest_size=16, person=person).digest()] * rows.shape[0]
    )
