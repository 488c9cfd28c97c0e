"""Request validation for JSON model APIs: body format, shape, dtype, ranges, size.

Three request shapes are understood:

* ``generic``: ``{"inputs": [[...], ...]}`` (or ``"instances"``), one row or many;
* ``kserve``: the KServe v2 / Triton inference protocol,
  ``{"inputs": [{"name", "shape", "datatype", "data"}]}`` (one input tensor);
* ``mlflow``: MLflow pyfunc ``/invocations``: ``dataframe_split``,
  ``dataframe_records``, ``instances`` or ``inputs``.

``auto`` picks the shape from the body. Every problem is an
:class:`InvalidRequest` naming what is wrong; nothing is forwarded.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.errors import GatewayError

Rows = npt.NDArray[np.float64]
KSERVE_TYPES = {
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
}


_NUMBER_TYPES = frozenset({int, float})


class InvalidRequest(GatewayError):
    """The request does not match the model's input contract."""


class ApiFormat(enum.StrEnum):
    AUTO = "auto"
    GENERIC = "generic"
    KSERVE = "kserve"
    MLFLOW = "mlflow"


@dataclass(frozen=True)
class InputContract:
    """What a model accepts. ``None`` leaves a check off."""

    features: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    integer: bool = False
    max_rows: int = 256
    max_body_bytes: int = 1_000_000


@dataclass(frozen=True)
class ParsedRequest:
    rows: Rows
    format: ApiFormat


def parse_request(body: bytes, fmt: ApiFormat, contract: InputContract) -> ParsedRequest:
    if len(body) > contract.max_body_bytes:
        raise InvalidRequest(f"body of {len(body)} bytes exceeds {contract.max_body_bytes}")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise InvalidRequest(f"body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("body must be a JSON object")
    if fmt is ApiFormat.AUTO:
        fmt = detect_format(doc)
    if fmt is ApiFormat.KSERVE:
        table = _kserve_rows(doc)
    elif fmt is ApiFormat.MLFLOW:
        table = _mlflow_rows(doc)
    else:
        table = _generic_rows(doc)
    rows = _to_rows(table)
    _check(rows, contract)
    return ParsedRequest(rows, fmt)


def detect_format(doc: dict[str, Any]) -> ApiFormat:
    inputs = doc.get("inputs")
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
        return ApiFormat.KSERVE
    if "dataframe_split" in doc or "dataframe_records" in doc:
        return ApiFormat.MLFLOW
    return ApiFormat.GENERIC


def _generic_rows(doc: dict[str, Any]) -> Any:
    for key in ("inputs", "instances"):
        if key in doc:
            return doc[key]
    raise InvalidRequest("body needs an 'inputs' (or 'instances') array")


def _kserve_rows(doc: dict[str, Any]) -> Any:
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidRequest("KServe v2 body needs exactly one tensor in 'inputs'")
    tensor = inputs[0]
    shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
    if datatype not in KSERVE_TYPES:
        raise InvalidRequest(f"unsupported KServe datatype {datatype!r}")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise InvalidRequest("KServe shape must be [rows] or [rows, features] of positive ints")
    flat = _to_rows([data]).ravel() if isinstance(data, list) else None
    if flat is None:
        raise InvalidRequest("KServe 'data' must be an array of numbers")
    if flat.size != math.prod(shape):
        raise InvalidRequest(f"KServe data has {flat.size} values, shape {shape} needs more")
    if datatype.startswith(("INT", "UINT")) and not np.all(flat == np.rint(flat)):
        raise InvalidRequest(f"KServe {datatype} data holds non-integer values")
    return flat.reshape(shape[0], -1).tolist()


def _mlflow_rows(doc: dict[str, Any]) -> Any:
    if "dataframe_split" in doc:
        split = doc["dataframe_split"]
        if not isinstance(split, dict) or "data" not in split:
            raise InvalidRequest("'dataframe_split' needs 'columns' and 'data'")
        return split["data"]
    if "dataframe_records" in doc:
        records = doc["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InvalidRequest("'dataframe_records' must be a list of objects")
        if not records:
            raise InvalidRequest("'dataframe_records' is empty")
        columns = list(records[0])
        if any(list(r) != columns for r in records):
            raise InvalidRequest("every record needs the same columns in the same order")
        return [[r[c] for c in columns] for r in records]
    return _generic_rows(doc)


def _to_rows(table: Any) -> Rows:
    if not isinstance(table, list) or not table:
        raise InvalidRequest("inputs must be a non-empty array")
    if not isinstance(table[0], list):
        table = [table]
    width = len(table[0])
    for row in table:
        if not isinstance(row, list) or len(row) != width:
            raise InvalidRequest("inputs must be a rectangular table of numbers")
        if not _NUMBER_TYPES.issuperset(map(type, row)):  # JSON gives exactly int or float
            for value in row:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InvalidRequest(f"inputs hold a non-number: {str(value)[:40]!r}")
    try:
        rows = np.asarray(table, dtype=np.float64)
    except (ValueError, OverflowError) as e:
        raise InvalidRequest(f"inputs are not numbers: {e}") from None
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise InvalidRequest("inputs must be a table of rows of numbers")
    return rows


def _check(rows: Rows, contract: InputContract) -> None:
    if not np.isfinite(rows).all():
        raise InvalidRequest("inputs hold NaN or infinite values")
    if rows.shape[0] > contract.max_rows:
        raise InvalidRequest(f"{rows.shape[0]} rows exceed the limit of {contract.max_rows}")
    if contract.features is not None and rows.shape[1] != contract.features:
        raise InvalidRequest(f"rows have {rows.shape[1]} features, expected {contract.features}")
    if contract.min_value is not None and rows.min() < contract.min_value:
        raise InvalidRequest(f"a value is below the minimum {contract.min_value}")
    if contract.max_value is not None and rows.max() > contract.max_value:
        raise InvalidRequest(f"a value is above the maximum {contract.max_value}")
    if contract.integer and not np.all(rows == np.rint(rows)):
        raise InvalidRequest("inputs must be integers")
