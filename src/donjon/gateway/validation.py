"""Request validation for JSON model APIs: body format, shape, dtype, ranges, size.

Three request shapes are understood:

* ``generic``: ``{"inputs": [[...], ...]}`` or ``{"instances": ...}`` (KServe v1,
  TensorFlow Serving's row format), or a bare array of rows (TorchServe
  handlers, BentoML), one row or many;
* ``kserve``: the KServe v2 / Triton inference protocol,
  ``{"id"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?}``
  (one input tensor);
* ``mlflow``: MLflow pyfunc ``/invocations``: exactly one of ``dataframe_split``,
  ``dataframe_records``, ``instances`` or ``inputs``.

``auto`` picks the shape from the body. A body with more than one input key,
or any key its shape does not define, is refused: a model server could read
the other one. What is forwarded is never the caller's bytes but
:attr:`ParsedRequest.body`, a canonical re-serialisation of exactly the rows
that were checked (one key, 2-D rows, no duplicate keys, plain numbers), so
the model receives what the gateway validated, detected and charged. Every
problem is an :class:`InvalidRequest` naming what is wrong; nothing is forwarded.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.errors import GatewayError
from donjon.gateway.jsonio import dumps, loads

Rows = npt.NDArray[np.float64]
# the value range of each KServe v2 datatype: a value outside it is not what the server reads
KSERVE_TYPES: dict[str, tuple[float, float]] = {
    "FP16": (-65504.0, 65504.0),
    "FP32": (-3.4028234663852886e38, 3.4028234663852886e38),
    "FP64": (-math.inf, math.inf),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**53), 2**53),  # beyond 2**53 JSON parsers disagree (floats vs integers)
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**53),
}
_FLOAT_TYPES = {"FP16": np.float16, "FP32": np.float32}
EXACT_INT = 2**53  # integers beyond this are read as different numbers by different parsers
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
GENERIC_KEYS = ("inputs", "instances")
_KSERVE_KEYS = frozenset({"id", "inputs", "outputs"})
_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "data"})
_SPLIT_KEYS = frozenset({"columns", "data", "index"})

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
    body: bytes  # the canonical body to forward: exactly ``rows``, in the request's shape


def parse_request(body: bytes, fmt: ApiFormat, contract: InputContract) -> ParsedRequest:
    if len(body) > contract.max_body_bytes:
        raise InvalidRequest(f"body of {len(body)} bytes exceeds {contract.max_body_bytes}")
    try:
        doc = loads(body)
    except (ValueError, RecursionError) as e:
        raise InvalidRequest(f"body is not valid JSON: {e}") from None
    fmt, table, rebuild = _read(doc, fmt)
    table = _two_dimensional(table)
    rows = _to_rows(table)
    least, most = float(rows.min()), float(rows.max())  # NaN when any value is
    _check(rows, contract, least, most)
    _check_exact(table, rows, least, most)
    return ParsedRequest(rows, fmt, dumps(rebuild(table)))


def _read(doc: Any, fmt: ApiFormat) -> tuple[ApiFormat, Any, Rebuild]:
    """The body's shape, its table of rows, and how to rebuild the body from the rows."""
    if isinstance(doc, list) and fmt in (ApiFormat.AUTO, ApiFormat.GENERIC):
        # a bare array of rows (TorchServe handlers, BentoML's numpy input), forwarded bare
        return ApiFormat.GENERIC, doc, _bare
    if not isinstance(doc, dict):
        raise InvalidRequest("body must be a JSON object (or, generic, an array of rows)")
    if fmt is ApiFormat.AUTO:
        fmt = detect_format(doc)
    if fmt is ApiFormat.KSERVE:
        return (fmt, *_kserve_rows(doc))
    if fmt is ApiFormat.MLFLOW:
        return (fmt, *_mlflow_rows(doc))
    return (fmt, *_generic_rows(doc))


