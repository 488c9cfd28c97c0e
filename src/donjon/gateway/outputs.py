"""Reading a model server's answer: where its scores or labels are, whatever its shape.

Understood without configuration:

* KServe v2 / Triton: ``{"outputs": [{"name", "shape", "datatype", "data"}, ...]}``;
* MLflow, KServe v1, TensorFlow Serving: ``{"predictions": [...]}``;
* plain servers: ``{"probabilities" | "probs" | "scores" | "logits" | "outputs" |
  "predictions" | "labels": [...]}``;
* TorchServe and BentoML: a bare JSON array, or ``{class: score, ...}`` per row.

The value at that place may be a table of scores (rows x classes), one score per
row (a binary classifier's positive-class probability), labels (numbers or
strings), records (MLflow's DataFrame answers, TorchServe's ``{class: score}``
rows) or an output tensor. ``output = "key"`` or ``"/json/pointer"`` names the
place when it is elsewhere, ``output_kind`` what it holds.

:class:`ResponseReader` logs once per model what it found (or why it cannot
read the answer), never once per request.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.errors import GatewayError
from donjon.gateway.jsonio import loads

log = logging.getLogger("donjon.gateway")
Path = tuple[str | int, ...]
# known top-level keys, most specific first
SCORE_KEYS = ("probabilities", "probs", "scores", "logits", "outputs", "predictions", "labels")
_MAX_LABELS = 100_000  # distinct string labels remembered per model
_NAMED = 2**30  # ids of labels that are not small integers start here (the state is int32)


class BadUpstreamResponse(GatewayError):
    """The model answered with a body the gateway cannot read."""


class OutputKind(enum.StrEnum):
    AUTO = "auto"
    PROBABILITIES = "probabilities"  # in [0, 1]: a dropped score becomes 0
    LOGITS = "logits"  # unbounded scores (logits, decision functions)
    LABELS = "labels"


class Layout(enum.StrEnum):
    TABLE = "table"  # [[score, ...], ...]
    VECTOR = "vector"  # [score, ...]: one score per row (binary) or one label per row
    RECORDS = "records"  # [{class: score, ...}, ...]
    MAPPING = "mapping"  # {class: score, ...}: one row
    TENSOR = "tensor"  # a KServe v2 output tensor {"name", "shape", "datatype", "data"}


@dataclass
class Part:
    """One place of the answer holding scores or labels."""

    path: Path
    layout: Layout
    kind: OutputKind  # never AUTO once read
    scores: npt.NDArray[np.float64] | None  # rows x classes (rows x 1 for binary)
    labels: npt.NDArray[np.int64]
    names: list[list[str]] = field(default_factory=list)  # class names per row (records)
    ragged: list[list[float]] | None = None  # records of different classes per row


@dataclass
class ModelOutput:
    doc: Any
    parts: list[Part]
    labels: npt.NDArray[np.int64]  # one per row, for the detectors

    @property
    def found(self) -> tuple[tuple[Path, OutputKind, Layout], ...]:
        return tuple((p.path, p.kind, p.layout) for p in self.parts)

    def serialised(self) -> bytes:
        """The (changed) answer as compact JSON."""
        return json.dumps(self.doc, separators=(",", ":"), allow_nan=False).encode()

    @property
    def where(self) -> str:
        """What was found, said once in the log."""
        return ", ".join(
            f"{p.kind.value} at {_show(p.path)} ({p.layout.value})" for p in self.parts
        )


class ResponseReader:
    """Reads one model's answers; remembers string labels as small integers."""

    def __init__(
        self, model: str, output: str | None = None, kind: OutputKind = OutputKind.AUTO
    ) -> None:
        self.model = model
        self.pointer = _pointer(output) if output else None
        self.kind = kind
        self._label_ids: dict[str, int] = {}
        self._lock = threading.Lock()
        self._said: str | None = None
        self._said_key: object = None

    def read(self, body: bytes) -> ModelOutput:
        try:
            doc = loads(body)
        except (ValueError, RecursionError) as e:
            raise BadUpstreamResponse(f"the answer is not JSON: {str(e)[:80]}") from None
        try:
            return self._read(doc)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
            raise BadUpstreamResponse(f"the answer is unreadable: {str(e)[:80]}") from None

    def _read(self, doc: Any) -> ModelOutput:
        if self.pointer is not None:
            value = _resolve(doc, self.pointer)
            parts = [self._part(self.pointer, value, self._key_kind(self.pointer))]
        else:
            parts = self._find(doc)
        if not parts:
            raise BadUpstreamResponse(
                "no scores or labels in the answer (set the model's 'output' to their key "
                "or JSON pointer)"
            )
        primary = next((p for p in parts if p.kind is not OutputKind.LABELS), parts[0])
        return ModelOutput(doc, parts, primary.labels)

    def announce(self, found: ModelOutput | None, problem: str | None = None) -> None:
        """Log once what the answers hold, or why they cannot be read (again on a change)."""
        key: object = found.found if found is not None else "unreadable"
        if key == self._said_key:
            return
        self._said_key = key
        self._said = found.where if found is not None else f"unreadable: {problem}"
        if found is not None:
            log.info("model %s: reading %s from its answers", self.model, found.where)
        else:
            log.warning(
                "model %s: cannot read its answers (%s); they are forwarded unhardened and "
                "the detectors get no labels",
                self.model,
                problem,
            )

    # -- finding the scores -----------------------------------------------------

    def _find(self, doc: Any) -> list[Part]:
        if isinstance(doc, list):
            return [self._part((), doc, self.kind)]
        if not isinstance(doc, dict):
            raise BadUpstreamResponse("the answer is neither a JSON object nor an array")
        outputs = doc.get("outputs")
        if isinstance(outputs, list) and outputs and all(isinstance(t, dict) for t in outputs):
            tensors = [self._tensor(("outputs", i), t) for i, t in enumerate(outputs)]
            return _prefer_scores(tensors)
        keys = [k for k in SCORE_KEYS if k in doc]
        if keys:
            found: list[Part | None] = [
                self._part((k,), doc[k], self._key_kind((k,))) for k in keys
            ]
            return _prefer_scores(found)
        if doc and all(_is_number(v) for v in doc.values()):
            return [self._part((), doc, self.kind)]  # TorchServe: {class: score}
        raise BadUpstreamResponse(
            f"no known key ({', '.join(SCORE_KEYS)}) in the answer; set the model's 'output'"
        )

    def _key_kind(self, path: Path) -> OutputKind:
        if self.kind is not OutputKind.AUTO or not path:
            return self.kind
        name = str(path[-1]).lower()
        if "logit" in name:
            return OutputKind.LOGITS
        if "label" in name or name == "classes":
            return OutputKind.LABELS
        return OutputKind.AUTO

    def _tensor(self, path: Path, tensor: dict[str, Any]) -> Part | None:
        data, shape = tensor.get("data"), tensor.get("shape")
        if not isinstance(data, list) or not isinstance(shape, list):
            return None
        name = str(tensor.get("name", "")).lower()
        kind = self._key_kind((name,)) if self.kind is OutputKind.AUTO else self.kind
        if str(tensor.get("datatype", "")).upper() == "BYTES":
            kind = OutputKind.LABELS
        try:
            flat = data if kind is OutputKind.LABELS else _numbers(data)
            if kind is OutputKind.LABELS:
                labels = self._labels(flat)
                return Part(path, Layout.TENSOR, kind, None, labels)
            dims = [int(s) for s in shape]
            values = np.asarray(flat, dtype=np.float64).reshape(dims if len(dims) > 1 else (-1,))
        except (TypeError, ValueError) as e:
            raise BadUpstreamResponse(f"output tensor {name!r} is unreadable: {e}") from None
        return self._values(path, Layout.TENSOR, values, kind)

    def _part(self, path: Path, value: Any, kind: OutputKind) -> Part:
        if isinstance(value, dict):
            return self._records(path, [value], kind, Layout.MAPPING)
        if not isinstance(value, list) or not value:
            raise BadUpstreamResponse(f"{_show(path)} holds no list of scores or labels")
        if all(isinstance(r, dict) for r in value):
            return self._records(path, value, kind, Layout.RECORDS)
        if kind is OutputKind.LABELS or all(isinstance(v, str) for v in value):
            if any(isinstance(v, list | dict) for v in value):
                raise BadUpstreamResponse(f"{_show(path)} holds labels of an unknown form")
            return Part(path, Layout.VECTOR, OutputKind.LABELS, None, self._labels(value))
        try:
            values = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise BadUpstreamResponse(f"{_show(path)} holds no numbers: {str(e)[:80]}") from None
        if values.ndim == 2 and values.shape[1] >= 1:
            return self._values(path, Layout.TABLE, values, kind)
        if values.ndim == 1:
            return self._values(path, Layout.VECTOR, values, kind)
        raise BadUpstreamResponse(f"{_show(path)} has an unexpected shape {values.shape}")

    def _values(
        self, path: Path, layout: Layout, values: npt.NDArray[np.float64], kind: OutputKind
    ) -> Part:
        if values.size == 0:
            raise BadUpstreamResponse(f"{_show(path)} holds no values")
        least, most = float(values.min()), float(values.max())  # NaN if any is
        if not (math.isfinite(least) and math.isfinite(most)):
            raise BadUpstreamResponse(f"{_show(path)} holds NaN or infinite values")
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]  # one score per row, written back as a column
        if values.ndim == 1:
            integral = bool(np.all(values == np.rint(values)))
            if kind is OutputKind.LABELS or (kind is OutputKind.AUTO and integral):
                labels = (
                    values.astype(np.int64)
                    if integral and least >= 0 and most < _NAMED
                    else self._labels(values.tolist())
                )
                return Part(path, layout, OutputKind.LABELS, None, labels)
            kind = kind if kind is not OutputKind.AUTO else _kind_in(least, most)
            cut = 0.5 if kind is OutputKind.PROBABILITIES else 0.0
            labels = (values >= cut).astype(np.int64)
            return Part(path, layout, kind, values.reshape(-1, 1), labels)
        if values.ndim != 2:
            raise BadUpstreamResponse(f"{_show(path)} has an unexpected shape {values.shape}")
        if kind is OutputKind.LABELS:
            raise BadUpstreamResponse(f"{_show(path)} holds a table, not labels")
        kind = kind if kind is not OutputKind.AUTO else _kind_in(least, most)
        return Part(path, layout, kind, values, values.argmax(axis=1).astype(np.int64))

    def _records(
        self, path: Path, records: list[dict[str, Any]], kind: OutputKind, layout: Layout
    ) -> Part:
        names, rows = [], []
        for record in records:
            if not record or not all(_is_number(v) for v in record.values()):
                raise BadUpstreamResponse(f"{_show(path)} holds records that are not scores")
            names.append([str(k) for k in record])
            rows.append([float(v) for v in record.values()])
        widths = {len(r) for r in rows}
        flat = np.asarray([v for r in rows for v in r], dtype=np.float64)
        if not np.isfinite(flat).all():
            raise BadUpstreamResponse(f"{_show(path)} holds NaN or infinite values")
        kind = kind if kind is not OutputKind.AUTO else _kind_of(flat)
        labels = self._labels([n[int(np.argmax(r))] for n, r in zip(names, rows, strict=True)])
        same = len(widths) == 1 and all(n == names[0] for n in names)
        if same:
            return Part(path, layout, kind, np.asarray(rows, dtype=np.float64), labels, names)
        # rows of different classes (TorchServe's top-5): hardened row by row
        return Part(path, layout, kind, None, labels, names, ragged=rows)

    def label_name(self, label: int) -> str:
        """The label as the model wrote it (a small integer label is its own name)."""
        if label < _NAMED:
            return str(label)
        with self._lock:
            found = next((t for t, i in self._label_ids.items() if i == label), None)
        return found if found is not None else f"#{label}"

    def _labels(self, values: list[Any]) -> npt.NDArray[np.int64]:
        """Small non-negative integer labels as they are; any other label (a string, a
        negative or huge number) as a stable id of its own, above them."""
        out = np.empty(len(values), dtype=np.int64)
        with self._lock:
            for i, value in enumerate(values):
                if _small_label(value):
                    out[i] = int(value)
                    continue
                text = str(value)
                found = self._label_ids.get(text)
                if found is None:
                    if len(self._label_ids) < _MAX_LABELS:
                        found = _NAMED + len(self._label_ids)
                        self._label_ids[text] = found
                    else:
                        found = _NAMED + _MAX_LABELS + zlib.crc32(text.encode()) % 2**29
                out[i] = found
        return out


