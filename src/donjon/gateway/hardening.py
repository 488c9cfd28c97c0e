"""Output hardening against extraction and privacy attacks, and reading model outputs.

Per model: ``top_k`` keeps the k largest scores of each row and zeroes the rest;
``decimals`` rounds scores (coarsening); ``label_only`` replaces the scores by
the predicted class. The response keeps its API shape (generic, KServe v2,
MLflow). :func:`read_outputs` also gives the detectors the label of each row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.errors import GatewayError
from donjon.gateway.validation import ApiFormat


class BadUpstreamResponse(GatewayError):
    """The model answered with a body the gateway cannot read."""


@dataclass(frozen=True)
class Hardening:
    top_k: int | None = None
    decimals: int | None = None
    label_only: bool = False

    @property
    def active(self) -> bool:
        return self.label_only or self.top_k is not None or self.decimals is not None

    def apply(self, scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out = np.array(scores, dtype=np.float64)
        if self.label_only:
            result: npt.NDArray[np.float64] = out.argmax(axis=1).astype(np.float64)
            return result
        if self.top_k is not None and self.top_k < out.shape[1]:
            cut = np.argsort(-out, axis=1)[:, self.top_k :]
            np.put_along_axis(out, cut, 0.0, axis=1)
        if self.decimals is not None:
            out = np.round(out, self.decimals)
        return out


@dataclass
class ModelOutput:
    """A parsed response: the document, where the scores live, and the scores."""

    doc: dict[str, Any]
    scores: npt.NDArray[np.float64] | None  # rows x classes, or None for labels only
    labels: npt.NDArray[np.int64]
    key: str  # "outputs" / "predictions" / "kserve"


def read_outputs(body: bytes, fmt: ApiFormat) -> ModelOutput:
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise BadUpstreamResponse(f"model response is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadUpstreamResponse("model response is not a JSON object")
    outputs = doc.get("outputs")
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
        tensor = outputs[0]
        values = np.asarray(tensor.get("data"), dtype=np.float64)
        shape = tensor.get("shape") or [values.size]
        values = values.reshape([int(s) for s in shape])
        return _from_values(doc, values, "kserve")
    for key in ("outputs", "predictions"):
        if key in doc:
            try:
                values = np.asarray(doc[key], dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise BadUpstreamResponse(f"model '{key}' are not numbers: {e}") from None
            return _from_values(doc, values, key)
    raise BadUpstreamResponse("model response has no 'outputs' or 'predictions'")


def _from_values(doc: dict[str, Any], values: npt.NDArray[np.float64], key: str) -> ModelOutput:
    if values.ndim == 2 and values.shape[1] > 1:
        return ModelOutput(doc, values, values.argmax(axis=1).astype(np.int64), key)
    if values.ndim in (1, 2):
        return ModelOutput(doc, None, np.rint(values.ravel()).astype(np.int64), key)
    raise BadUpstreamResponse(f"model outputs have an unexpected shape {values.shape}")


def harden(output: ModelOutput, hardening: Hardening) -> bytes | None:
    """The hardened body, or None when nothing changes."""
    if not hardening.active or output.scores is None:
        return None
    new = hardening.apply(output.scores)
    doc = dict(output.doc)
    if output.key == "kserve":
        tensor = dict(doc["outputs"][0])
        tensor["data"] = new.ravel().tolist()
        tensor["shape"] = list(new.shape)
        if hardening.label_only:
            tensor["datatype"] = "INT64"
            tensor["data"] = [int(v) for v in tensor["data"]]
        doc["outputs"] = [tensor, *doc["outputs"][1:]]
    else:
        doc[output.key] = [int(v) for v in new] if hardening.label_only else new.tolist()
    return json.dumps(doc, separators=(",", ":")).encode()
