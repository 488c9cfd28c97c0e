"""``donjon demo-model DIR``: the model server the README's gateway tour puts Donjon in front of.

A Gaussian naive Bayes fitted on the demo's ``train.csv`` (the four numeric features,
``label``), served over HTTP: ``POST /predict`` with ``{"inputs": [[f1, f2, f3, f4], ...]}``
(or ``"instances"``, or the bare array of rows) answers ``{"predictions": [[p0, p1], ...]}``,
the class probabilities. It stands in for the team's own model server (KServe, MLflow, Triton...):
standard library for the model, Starlette for HTTP, so it runs wherever the gateway does.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon.errors import InputError
from donjon.quickstart.demo import FEATURES

ROUTE = "/predict"


@dataclass(frozen=True)
class NaiveBayes:
    """Per class: prior, and mean and variance of each feature."""

    priors: tuple[float, ...]
    means: tuple[tuple[float, ...], ...]
    variances: tuple[tuple[float, ...], ...]

    @classmethod
    def fit(cls, rows: list[list[float]], labels: list[int]) -> NaiveBayes:
        classes = sorted(set(labels))
        if classes != [0, 1]:
            raise InputError(f"the demo model needs labels 0 and 1, found {classes}")
        priors, means, variances = [], [], []
        for c in classes:
            members = [row for row, label in zip(rows, labels, strict=True) if label == c]
            priors.append(len(members) / len(rows))
            mean = [sum(col) / len(members) for col in zip(*members, strict=True)]
            var = [
                max(sum((v - m) ** 2 for v in col) / len(members), 1e-9)
                for col, m in zip(zip(*members, strict=True), mean, strict=True)
            ]
            means.append(tuple(mean))
            variances.append(tuple(var))
        return cls(tuple(priors), tuple(means), tuple(variances))

    def probabilities(self, row: list[float]) -> list[float]:
        logs = []
        for prior, mean, var in zip(self.priors, self.means, self.variances, strict=True):
            log = math.log(prior)
            for x, m, v in zip(row, mean, var, strict=True):
                log -= 0.5 * (math.log(2 * math.pi * v) + (x - m) ** 2 / v)
            logs.append(log)
        top = max(logs)
        weights = [math.exp(value - top) for value in logs]
        total = sum(weights)
        return [w / total for w in weights]


def load_training(path: Path) -> tuple[list[list[float]], list[int]]:
    """The demo table's features and labels; a clear error for anything else."""
    if not path.is_file():
        raise InputError(f"{path} not found: run `donjon demo DIR` first, then pass that DIR")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in (*FEATURES, "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path} lacks the column(s) {', '.join(missing)}")
        rows, labels = [], []
        for number, record in enumerate(reader, start=2):
            try:
                rows.append([float(record[name]) for name in FEATURES])
                labels.append(int(record["label"]))
            except (TypeError, ValueError) as e:
                raise InputError(f"{path}:{number}: not a number: {e}") from e
    if not rows:
        raise InputError(f"{path} has no rows")
    return rows, labels


def _rows_of(doc: Any) -> list[list[float]]:
    # a bare array of rows too: what the gateway forwards for TorchServe / BentoML clients
    inputs = doc.get("inputs", doc.get("instances")) if isinstance(doc, dict) else doc
    if not isinstance(inputs, list) or not inputs:
        raise ValueError("the body needs a non-empty 'inputs' (or 'instances') array")
    rows = []
    for row in inputs:
        if (
            not isinstance(row, list)
            or len(row) != len(FEATURES)
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in row)
        ):
            raise ValueError(f"each row must be {len(FEATURES)} numbers ({', '.join(FEATURES)})")
        rows.append([float(v) for v in row])
    return rows


def build_app(model: NaiveBayes) -> Any:
    """The Starlette app serving ``model`` at ``POST /predict``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request: Request) -> JSONResponse:
        try:
            rows = _rows_of(await request.json())
        except ValueError as e:  # also a body that is not JSON
            return JSONResponse({"error": str(e) or "the body is not JSON"}, status_code=400)
        return JSONResponse({"predictions": [model.probabilities(row) for row in rows]})

    return Starlette(routes=[Route(ROUTE, predict, methods=["POST"])])
