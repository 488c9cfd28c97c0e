"""A model version's fingerprint: the points, the enrolled answers, and the tolerance.

Enrolment queries the endpoint that serves the promoted version: held-out rows,
then points next to its decision boundary (:mod:`.boundary`), each asked
``repeats`` times. The enrolled answer of a point is the median of its scores
(or its first label when the server gives labels only). The tolerance is what
non-determinism the server showed, times a safety factor, never below a floor:

``tolerance = max(floor, factor * noise)`` where ``noise`` is the largest
difference of any score between two answers to the same point. A point has
*changed* when a score moved by more than the tolerance (or, without scores, when
its label changed). Under the enrolled model each point changes with a rate of at
most ``change_rate`` (by default 1 %, far above what a tolerance of 3x the
largest noise seen lets through), so the number of changed points is at most
Binomial(n, change_rate); a check alarms when its tail is below ``alpha``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.errors import InputError, WatchError
from donjon.watch.boundary import boundary_points
from donjon.watch.ports import Answers, Model, Rows

PAYLOAD_TYPE = "application/vnd.donjon.watch.fingerprint.v1+json"
TOLERANCE_FLOOR = 1e-4
NOISE_FACTOR = 3.0
CHANGE_RATE = 0.01
ALPHA = 1e-6


@dataclass(frozen=True)
class Fingerprint:
    model: str
    version: int
    endpoint: str
    request_format: str
    points: Rows
    kinds: tuple[str, ...]  # "row" (held out) or "boundary", per point
    answers: Answers
    tolerance: float
    noise: float
    change_rate: float = CHANGE_RATE
    alpha: float = ALPHA
    enrol_queries: int = 0
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def size(self) -> int:
        return len(self.points)

    def to_json(self) -> bytes:
        """The canonical payload that is signed (sorted keys, shortest float form)."""
        doc: dict[str, Any] = {
            "type": PAYLOAD_TYPE,
            "model": self.model,
            "version": self.version,
            "endpoint": self.endpoint,
            "request_format": self.request_format,
            "points": self.points.tolist(),
            "kinds": list(self.kinds),
            "labels": list(self.answers.labels),
            "scores": None if self.answers.scores is None else self.answers.scores.tolist(),
            "tolerance": self.tolerance,
            "noise": self.noise,
            "change_rate": self.change_rate,
            "alpha": self.alpha,
            "enrol_queries": self.enrol_queries,
            "created_at": self.created_at,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Fingerprint:
        try:
            doc = json.loads(data)
            if doc.get("type") != PAYLOAD_TYPE:
                raise InputError(f"not a fingerprint: type {doc.get('type')!r}")
            points = np.asarray(doc["points"], dtype=np.float64)
            scores = doc["scores"]
            answers = Answers(
                tuple(str(v) for v in doc["labels"]),
                None if scores is None else np.asarray(scores, dtype=np.float64),
            )
            found = cls(
                model=str(doc["model"]),
                version=int(doc["version"]),
                endpoint=str(doc["endpoint"]),
                request_format=str(doc["request_format"]),
                points=points,
                kinds=tuple(str(k) for k in doc["kinds"]),
                answers=answers,
                tolerance=float(doc["tolerance"]),
                noise=float(doc["noise"]),
                change_rate=float(doc["change_rate"]),
                alpha=float(doc["alpha"]),
                enrol_queries=int(doc["enrol_queries"]),
                created_at=str(doc["created_at"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"malformed fingerprint: {e}") from None
        if points.ndim != 2 or len(points) != len(answers) or len(found.kinds) != len(points):
            raise InputError("malformed fingerprint: points, kinds and answers disagree")
        if answers.scores is not None and answers.scores.shape[0] != len(points):
            raise InputError("malformed fingerprint: scores and points disagree")
        return found


def enrol(
    model: Model,
    rows: Rows,
    *,
    name: str,
    version: int,
    endpoint: str,
    request_format: str,
    held_out: int = 40,
    boundary: int = 160,
    repeats: int = 3,
    tolerance: float | None = None,
    seed: int = 0,
) -> Fingerprint:
    """Pick the fingerprint points on ``model`` and record its answers to them."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or len(rows) < 2:
        raise InputError("the held-out data needs at least two rows of numbers")
    if not np.isfinite(rows).all():
        raise InputError("the held-out data holds NaN or infinite values")
    if repeats < 2:
        raise InputError("repeats must be at least 2 (the noise is measured between them)")
    first = model.answer(rows)
    near = boundary_points(model, rows, first.labels, boundary, seed=seed)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rows), size=min(held_out, len(rows)), replace=False)
    points = np.vstack([rows[picked], near])
    kinds = ("row",) * len(picked) + ("boundary",) * len(near)
    reads = [model.answer(points) for _ in range(repeats)]
    answers, noise = _consensus(reads)
    if tolerance is None:
        tolerance = max(TOLERANCE_FLOOR, NOISE_FACTOR * noise)
    change_rate = CHANGE_RATE
    if answers.scores is None:  # labels only: the flips seen between repeats set the rate
        flips = np.mean([_label_changes(answers, r).mean() for r in reads])
        change_rate = max(CHANGE_RATE, 2.0 * float(flips))
    return Fingerprint(
        model=name,
        version=version,
        endpoint=endpoint,
        request_format=request_format,
        points=points,
        kinds=kinds,
        answers=answers,
        tolerance=float(tolerance),
        noise=noise,
        change_rate=change_rate,
        enrol_queries=model.queries,
    )


def _consensus(reads: list[Answers]) -> tuple[Answers, float]:
    """The enrolled answers (median scores) and the largest score difference between reads."""
    tables = [r.scores for r in reads if r.scores is not None]
    if tables and (len(tables) < len(reads) or len({t.shape for t in tables}) > 1):
        raise WatchError("the endpoint's answers to the same points changed shape")
    if tables:
        stack = np.stack(tables)
        noise = float(np.max(stack.max(axis=0) - stack.min(axis=0)))
        return Answers(reads[0].labels, np.median(stack, axis=0)), noise
    return Answers(reads[0].labels), 0.0


def _label_changes(enrolled: Answers, now: Answers) -> npt.NDArray[np.bool_]:
    then = np.asarray(enrolled.labels, dtype=object)
    changed: npt.NDArray[np.bool_] = then != np.asarray(now.labels, dtype=object)
    return changed
