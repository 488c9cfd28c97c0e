"""Empirical robustness of a deployed model, measured with real black-box attacks.

Two attacks from ART share one hard query budget (``budget``, 2,000 by default;
labelling the rows counts too). Every call to the endpoint goes through a counter
that raises before the budget would be exceeded, whatever the attack does.

1. **Transfer from a surrogate** (:mod:`.transfer`, ``transfer_queries``: 10 %
   of the budget, spent first so every version gets the same): transfer success
   at the fixed relative budgets ``EPSILONS`` with FGSM and PGD, on the first
   ``TRANSFER_ROWS`` probe rows.
2. **HopSkipJump** (decision-based: only the endpoint's labels), one gradient
   step from every probe row (40 by default: the fingerprint's held-out rows).
   It starts from the nearest reference row the endpoint labels differently
   (no random search), ART's binary search brings that to the boundary, one
   gradient estimate there (as many evaluations as the budget left allows each
   row, planned up front so every row is attacked) gives the step, and a final
   bisection between the row and HopSkipJump's example brings it back onto the
   boundary. A row's robustness is the relative L2 perturbation of the
   adversarial example found, ``||x' - x|| / ||x||``: an upper bound of the
   smallest one, never larger than the distance to that reference row.

Many rows at a few dozen queries each, rather than a few rows at 150: versions
are compared row by row (:mod:`.pairing`; the probe rows are the same for every
version enrolled from the same data, ``rows_digest`` says which), and the
spread between rows, not the attack's precision on one row, is what limits that
comparison. The probe reports the median over rows (the empirical robustness),
a bootstrap 95 % interval of that median and the success rate at ``EPSILONS``.
A row the budget cut short is left out (``attacked < rows``), never counted as
robust.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from donjon.errors import WatchError
from donjon.watch.ports import Model, Rows
from donjon.watch.transfer import TransferResult, transfer_attack

EPSILONS = (0.05, 0.1, 0.2)
DEFAULT_BUDGET = 2000
DEFAULT_ROWS = 40
TRANSFER_SHARE = 0.1  # of the budget, for the surrogate (200 of 2,000 queries)
TRANSFER_ROWS = 12  # rows the surrogate's examples are tried on (6 queries each)
SEARCH_STEPS = 6  # ART's binary search to the boundary from the start row: 1/64 of the way
FINAL_STEPS = 6  # bisection back onto the boundary: 1/64 of the perturbation
STEP_SEARCH = 1  # HopSkipJump's step-size search: one query when its first step holds
MIN_EVALUATIONS = 10  # fewer and the gradient estimate is noise: attack fewer rows
BOOTSTRAP = 2000


class _BudgetSpent(Exception):
    pass


class _Counted:
    """The endpoint as ART sees it: one-hot labels, queries counted against the budget.

    A row already answered is answered again from memory, without a query (ART asks
    for the labels of the rows and starts it was given, and of its result)."""

    def __init__(self, model: Model, budget: int) -> None:
        self.model = model
        self.budget = budget
        self.spent = 0
        self.classes: dict[str, int] = {}
        self.known: dict[bytes, int] = {}
        self.width = 0  # set once the rows are labelled: the classes seen, plus "another"

    def label(self, rows: Rows) -> np.ndarray:
        rows = np.ascontiguousarray(np.atleast_2d(rows), dtype=np.float64)
        keys = [row.tobytes() for row in rows]
        new = {key: i for i, key in enumerate(keys) if key not in self.known}
        if new:
            if self.spent + len(new) > self.budget:
                raise _BudgetSpent
            self.spent += len(new)
            answers = self.model.answer(rows[list(new.values())])
            for key, label in zip(new, answers.labels, strict=True):
                self.known[key] = self.classes.setdefault(label, len(self.classes))
        return np.asarray([self.known[key] for key in keys])

    def predict(self, rows: Rows) -> np.ndarray:
        labels = np.minimum(self.label(rows), self.width - 1)
        out = np.zeros((len(labels), self.width))
        out[np.arange(len(labels)), labels] = 1.0
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


def rows_digest(rows: Rows) -> str:
    """Which rows a probe attacked: two probes compare row by row only when this is equal."""
    data = np.ascontiguousarray(np.atleast_2d(rows), dtype="<f8")
    return "sha256:" + hashlib.sha256(data.tobytes()).hexdigest()


@dataclass(frozen=True)
class ProbeResult:
    perturbations: tuple[float, ...]  # relative L2 per attacked row (inf: no adversarial found)
    rows: int
    queries: int
    budget: int
    transfer: TransferResult | None = None
    interval: tuple[float, float] = field(default=(math.nan, math.nan))
    digest: str = ""  # rows_digest of the probe rows
    evaluations: int = 0  # HopSkipJump's gradient evaluations per row

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
            "rows_digest": self.digest,
            "evaluations": self.evaluations,
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


def _pool(rows: Rows, references: Rows) -> Rows:
    """The probe rows, then the reference rows that are not probe rows."""
    seen = {row.tobytes() for row in rows}
    extra = [row for row in references if row.tobytes() not in seen]
    return np.vstack([rows, *extra]) if extra else rows


def probe(
    model: Model,
    rows: Rows,
    references: Rows,
    *,
    budget: int = DEFAULT_BUDGET,
    transfer_queries: int | None = None,
    seed: int = 0,
) -> ProbeResult:
    """Transfer attack, then one HopSkipJump step from each of ``rows``.

    ``references``: held-out rows an attack may start from (the probe rows are
    references of each other too)."""
    rows = np.ascontiguousarray(np.atleast_2d(np.asarray(rows, dtype=np.float64)))
    references = np.atleast_2d(np.asarray(references, dtype=np.float64))
    pool = _pool(rows, references)
    if len(pool) > budget:
        raise WatchError(f"the probe's {len(pool)} rows exceed its budget of {budget} queries")
    counted = _Counted(model, budget)
    pool_labels = counted.label(pool)
    if len(counted.classes) < 2:
        raise WatchError("the probe rows all get one label: no boundary to attack")
    counted.width = len(counted.classes) + 1
    low, high = float(pool.min()), float(pool.max())
    clip = (low - (high - low), high + (high - low))  # room around the data, not its box
    transfer = _transfer(counted, rows, pool, pool_labels, budget, transfer_queries, clip, seed)
    found = _hop_skip_jump(counted, rows, pool, pool_labels, clip, seed)
    perturbations = tuple(found[0])
    return ProbeResult(
        perturbations, len(rows), counted.spent, budget, transfer,
        median_interval(perturbations, seed), rows_digest(rows), found[1],
    )  # fmt: skip


def _transfer(
    counted: _Counted,
    rows: Rows,
    pool: Rows,
    labels: np.ndarray,
    budget: int,
    queries: int | None,
    clip: tuple[float, float],
    seed: int,
) -> TransferResult | None:
    attacked = rows[:TRANSFER_ROWS]
    if queries is None:
        queries = round(TRANSFER_SHARE * budget)
    attack_queries = len(attacked) * len(EPSILONS) * 2
    if queries <= attack_queries:
        return None
    try:
        return transfer_attack(
            counted.label, attacked, labels[: len(attacked)], pool, labels,
            train=queries - attack_queries, epsilons=EPSILONS, clip=clip, seed=seed,
        )  # fmt: skip
    except _BudgetSpent:
        return None


def _hop_skip_jump(
    counted: _Counted,
    rows: Rows,
    pool: Rows,
    labels: np.ndarray,
    clip: tuple[float, float],
    seed: int,
) -> tuple[list[float], int]:
    """One HopSkipJump step from each row; before each row, its gradient evaluations are
    what the budget left allows the rows still to attack."""
    from art.attacks.evasion.hop_skip_jump import HopSkipJump
    from art.estimators.classification.blackbox import BlackBoxClassifier

    classifier = BlackBoxClassifier(
        counted.predict, rows.shape[1:], counted.width, clip_values=clip
    )
    overhead = SEARCH_STEPS + STEP_SEARCH + FINAL_STEPS
    np.random.seed(seed)  # ART's HopSkipJump draws from the global generator
    found: list[float] = []
    spent_evaluations: list[int] = []
    for i, row in enumerate(rows):
        evaluations = (counted.budget - counted.spent) // (len(rows) - i) - overhead
        if evaluations < MIN_EVALUATIONS:
            break  # the rows left are not attacked: never counted as robust
        attack = HopSkipJump(
            classifier, targeted=False, norm=2, max_iter=1, max_eval=evaluations,
            init_eval=evaluations, init_size=1, batch_size=evaluations, verbose=False,
        )  # fmt: skip
        attack.theta = 2.0**-SEARCH_STEPS  # ART's binary search threshold (a fraction of the way)
        others = np.flatnonzero(labels != labels[i])
        start = pool[others[np.argmin(np.linalg.norm(pool[others] - row, axis=1))]]
        try:
            adversarial = attack.generate(row[None], x_adv_init=start[None].copy())[0]
            adversarial = _back_to_boundary(counted, row, int(labels[i]), adversarial, start)
        except _BudgetSpent:
            break
        scale = float(np.linalg.norm(row)) or 1.0
        found.append(float(np.linalg.norm(adversarial - row)) / scale)
        spent_evaluations.append(evaluations)
    return found, min(spent_evaluations, default=0)


def _back_to_boundary(
    counted: _Counted, row: Rows, label: int, adversarial: Rows, start: Rows
) -> Rows:
    """Bisect between ``row`` and the nearest of its adversarial examples; the end kept is
    on the adversarial side (an upper bound of the distance)."""
    if counted.label(adversarial[None])[0] == label:  # answered from memory: ART asked
        adversarial = start
    near = row.astype(np.float64)
    far = adversarial.astype(np.float64)
    low, high = 0.0, 1.0
    for _ in range(FINAL_STEPS):
        middle = (low + high) / 2
        if counted.label((near + middle * (far - near))[None])[0] == label:
            low = middle
        else:
            high = middle
    point: Rows = near + high * (far - near)
    return point