def _prefer_scores(parts: list[Part | None]) -> list[Part]:
    """Every part that holds scores (all are hardened); labels parts after them."""
    found = [p for p in parts if p is not None]
    return sorted(found, key=lambda p: p.kind is OutputKind.LABELS)


def _kind_of(values: npt.NDArray[np.float64]) -> OutputKind:
    if values.size:
        return _kind_in(float(values.min()), float(values.max()))
    return OutputKind.LOGITS


def _kind_in(least: float, most: float) -> OutputKind:
    """Scores within [0, 1] are probabilities; others logits."""
    return OutputKind.PROBABILITIES if least >= 0.0 and most <= 1.0 else OutputKind.LOGITS


def _small_label(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (isinstance(value, int) or value.is_integer()) and 0 <= value < _NAMED


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(data: list[Any]) -> list[Any]:
    """KServe data is flat or nested row-major: flatten it."""
    if data and isinstance(data[0], list):
        return np.asarray(data, dtype=np.float64).ravel().tolist()
    return data


def _pointer(output: str) -> Path:
    """``"key"`` or an RFC 6901 JSON pointer (``"/result/0/probs"``) as a path."""
    if not output.startswith("/"):
        return (output,)
    parts = output[1:].split("/")
    path: list[str | int] = []
    for raw in parts:
        part = raw.replace("~1", "/").replace("~0", "~")
        path.append(int(part) if part.isdigit() else part)
    return tuple(path)


def _resolve(doc: Any, path: Path) -> Any:
    value = doc
    for step in path:
        if isinstance(value, dict) and str(step) in value:
            value = value[str(step)]
        elif isinstance(value, list) and isinstance(step, int) and step < len(value):
            value = value[step]
        else:
            raise BadUpstreamResponse(f"the answer has nothing at {_show(path)}")
    return value


def _show(path: Path) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)
