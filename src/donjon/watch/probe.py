"""Empirical robustness of a deployed model, measured with real black-box attacks.

Two attacks share one hard query budget (``budget``, 2,000 by default; the
labelling of the rows counts too):

1. **Transfer from a surrogate** (:mod:`.transfer`, ``transfer_queries``:
   10 % of the budget by default, spent first so every version gets the same): transfer
   success at the fixed relative budgets ``EPSILONS`` with FGSM and PGD.
2. **HopSkipJump** (ART, decision-based: only the endpoint's labels) from each
   probe row, started from the nearest held-out row the model labels
   differently (``x_adv_init``: no random search, the queries go to the
   boundary). A row's robustness is the relative L2 perturbation of the
   adversarial example found, ``||x' - x|| / ||x||``.

The probe reports the median over rows (the empirical robustness), a bootstrap
95 % interval of that median, and the attack's success rate at ``EPSILONS``.
Every call to the endpoint goes through a counter that stops an attack before
the budget is exceeded; a row the budget cut short is left out (``attacked <
rows``), never counted as robust. The probe rows are the first held-out rows of
the fingerprint, the same for every version enrolled from the same data: two
probes compare row by row (:func:`paired`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from donjon.errors import WatchError
from donjon.watch.ports import Answers, Model, Rows
from donjon.watch.transfer import TransferResult, transfer_attack

EPSILONS = (0.05, 0.1, 0.2)
DEFAULT_BUDGET = 2000
TRANSFER_SHARE = 0.1  # of the budget, for the surrogate (200 of 2,000 queries)
BOOTSTRAP = 2000


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

    def label(self, rows: Rows) -> np.ndarray:
        labels: np.ndarray = self.predict(rows).argmax(axis=1)
        return labels

    def one_hot(self, answers: Answers) -> np.ndarray:
        out = np.zeros((len(answers), len(self.classes) + 1))
        for i, label in enumerate(answers.labels):
            out[i, self.classes.get(label, len(self.classes))] = 1.0
        return out


def median_interval(values: tuple[float, ...], seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95 % interval (percentile) of the median of ``values`` (inf allowed)."""
    if not values:
        return math.nan, math.nan
    data = np.asarray(values)
    rng = np.random.default_rng(seed)
    draws = data[rng.integers(0, len(data), (BOOTSTRAP, len(data)))]
    medians = np.sort(draws, axis=1)[:, (len(data) - 1) // 2]  # the lower median: no inf - inf
    low, high = np.quantile(medians, [0.025, 0.975], method="inverted_cdf")
    return float(low), float(high)


@dataclass(frozen=True)
class ProbeResult:
    perturbations: tuple[float, ...]  # relative L2 per attacked row (inf: no adversarial found)
    rows: int
    queries: int
    budget: int
    transfer: TransferResult | None = None
    interval: tuple[float, float] = field(default=(math.nan, math.nan))

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

    def summary(self) -> str:
        low, high = self.interval
        text = (
            f"median perturbation {self.robustness:.3g} (95 % CI {low:.3g}-{high:.3g}), "
            f"HopSkipJump success at 0.1: {self.success_at(0.1):.0%}"
        )
        if self.transfer is not None:
            text += f", transfer (PGD) at 0.1: {self.transfer.pgd.get(0.1, math.nan):.0%}"
        return text + f"; {self.attacked}/{self.rows} rows, {self.queries} queries"

    def to_dict(self) -> dict[str, Any]:
        """The stored shape (docs/watch.md, "Stored data"); no NaN or infinity."""
        low, high = self.interval
        doc: dict[str, Any] = {
            "robustness": _finite(self.robustness),
            "robustness_low": _finite(low),
            "robustness_high": _finite(high),
            **{f"success_at_{e:g}": _finite(self.success_at(e)) for e in EPSILONS},
            "rows": self.rows,
            "attacked": self.attacked,
            "queries": self.queries,
            "budget": self.budget,
            "perturbations": [_finite(p) for p in self.perturbations],
        }
        if self.transfer is not None:
            for e in EPSILONS:
                doc[f"transfer_fgsm_at_{e:g}"] = self.transfer.fgsm.get(e)
                doc[f"transfer_pgd_at_{e:g}"] = self.transfer.pgd.get(e)
            doc["surrogate_agreement"] = self.transfer.agreement
            doc["transfer_queries"] = self.transfer.queries
        return doc


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def probe(
    model: Model,
    rows: Rows,
    starts: Rows,
    *,
    budget: int = DEFAULT_BUDGET,
    transfer_queries: int | None = None,
    max_iter: int = 4,
    max_eval: int = 60,
    init_eval: int = 15,
    seed: int = 0,
) -> ProbeResult:
    """Transfer attack, then HopSkipJump from each of ``rows``; ``starts``: held-out rows."""
    from art.attacks.evasion.hop_skip_jump import HopSkipJump
    from art.estimators.classification.blackbox import BlackBoxClassifier

    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    pool = np.vstack([rows, starts])
    clip = (float(pool.min()), float(pool.max()))
    before = model.queries
    if len(pool) > budget:
        raise WatchError(f"the probe's {len(pool)} rows exceed its budget of {budget} queries")
    labels = model.answer(pool).labels
    classes = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    if len(classes) < 2:
        raise WatchError("the probe rows all get one label: no boundary to attack")
    counted = _Counted(model, classes, budget - (model.queries - before))
    pool_labels = np.asarray([classes[label] for label in labels])
    transfer = None
    if transfer_queries is None:
        transfer_queries = round(TRANSFER_SHARE * budget)
    attack_queries = len(rows) * len(EPSILONS) * 2
    if transfer_queries > attack_queries:
        try:
            transfer = transfer_attack(
                counted.label, rows, pool_labels[: len(rows)], pool, pool_labels,
                train=transfer_queries - attack_queries, epsilons=EPSILONS, clip=clip, seed=seed,
            )  # fmt: skip
        except _BudgetSpent:
            transfer = None
    classifier = BlackBoxClassifier(
        counted.predict, rows.shape[1:], len(classes) + 1, clip_values=clip
    )
    attack = HopSkipJump(
        classifier, targeted=False, norm=2, max_iter=max_iter, max_eval=max_eval,
        init_eval=init_eval, init_size=10, batch_size=64, verbose=False,
    )  # fmt: skip
    np.random.seed(seed)  # ART's HopSkipJump draws from the global generator
    found: list[float] = []
    for i, row in enumerate(rows):
        others = np.flatnonzero(pool_labels != pool_labels[i])
        start = pool[others[np.argmin(np.linalg.norm(pool[others] - row, axis=1))]]
        try:
            adversarial = attack.generate(row[None], x_adv_init=start[None])[0]
            moved = counted.label(adversarial[None])[0] != pool_labels[i]
        except _BudgetSpent:
            break
        scale = float(np.linalg.norm(row)) or 1.0
        found.append(float(np.linalg.norm(adversarial - row)) / scale if moved else math.inf)
    perturbations = tuple(found)
    return ProbeResult(
        perturbations, len(rows), model.queries - before, budget, transfer,
        median_interval(perturbations, seed),
    )  # fmt: skip


def paired(a: ProbeResult, b: ProbeResult) -> dict[str, Any]:
    """Two probes of the same rows compared row by row: on how many rows ``b`` needed more
    perturbation than ``a``, and the one-sided Wilcoxon signed-rank p-value of that."""
    from scipy.stats import wilcoxon

    n = min(a.attacked, b.attacked)
    pairs = [(x, y) for x, y in zip(a.perturbations[:n], b.perturbations[:n], strict=True)]
    finite = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y) and x != y]
    higher = sum(y > x for x, y in pairs)
    p_value = (
        float(wilcoxon([y - x for x, y in finite], alternative="greater").pvalue)
        if len(finite) >= 5
        else math.nan
    )
    return {"rows": len(pairs), "higher": higher, "p_value": p_value}