def detect_format(doc: dict[str, Any]) -> ApiFormat:
    inputs = doc.get("inputs")
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
        return ApiFormat.KSERVE
    if "dataframe_split" in doc or "dataframe_records" in doc:
        return ApiFormat.MLFLOW
    return ApiFormat.GENERIC


Table = list[list[Any]]
Rebuild = Any  # Callable[[Table], dict[str, Any]]: the canonical document for the rows


def _bare(table: Table) -> Any:
    return table


def _only(doc: dict[str, Any], allowed: tuple[str, ...], api: str) -> str:
    """The one input key of ``doc``; no other key may be present."""
    keys = [k for k in allowed if k in doc]
    if len(keys) != 1:
        found = ", ".join(repr(k) for k in keys) or "none"
        wanted = ", ".join(repr(k) for k in allowed)
        raise InvalidRequest(f"{api} body needs exactly one of {wanted} (found {found})")
    _no_other_keys(doc, {keys[0]}, api)
    return keys[0]


def _no_other_keys(doc: dict[str, Any], allowed: set[str] | frozenset[str], what: str) -> None:
    extra = sorted(k for k in doc if k not in allowed)
    if extra:
        shown = ", ".join(repr(k[:40]) for k in extra[:5])
        raise InvalidRequest(f"{what} body has keys its API does not define: {shown}")


def _generic_rows(doc: dict[str, Any]) -> tuple[Any, Rebuild]:
    if len(doc) == 1 and (key := next(iter(doc))) in GENERIC_KEYS:
        return doc[key], lambda table: {key: table}  # the usual body: one key, no checks left
    if not any(k in doc for k in GENERIC_KEYS):
        raise InvalidRequest("body needs an 'inputs' (or 'instances') array")
    key = _only(doc, GENERIC_KEYS, "the")
    return doc[key], lambda table: {key: table}


def _kserve_rows(doc: dict[str, Any]) -> tuple[Any, Rebuild]:
    _no_other_keys(doc, _KSERVE_KEYS, "KServe v2")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidRequest("KServe v2 body needs exactly one tensor in 'inputs'")
    tensor = inputs[0]
    _no_other_keys(tensor, _TENSOR_KEYS, "KServe v2 tensor")
    name, shape, datatype, data = (tensor.get(k) for k in ("name", "shape", "datatype", "data"))
    if datatype not in KSERVE_TYPES:
        raise InvalidRequest(f"unsupported KServe datatype {str(datatype)[:40]!r}")
    if name is not None and not isinstance(name, str):
        raise InvalidRequest("KServe tensor 'name' must be a string")
    request_id, outputs = doc.get("id"), doc.get("outputs")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest("KServe 'id' must be a string")
    if outputs is not None and not (
        isinstance(outputs, list)
        and all(
            isinstance(o, dict) and set(o) == {"name"} and isinstance(o["name"], str)
            for o in outputs
        )
    ):
        raise InvalidRequest("KServe 'outputs' must be a list of {'name': ...} objects")
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
    integer = datatype.startswith(("INT", "UINT"))
    if integer and not np.all(flat == np.rint(flat)):
        raise InvalidRequest(f"KServe {datatype} data holds non-integer values")
    low, high = KSERVE_TYPES[datatype]
    if flat.size and (flat.min() < low or flat.max() > high):
        raise InvalidRequest(f"KServe data holds values outside the range of {datatype}")
    if datatype in _FLOAT_TYPES:  # check what the server reads: the value at its precision
        with np.errstate(over="ignore"):
            flat = flat.astype(_FLOAT_TYPES[datatype]).astype(np.float64)
    table = flat.reshape(shape[0], -1)

    def rebuild(_: Table) -> dict[str, Any]:
        values = [int(v) for v in table.ravel()] if integer else table.ravel().tolist()
        out: dict[str, Any] = {"name": name} if name is not None else {}
        out.update(shape=shape, datatype=datatype, data=values)
        canonical: dict[str, Any] = {"id": request_id} if request_id is not None else {}
        canonical["inputs"] = [out]
        if outputs is not None:
            canonical["outputs"] = outputs
        return canonical

    return table.tolist(), rebuild


