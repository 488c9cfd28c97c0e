"""``python -m donjon_runners.onnx MODEL.onnx``: rows in (JSON on stdin), labels out.

Input ``{"rows": [[float, ...], ...]}``; output ``{"labels": [...]}``: the model's
label output when it has one (an integer or string tensor, e.g. skl2onnx's
``label``), else the arg-max of its first 2-D score output (or the 0.5 cut of a
single score column). Only the CPU execution provider; no custom operators.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def labels(path: str, rows: list[list[float]]) -> list[Any]:
    import onnxruntime  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.float64 if "double" in feed.type else np.float32
    x = np.asarray(rows, dtype=dtype)
    outputs = session.run(None, {feed.name: x})
    for meta, value in zip(session.get_outputs(), outputs, strict=True):
        array = np.asarray(value)
        if "tensor" in meta.type and array.dtype.kind in "iuUSO" and array.ndim <= 2:
            return [_plain(v) for v in array.reshape(len(rows), -1)[:, 0]]
    for value in outputs:
        array = np.asarray(value, dtype=np.float64)
        if array.ndim == 2 and array.shape[0] == len(rows):
            if array.shape[1] == 1:
                return [int(v >= 0.5) for v in array[:, 0]]
            return [int(i) for i in array.argmax(axis=1)]
    raise SystemExit("no label or score output of the expected shape")


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
    json.dump({"labels": labels(sys.argv[1], request["rows"])}, sys.stdout)


if __name__ == "__main__":
    main()
