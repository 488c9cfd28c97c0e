"""Empirical robustness of a deployed model, measured with a real black-box attack.

ART's HopSkipJump (decision-based: it needs only the endpoint's labels) is run
from each probe row, started from a held-out row the model labels differently
(``x_adv_init``: no random search, so the queries go to the boundary). The
robustness of a row is the relative L2 perturbation of the adversarial example
found, ``||x' - x|| / ||x||``; the probe reports the median over rows and the
attack's success rate at fixed relative budgets (``EPSILONS``).

The query budget is hard: every call to the endpoint goes through a counter
that stops the attack before it exceeds ``budget``; a row the budget cut short
is left out (reported as ``attacked < rows``), never counted as robust.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from donjon.errors import WatchError
from donjon.watch.ports import Answers, Model, Rows

EPSILONS = (0.05, 0.1, 0.2)
DEFAULT_BUDGET = 2000


class _BudgetSpent(Exception):
    pass


class _Counted:
    """The endpoint as ART sees it: one-hot labels, queries counted against the budget."""

    def __init__(self, model: Model, classes: dict[str, int], budget: int) -> None:
        self.model = model
        self.classes = classes
        self.budget = budget
        self.spent = 0

    def predict(self, rows: Rows) -> np.ndarray:
        rows = np.atleast_2d(rows)
        if self.spent + len(rows) > self.budget:
            raise _BudgetSpent
        self.spent += len(rows)
        return self.one_hot(self.model.answer(rows))

    def one_hot(self, answers: Answers) -> np.ndarray:
        out = np.zeros((len(answers), len(self.classes) + 1))
        for i, label in enumerate(answers.labels):
            out[i, self.classes.get(label, len(self.classes))] = 1.0
        return out


@dataclass(frozen=True)
class ProbeResult:
    perturbations: tuple[float, ...]  # relative L2 per attacked row (inf: no adversarial found)
    rows: int
    queries: int
    budget: int

    @property
    def attacked(self) -> int:
        return len(self.perturbations)

    @property
    def robustness(self) -> float:
        """Median relative perturbation needed to change a prediction (inf when most resist)."""
        return float(np.median(self.perturbations)) if self.perturbations else math.nan

    def success_at(self, epsilon: float) -> float:
        if not self.perturbations:
            return math.nan
        return sum(p <= epsilon for p in self.perturbations) / len(self.perturbations)

    def to_dict(self) -> dict[str, Any]:
        finite = [p if math.isfinite(p) else None for p in self.perturbations]
        robustness = self.robustness
        return {
            "robustness": robustness if math.isfinite(robustness) else None,
            **{f"success_at_{e:g}": self.success_at(e) for e in EPSILONS},
            "rows": self.rows,
            "attacked": self.attacked,
            "queries": self.queries,
            "budget": self.budget,
            "perturbations": finite,
        }


def probe(
    model: Model,
    rows: Rows,
    starts: Rows,
    *,
    budget: int = DEFAULT_BUDGET,
    max_iter: int = 4,
    max_eval: int = 60,
    init_eval: int = 15,
    seed: int = 0,
) -> ProbeResult:
    """HopSkipJump from each of ``rows``; ``starts`` are held-out rows to start the attacks from."""
    from art.attacks.evasion.hop_skip_jump import HopSkipJump
    from art.estimators.classification.blackbox import BlackBoxClassifier

    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    pool = np.vstack([rows, starts])
    low, high = float(pool.min()), float(pool.max())
    before = model.queries
    labels = model.answer(pool).labels
    classes = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    if len(classes) < 2:
        raise WatchError("the probe rows all get one label: no boundary to attack")
    counted = _Counted(model, classes, budget - (model.queries - before))
    classifier = BlackBoxClassifier(
        counted.predict, rows.shape[1:], len(classes) + 1, clip_values=(low, high)
    )
    attack = HopSkipJump(
        classifier, targeted=False, norm=2, max_iter=max_iter, max_eval=max_eval,
        init_eval=init_eval, init_size=10, batch_size=64, verbose=False,
    )  # fmt: skip
    np.random.seed(seed)
    pool_labels = np.asarray(labels, dtype=object)
    found: list[float] = []
    for i, row in enumerate(rows):
        others = np.flatnonzero(pool_labels != pool_labels[i])
        if not len(others):
            continue
        start = pool[others[np.argmin(np.linalg.norm(pool[others] - row, axis=1))]]
        try:
            adversarial = attack.generate(row[None], x_adv_init=start[None])[0]
            moved = counted.predict(adversarial[None]).argmax() != classes[labels[i]]
        except _BudgetSpent:
            break
        scale = float(np.linalg.norm(row)) or 1.0
        found.append(float(np.linalg.norm(adversarial - row)) / scale if moved else math.inf)
    return ProbeResult(tuple(found), len(rows), model.queries - before, budget)