def _mlflow_rows(doc: dict[str, Any]) -> tuple[Any, Rebuild]:
    key = _only(doc, MLFLOW_KEYS, "MLflow")
    value = doc[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or "data" not in value:
            raise InvalidRequest("'dataframe_split' needs 'columns' and 'data'")
        _no_other_keys(value, _SPLIT_KEYS, "'dataframe_split'")
        columns = value.get("columns")
        table = _two_dimensional(value["data"])
        if not isinstance(table, list) or not table:
            raise InvalidRequest("'dataframe_split' data must be a non-empty array")
        if columns is not None:
            _check_columns(columns, table)
        if "index" in value and (
            not isinstance(value["index"], list) or len(value["index"]) != len(table)
        ):
            raise InvalidRequest("'dataframe_split' index must list one label per row")

        def split(rows: Table) -> dict[str, Any]:
            inner: dict[str, Any] = {"columns": columns} if columns is not None else {}
            inner["data"] = rows
            return {"dataframe_split": inner}

        return table, split
    if key == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise InvalidRequest("'dataframe_records' must be a list of objects")
        if not value:
            raise InvalidRequest("'dataframe_records' is empty")
        names = list(value[0])
        if any(list(r) != names for r in value):
            raise InvalidRequest("every record needs the same columns in the same order")

        def records(rows: Table) -> dict[str, Any]:
            return {"dataframe_records": [dict(zip(names, row, strict=True)) for row in rows]}

        return [[r[c] for c in names] for r in value], records
    return value, lambda rows: {key: rows}


def _check_columns(columns: Any, table: Any) -> None:
    if (
        not isinstance(columns, list)
        or not all(isinstance(c, str) for c in columns)
        or len(set(columns)) != len(columns)
    ):
        raise InvalidRequest("'dataframe_split' columns must be distinct strings")
    if isinstance(table[0], list) and len(columns) != len(table[0]):
        raise InvalidRequest("'dataframe_split' names a column per value of each row")


def _two_dimensional(table: Any) -> Any:
    """One row given as a flat array becomes a table of one row (forwarded as such)."""
    if isinstance(table, list) and table and not isinstance(table[0], list):
        return [table]
    return table


def _to_rows(table: Any) -> Rows:
    if not isinstance(table, list) or not table:
        raise InvalidRequest("inputs must be a non-empty array")
    table = _two_dimensional(table)
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


def _check_exact(table: Table, rows: Rows, least: float, most: float) -> None:
    """No integer beyond 2**53: parsers disagree on them (exact integers or rounded floats)."""
    if most <= EXACT_INT and least >= -EXACT_INT:
        return
    for i, j in np.argwhere(np.abs(rows) > EXACT_INT)[:1000]:
        if isinstance(table[i][j], int):
            raise InvalidRequest("inputs hold an integer beyond 2**53 (not exactly a float)")


def _check(rows: Rows, contract: InputContract, least: float, most: float) -> None:
    """``least`` and ``most``: the least and greatest value (NaN when any value is NaN)."""
    if not (math.isfinite(least) and math.isfinite(most)):
        raise InvalidRequest("inputs hold NaN or infinite values")
    if rows.shape[0] > contract.max_rows:
        raise InvalidRequest(f"{rows.shape[0]} rows exceed the limit of {contract.max_rows}")
    if contract.features is not None and rows.shape[1] != contract.features:
        raise InvalidRequest(f"rows have {rows.shape[1]} features, expected {contract.features}")
    if contract.min_value is not None and least < contract.min_value:
        raise InvalidRequest(f"a value is below the minimum {contract.min_value}")
    if contract.max_value is not None and most > contract.max_value:
        raise InvalidRequest(f"a value is above the maximum {contract.max_value}")
    if contract.integer and not np.all(rows == np.rint(rows)):
        raise InvalidRequest("inputs must be integers")
