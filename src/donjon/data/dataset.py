"""Turning arrays, DataFrames and files into the detectors' :class:`LabelledData`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from donjon.data.detectors.base import LabelledData
from donjon.data.tabular import BOOKKEEPING_PREFIX, data_format, read_npz, read_table
from donjon.errors import DataError, InputError

MIN_ID_ROWS = 10


@dataclass(frozen=True)
class Loaded:
    data: LabelledData
    source: str
    dropped_columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def looks_like_id(values: pd.Series) -> bool:
    """Integer-valued, one distinct value per row and monotonic: a row number or record id.

    Such a column carries no information about a record, only about its position, and a
    detector that takes it for a feature learns the file's order instead of the data.
    """
    if len(values) < MIN_ID_ROWS or values.isna().any():
        return False
    numbers = values.to_numpy(dtype=np.float64)
    if not np.all(numbers == np.round(numbers)):
        return False
    steps = np.diff(numbers)
    return bool((steps > 0).all() or (steps < 0).all())


def from_arrays(
    X: Any,
    y: Any | None = None,
    *,
    image_shape: tuple[int, ...] | None = None,
    pred_probs: Any | None = None,
    source: str = "<arrays>",
) -> Loaded:
    features = np.asarray(X)
    if features.ndim < 2:
        raise InputError("X must have one row per record (2 dimensions or more)")
    if image_shape is None and features.ndim in (3, 4):
        image_shape = tuple(int(s) for s in features.shape[1:])
    flat = features.reshape(features.shape[0], -1)
    if not np.issubdtype(flat.dtype, np.number) and flat.dtype != np.bool_:
        raise InputError("X must be numeric")
    flat = flat.astype(np.float64)
    if not np.isfinite(flat).all():
        raise InputError("X has NaN or infinite values; impute or drop them first")
    labels = None
    classes: tuple[str, ...] = ()
    if y is not None:
        raw = np.asarray(y).reshape(-1)
        if raw.shape[0] != flat.shape[0]:
            raise InputError(f"X has {flat.shape[0]} rows but y has {raw.shape[0]}")
        names = np.array([str(v) for v in raw.tolist()])
        uniques, labels = np.unique(names, return_inverse=True)
        order = _natural_order(uniques)
        remap = np.empty(len(order), dtype=np.int64)
        remap[order] = np.arange(len(order))
        labels = remap[labels]
        classes = tuple(str(uniques[i]) for i in order)
    probs = None
    if pred_probs is not None:
        probs = np.asarray(pred_probs, dtype=float)
        if probs.shape != (flat.shape[0], len(classes)):
            raise InputError(f"pred_probs must have shape ({flat.shape[0]}, {len(classes)})")
    names_ = tuple(f"x{j}" for j in range(flat.shape[1]))
    data = LabelledData(flat, labels, classes, names_, image_shape, probs)
    return Loaded(data, source)


def _natural_order(values: np.ndarray) -> list[int]:
    """Numeric labels in numeric order, others alphabetically."""
    try:
        keys = [float(v) for v in values]
    except ValueError:
        return list(np.argsort(values))
    return list(np.argsort(keys, kind="stable"))


def from_frame(
    frame: pd.DataFrame,
    label_column: str | None,
    *,
    exclude: tuple[str, ...] = (),
    image_shape: tuple[int, ...] | None = None,
    pred_probs: Any | None = None,
    source: str = "<DataFrame>",
) -> Loaded:
    if label_column is not None and label_column not in frame.columns:
        raise InputError(f"label column {label_column!r} is not among {list(frame.columns)}")
    skip = {label_column, *exclude}
    numeric, dropped, notes = [], [], []
    for name in frame.columns:
        if name in skip:
            continue
        if str(name).startswith(BOOKKEEPING_PREFIX):
            dropped.append(str(name))
            notes.append(f"column {name!r} is Donjon's own bookkeeping, not a feature: left out")
        elif pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name]):
            numeric.append(name)
            if looks_like_id(frame[name]):
                notes.append(
                    f"column {name!r} looks like an id (whole numbers, one per row, monotonic):"
                    f" it is used as a feature; pass --exclude {name} if it is not one"
                )
        else:
            dropped.append(str(name))
    if not numeric:
        raise DataError("no numeric feature column to check")
    features = frame[numeric].to_numpy(dtype=np.float64)
    if np.isnan(features).any():
        features = np.where(np.isnan(features), np.nanmedian(features, axis=0), features)
    labels = frame[label_column].to_numpy() if label_column is not None else None
    loaded = from_arrays(
        features, labels, image_shape=image_shape, pred_probs=pred_probs, source=source
    )
    data = LabelledData(
        loaded.data.X,
        loaded.data.y,
        loaded.data.classes,
        tuple(str(n) for n in numeric),
        image_shape,
        loaded.data.pred_probs,
    )
    return Loaded(data, source, tuple(dropped), tuple(notes))


def from_path(
    path: Path,
    label_column: str | None,
    *,
    exclude: tuple[str, ...] = (),
    image_shape: tuple[int, ...] | None = None,
    pred_probs: Any | None = None,
) -> Loaded:
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if data_format(path) == "npz":
        arrays = read_npz(path)
        if "X" not in arrays:
            raise DataError(f"{path}: an .npz data set needs an array 'X'")
        label = label_column or "y"
        if label_column is not None and label not in arrays:
            raise InputError(f"{path} has no array {label!r}")
        return from_arrays(
            arrays["X"],
            arrays.get(label),
            image_shape=image_shape,
            pred_probs=pred_probs,
            source=str(path),
        )
    table: pa.Table = read_table(path)
    return from_frame(
        table.to_pandas(),
        label_column,
        exclude=exclude,
        image_shape=image_shape,
        pred_probs=pred_probs,
        source=str(path),
    )
