"""Transfer attack from a surrogate: what an attacker with a few hundred queries achieves.

The surrogate (a multinomial logistic regression, which ART can take gradients
of) is trained on the endpoint's labels of the probe's rows, the start rows and
``train`` synthetic points within the query budget: half Gaussian jitter around
the labelled rows (a tenth of each feature's spread), half points on segments
between rows the endpoint labels differently (where the boundary is). ART's
FGSM and PGD (L2) then craft, on the surrogate, one adversarial example per
probe row at each relative budget ``eps`` (``||x' - x|| <= eps ||x||``), and
the endpoint is asked once per example: the transfer success at ``eps`` is the
share of rows whose label the endpoint changed. Every query is counted against
the probe's budget by the caller's counter.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from donjon.watch.ports import Rows

Labeller = Callable[[Rows], np.ndarray]  # rows -> class indices, queries counted


@dataclass(frozen=True)
class TransferResult:
    fgsm: dict[float, float]  # eps -> share of rows whose label the endpoint changed
    pgd: dict[float, float]
    agreement: float  # surrogate's agreement with the endpoint on the probe rows
    queries: int


def synthetic_rows(pool: Rows, labels: np.ndarray, count: int, rng: np.random.Generator) -> Rows:
    """``count`` points: jitter around ``pool`` and points between rows of different labels."""
    spread = pool.std(axis=0) + 1e-12
    jitter = count // 2
    picked = pool[rng.integers(0, len(pool), jitter)]
    near = picked + rng.normal(0.0, 0.1, picked.shape) * spread
    a = rng.integers(0, len(pool), 4 * (count - jitter))
    b = rng.integers(0, len(pool), len(a))
    differ = labels[a] != labels[b]
    a, b = a[differ][: count - jitter], b[differ][: count - jitter]
    t = rng.uniform(0.2, 0.8, (len(a), 1))
    between = pool[a] + t * (pool[b] - pool[a])
    return np.vstack([near, between])


def transfer_attack(
    label: Labeller,
    rows: Rows,
    row_labels: np.ndarray,
    pool: Rows,
    pool_labels: np.ndarray,
    *,
    train: int,
    epsilons: Sequence[float],
    clip: tuple[float, float],
    seed: int = 0,
) -> TransferResult:
    """Train the surrogate on ``train`` labelled synthetic points plus ``pool``, attack ``rows``."""
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification.scikitlearn import ScikitlearnLogisticRegression
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    extra = synthetic_rows(pool, pool_labels, train, rng) if train > 0 else pool[:0]
    extra = np.clip(extra, *clip)
    extra_labels = label(extra) if len(extra) else pool_labels[:0]
    x = np.vstack([pool, extra])
    y = np.concatenate([pool_labels, extra_labels]).astype(int)
    queries = len(extra)
    center, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        surrogate = LogisticRegression(max_iter=2000, C=10.0).fit((x - center) / scale, y)
    estimator = ScikitlearnLogisticRegression(
        surrogate, clip_values=clip, preprocessing=(center, scale)
    )
    agreement = float(np.mean(surrogate.classes_[estimator.predict(rows).argmax(1)] == row_labels))
    norms = np.linalg.norm(rows, axis=1, keepdims=True) + 1e-12
    found: dict[str, dict[float, float]] = {"fgsm": {}, "pgd": {}}
    for eps in epsilons:
        budget = eps * norms
        attacks = {
            "fgsm": FastGradientMethod(estimator, norm=2, eps=budget, eps_step=budget),
            "pgd": ProjectedGradientDescent(
                estimator, norm=2, eps=budget, eps_step=budget / 4, max_iter=20, verbose=False
            ),
        }
        for name, attack in attacks.items():
            adversarial = attack.generate(rows.astype(np.float64))
            moved = label(adversarial) != row_labels
            queries += len(adversarial)
            found[name][eps] = float(np.mean(moved))
    return TransferResult(found["fgsm"], found["pgd"], agreement, queries)
