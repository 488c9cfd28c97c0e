"""Empirical robustness of a deployed model, measured black-box from its labels.

Two measurements share one hard query budget (``budget``, 2,000 by default;
labelling the rows counts too). Every call to the endpoint goes through a counter
that raises before the budget would be exceeded, whatever the attack does.

1. **Transfer from a surrogate** (:mod:`.transfer`, ``transfer_queries``: 10 %
   of the budget, spent first so every version gets the same): transfer success
   at the fixed relative budgets ``EPSILONS`` with ART's FGSM and PGD, on the
   first ``TRANSFER_ROWS`` probe rows.
2. **Random rays** (:mod:`.rays`), from every probe row (40 by default: the
   fingerprint's held-out rows), in rounds of one opposite pair a row while the
   budget left covers a round (6-8 rays a row with the defaults; a censored ray
   costs one query, a crossing ``STEPS``): a row's robustness is the
   distance to its decision boundary estimated from where the rays cross it,
   relative to the row's norm (``||x' - x|| / ||x||``); the shortest crossing
   found is an adversarial example, kept as an upper bound. The rays are the
   same for every version probed on the same rows.

Many rows at a few dozen queries each: versions are compared row by row
(:mod:`.pairing`; the probe rows are the same for every version enrolled from
the same data, ``rows_digest`` says which). The probe reports the median over
rows (the empirical robustness), a bootstrap 95 % interval of that median and
the share of rows within ``EPSILONS``. A row the budget cut short is left out
(``attacked < rows``), never counted as robust.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from donjon.errors import WatchError
from donjon.watch.ports import Model, Rows
from donjon.watch.rays import STEPS, boundary_estimate, directions, ray_distances
from donjon.watch.transfer import TransferResult, transfer_attack

EPSILONS = (0.05, 0.1, 0.2)
DEFAULT_BUDGET = 2000
DEFAULT_ROWS = 40
TRANSFER_SHARE = 0.1  # of the budget, for the surrogate (200 of 2,000 queries)
TRANSFER_ROWS = 12  # rows the surrogate's examples are tried on (6 queries each)
MIN_RAYS = 2  # one opposite pair: fewer rays a row and no estimate, attack fewer rows
METHOD = "rays"  # what the per-row figures measure: probes pair only with the same method
BOOTSTRAP = 2000


class _BudgetSpent(Exception):
    pass


class _Counted:
    """The endpoint as the attacks see it: class indices, queries counted against the budget.

    A row already answered is answered again from memory, without a query."""

    def __init__(self, model: Model, budget: int) -> None:
        self.model = model
        self.budget = budget
        self.spent = 0
        self.classes: dict[str, int] = {}
        self.known: dict[bytes, int] = {}

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
    perturbations: tuple[float, ...]  # estimated relative L2 per attacked row (inf: no ray met it)
    rows: int
    queries: int
    budget: int
    transfer: TransferResult | None = None
    interval: tuple[float, float] = field(default=(math.nan, math.nan))
    digest: str = ""  # rows_digest of the probe rows
    rays: int = 0  # random rays per attacked row
    bounds: tuple[float, ...] = ()  # per attacked row, the shortest ray that met the boundary

    @property
    def attacked(self) -> int:
        return len(self.perturbations)

    @property
    def robustness(self) -> float:
        """Median relative perturbation needed to change a prediction (inf when most resist)."""
        return float(np.median(self.perturbations)) if self.perturbations else math.nan

    @property
    def bound(self) -> float:
        """Median over rows of the smallest adversarial perturbation found (an upper bound)."""
        return float(np.median(self.bounds)) if self.bounds else math.nan

    def success_at(self, epsilon: float) -> float:
        if not self.perturbations:
            return math.nan
        return sum(p <= epsilon for p in self.perturbations) / len(self.perturbations)

    def summary(self) -> str:
        low, high = self.interval
        text = (
            f"median perturbation {self.robustness:.3g} (95 % CI {low:.3g}-{high:.3g}), "
            f"within 0.1: {self.success_at(0.1):.0%}, closest found {self.bound:.3g}"
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
            "method": METHOD,
            "rays": self.rays,
            "steps": STEPS,
            "robustness_bound": _finite(self.bound),
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
    """Transfer attack, then random rays from each of ``rows`` to the model's boundary.

    ``references``: held-out rows the surrogate learns from (the probe rows are
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
    low, high = float(pool.min()), float(pool.max())
    clip = (low - (high - low), high + (high - low))  # room around the data, not its box
    transfer = _transfer(counted, rows, pool, pool_labels, budget, transfer_queries, clip, seed)
    digest = rows_digest(rows)
    found = _rays(counted, rows, pool_labels[: len(rows)], digest)
    perturbations = tuple(found[0])
    return ProbeResult(
        perturbations, len(rows), counted.spent, budget, transfer,
        median_interval(perturbations, seed), digest, found[1], found[2],
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


def _rays(
    counted: _Counted, rows: Rows, labels: np.ndarray, digest: str
) -> tuple[list[float], int, tuple[float, ...]]:
    """Per row, the boundary distance estimated from its rays, the fewest rays a row got,
    and the shortest crossing. Rays go in rounds of one opposite pair a row while the budget
    left covers a round at its dearest (a censored ray costs one query, not ``STEPS``); the
    last round takes the first rows it can. Fewer than ``MIN_RAYS`` a row: fewer rows are
    attacked, the others never counted as robust."""
    attacked = min(len(rows), (counted.budget - counted.spent) // (MIN_RAYS * STEPS))
    if attacked == 0:
        return [], 0, ()
    rows, labels = rows[:attacked], labels[:attacked]
    rounds: list[Rows] = []
    while (fit := (counted.budget - counted.spent) // (2 * STEPS)) > 0:
        pair = directions(digest, min(fit, attacked), 2 * len(rounds) + 2, rows.shape[1])
        taken = ray_distances(counted.label, rows[: len(pair)], labels[: len(pair)],
                              pair[:, -2:])  # fmt: skip
        rounds.append(np.vstack([taken, np.full((attacked - len(taken), 2), np.nan)]))
        if len(pair) < attacked:
            break
    distances = np.hstack(rounds)
    estimate = boundary_estimate(distances, rows.shape[1])
    fewest = int(np.min(np.sum(~np.isnan(distances), axis=1)))
    return [float(v) for v in estimate], fewest, tuple(float(v) for v in np.nanmin(distances, 1))
