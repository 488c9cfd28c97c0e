"""A linear classifier's weights as a safetensors file, written and read with numpy.

The quickstart never pickles its model: the trained weights go to the vault as
a safetensors file (a JSON header and raw little-endian arrays), which the
scanner can inspect and anyone can load without running code.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from donjon.errors import InputError

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LinearModel:
    """Multinomial logistic regression: ``softmax(X @ coef.T + intercept)``."""

    coef: Array
    intercept: Array

    def predict_proba(self, rows: Array) -> Array:
        z = np.asarray(rows, dtype=np.float64) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out: Array = e / e.sum(axis=1, keepdims=True)
        return out

    def predict(self, rows: Array) -> npt.NDArray[np.int64]:
        return np.asarray(self.predict_proba(rows).argmax(axis=1), dtype=np.int64)


def save_safetensors(model: LinearModel, path: Path) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "donjon-quickstart-linear"}}
    blobs: list[bytes] = []
    offset = 0
    for name, array in (("coef", model.coef), ("intercept", model.intercept)):
        raw = np.ascontiguousarray(array, dtype="<f8").tobytes()
        header[name] = {
            "dtype": "F64",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def load_safetensors(path: Path) -> LinearModel:
    data = path.read_bytes()
    if len(data) < 8:
        raise InputError(f"{path} is not a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + size])
        arrays = {}
        for name in ("coef", "intercept"):
            entry = header[name]
            start, end = entry["data_offsets"]
            body = data[8 + size + start : 8 + size + end]
            arrays[name] = np.frombuffer(body, dtype="<f8").reshape(entry["shape"]).copy()
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path} is not a quickstart model: {e}") from e
    return LinearModel(arrays["coef"], arrays["intercept"])
