"""``python -m donjon_runners.onnx MODEL.onnx``: rows in (JSON on stdin), labels out.

Input ``{"rows": [[float, ...], ...]}``; output ``{"labels": [...], "scores": ...}``:
the model's label output when it has one (an integer or string tensor, e.g.
skl2onnx's ``label``), else the arg-max of its first 2-D score output (or the 0.5
cut of a single score column); ``scores`` is that first 2-D score tensor of
several columns (rows x classes, finite numbers), or null. Only the CPU
execution provider; no custom operators.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def answers(path: str, rows: list[list[float]]) -> dict[str, Any]:
    import onnxruntime  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.float64 if "double" in feed.type else np.float32
    x = np.asarray(rows, dtype=dtype)
    outputs = session.run(None, {feed.name: x})
    scores = _scores(session.get_outputs(), outputs, len(rows))
    for meta, value in zip(session.get_outputs(), outputs, strict=True):
        array = np.asarray(value)
        if "tensor" in meta.type and array.dtype.kind in "iuUSO" and array.ndim <= 2:
            found = [_plain(v) for v in array.reshape(len(rows), -1)[:, 0]]
            return {"labels": found, "scores": _listed(scores)}
    if scores is not None:
        if scores.shape[1] == 1:
            return {"labels": [int(v >= 0.5) for v in scores[:, 0]], "scores": None}
        return {"labels": [int(i) for i in scores.argmax(axis=1)], "scores": _listed(scores)}
    raise SystemExit("no label or score output of the expected shape")


def _scores(metas: list[Any], outputs: list[Any], rows: int) -> Any:
    """The first 2-D float tensor output with one row per input row, or None."""
    for meta, value in zip(metas, outputs, strict=True):
        array = np.asarray(value)
        kind, shape = array.dtype.kind, array.shape
        if "tensor" in meta.type and kind == "f" and len(shape) == 2 and shape[0] == rows:
            return array.astype(np.float64)
    return None


def _listed(scores: Any) -> Any:
    if scores is None or scores.shape[1] < 2 or not np.isfinite(scores).all():
        return None
    return scores.tolist()


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m donjon_runners.onnx MODEL.onnx < rows.json")
    request = json.load(sys.stdin)
    json.dump(answers(sys.argv[1], request["rows"]), sys.stdout)


if __name__ == "__main__":
    main()
