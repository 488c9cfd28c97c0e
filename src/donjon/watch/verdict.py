"""One fingerprint check: ask the endpoint the enrolled points, count what changed, test it.

A point changed when any of its scores moved by more than the enrolled
tolerance, or (when either answer has no scores) its label changed. Under the
enrolled model a point changes with probability at most ``change_rate``, so the
p-value of ``k`` changed points out of ``n`` is the binomial tail
``P(X >= k)``, ``X ~ Binomial(n, change_rate)``; below ``alpha`` the deployed
model is not the enrolled one. An answer with another number of classes is a
different model outright (every point changed, p = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from donjon.watch.fingerprint import Fingerprint
from donjon.watch.ports import Answers, Model


@dataclass(frozen=True)
class CheckResult:
    model: str
    version: int
    endpoint: str
    points: int
    changed: tuple[int, ...]  # indices of the changed points
    changed_boundary: int
    largest_change: float  # largest score difference seen (0 without scores)
    p_value: float
    alpha: float
    queries: int

    @property
    def differs(self) -> bool:
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "endpoint": self.endpoint,
            "points": self.points,
            "changed": len(self.changed),
            "changed_boundary": self.changed_boundary,
            "changed_points": list(self.changed[:50]),
            "largest_change": self.largest_change if math.isfinite(self.largest_change) else None,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "queries": self.queries,
            "differs": self.differs,
        }


def binomial_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p)) if k > 0 else 1.0


def compare(fingerprint: Fingerprint, now: Answers) -> tuple[np.ndarray, float]:
    """Which points changed (a boolean per point) and the largest score difference."""
    enrolled = fingerprint.answers
    n = fingerprint.size
    if enrolled.scores is not None and now.scores is not None:
        if enrolled.scores.shape != now.scores.shape:
            return np.ones(n, dtype=bool), math.inf
        moved = np.abs(now.scores - enrolled.scores).max(axis=1)
        return moved > fingerprint.tolerance, float(moved.max(initial=0.0))
    labels_then = np.asarray(enrolled.labels, dtype=object)
    labels_now = np.asarray(now.labels, dtype=object)
    return labels_then != labels_now, 0.0


def check(fingerprint: Fingerprint, model: Model) -> CheckResult:
    """Query ``model`` with the fingerprint's points once and test the answers."""
    before = model.queries
    now = model.answer(fingerprint.points)
    changed, largest = compare(fingerprint, now)
    index = np.flatnonzero(changed)
    boundary = sum(1 for i in index if fingerprint.kinds[i] == "boundary")
    return CheckResult(
        model=fingerprint.model,
        version=fingerprint.version,
        endpoint=fingerprint.endpoint,
        points=fingerprint.size,
        changed=tuple(int(i) for i in index),
        changed_boundary=boundary,
        largest_change=largest,
        p_value=binomial_tail(len(index), fingerprint.size, fingerprint.change_rate),
        alpha=fingerprint.alpha,
        queries=model.queries - before,
    )
