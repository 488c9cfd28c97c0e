"""Held-out rows from a CSV file: numeric columns, an optional header, named columns dropped."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from donjon.core.textfile import read_csv_rows
from donjon.errors import InputError
from donjon.watch.ports import Rows

MAX_ROWS = 100_000


def read_rows(path: Path, drop: Sequence[str] = ()) -> Rows:
    """The rows of ``path`` as floats; the columns named in ``drop`` (a label) are left out."""
    table = read_csv_rows(path)
    if not table:
        raise InputError(f"{path} holds no rows")
    header: list[str] | None = None
    if not _numeric(table[0]):
        header, table = [h.strip() for h in table[0]], table[1:]
    keep = list(range(len(table[0]) if table else 0))
    if drop:
        if header is None:
            raise InputError(f"{path} has no header: cannot drop {', '.join(drop)}")
        missing = [d for d in drop if d not in header]
        if missing:
            raise InputError(f"{path} has no column {missing[0]!r}")
        keep = [i for i, h in enumerate(header) if h not in drop]
    if len(table) > MAX_ROWS:
        raise InputError(f"{path} holds more than {MAX_ROWS} rows")
    try:
        rows = np.asarray([[float(row[i]) for i in keep] for row in table], dtype=np.float64)
    except (ValueError, IndexError) as e:
        raise InputError(f"{path}: every kept column must be numeric ({e})") from None
    if rows.ndim != 2 or len(rows) < 2 or rows.shape[1] == 0:
        raise InputError(f"{path} needs at least two rows of numbers")
    if not np.isfinite(rows).all():
        raise InputError(f"{path} holds NaN or infinite values")
    return rows


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
    except ValueError:
        return False
    return True
