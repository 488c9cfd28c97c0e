"""Output hardening against extraction and privacy attacks.

Per model: ``top_k`` keeps the k largest scores of each row and drops the rest
(a dropped probability becomes 0; a dropped logit becomes the smallest kept one
minus 1, so the order stays and nothing new is revealed); ``decimals`` rounds
scores (coarsening); ``label_only`` replaces the scores by the predicted class.
Every place of the answer that holds scores is hardened (:mod:`.outputs` finds
them) and the answer keeps its shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.gateway.outputs import (
    BadUpstreamResponse,
    Layout,
    ModelOutput,
    OutputKind,
    Part,
    Path,
)

__all__ = ["BadUpstreamResponse", "Hardening", "harden"]


@dataclass(frozen=True)
class Hardening:
    top_k: int | None = None
    decimals: int | None = None
    label_only: bool = False

    @property
    def active(self) -> bool:
        return self.label_only or self.top_k is not None or self.decimals is not None

    def apply(
        self, scores: npt.NDArray[np.float64], kind: OutputKind = OutputKind.PROBABILITIES
    ) -> npt.NDArray[np.float64]:
        """Scores (rows x classes) hardened; with ``label_only`` the class index per row."""
        out = np.array(scores, dtype=np.float64)
        if self.label_only:
            result: npt.NDArray[np.float64] = out.argmax(axis=1).astype(np.float64)
            return result
        if self.top_k is not None and self.top_k < out.shape[1]:
            order = np.argsort(-out, axis=1)
            cut = order[:, self.top_k :]
            if kind is OutputKind.PROBABILITIES:
                filler: Any = 0.0
            else:  # below every kept value: the order stays, nothing new is revealed
                kept = np.take_along_axis(out, order[:, : self.top_k], axis=1)
                filler = np.repeat(kept.min(axis=1, keepdims=True) - 1.0, cut.shape[1], axis=1)
            np.put_along_axis(out, cut, filler, axis=1)
        if self.decimals is not None:
            out = np.round(out, self.decimals)
        return out


def harden(output: ModelOutput, hardening: Hardening) -> bytes | None:
    """The hardened body, or None when nothing changes."""
    if not hardening.active:
        return None
    parts = [p for p in output.parts if p.kind is not OutputKind.LABELS]
    if not parts:
        return None  # labels only already: nothing to take away
    doc = output.doc
    try:
        for part in parts:
            doc = _put(doc, part.path, _hardened(part, hardening, _get(doc, part.path)))
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise BadUpstreamResponse(f"the answer cannot be hardened: {str(e)[:80]}") from None


def _hardened(part: Part, hardening: Hardening, value: Any) -> Any:
    if part.layout is Layout.RECORDS or part.layout is Layout.MAPPING:
        return _records(part, hardening, value)
    assert part.scores is not None  # noqa: S101 - parts that are not labels hold scores
    binary = part.scores.shape[1] == 1
    if binary:  # one score per row: label-only thresholds it, top-k keeps it
        cut = 0.5 if part.kind is OutputKind.PROBABILITIES else 0.0
        if hardening.label_only:
            new = (part.scores >= cut).astype(np.float64)
        else:
            new = Hardening(decimals=hardening.decimals).apply(part.scores, part.kind)
    else:
        new = hardening.apply(part.scores, part.kind)
    if part.layout is Layout.TENSOR:
        tensor = dict(value)
        if hardening.label_only:
            tensor.update(datatype="INT64", shape=[len(new)], data=[int(v) for v in new.ravel()])
        else:
            tensor["data"] = new.ravel().tolist()
        return tensor
    if hardening.label_only:
        return [int(v) for v in new.ravel()]
    if part.layout is Layout.VECTOR or (binary and not isinstance(value[0], list)):
        return new.ravel().tolist()
    return new.tolist()


def _records(part: Part, hardening: Hardening, value: Any) -> Any:
    rows = part.ragged
    if rows is None:
        rows = part.scores.tolist() if part.scores is not None else []
    out: list[Any] = []
    for names, row in zip(part.names, rows, strict=True):
        scores = np.asarray([row], dtype=np.float64)
        if hardening.label_only:
            out.append(names[int(scores.argmax())])
        else:
            new = hardening.apply(scores, part.kind)[0].tolist()
            out.append(dict(zip(names, new, strict=True)))
    return out[0] if part.layout is Layout.MAPPING else out


def _get(doc: Any, path: Path) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _put(doc: Any, path: Path, value: Any) -> Any:
    """A copy of ``doc`` with ``value`` at ``path`` (the containers on the way are copied)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = list(doc) if isinstance(doc, list) else dict(doc)
    copy[head] = _put(doc[head], rest, value)
    return copy
