"""Data sets, victims, benign variations and transfer attacks for the gateway benchmark.

Two encodings, neither the one the gateway's own tests use (digits on the integer
grid 0..16), and two tables kept apart to check that what was designed on the cancer
table generalises (``wine``, 13 features in their units, 3 classes, 178 rows;
``synthetic``, :func:`synthetic_table`):

* ``digits/16``: scikit-learn's digits divided by 16, every pixel on a grid of
  1/16 steps in ``[0, 1]`` (an image encoding);
* ``cancer``: scikit-learn's breast-cancer table, 30 continuous features in their
  own units (areas in the thousands beside ratios under 0.1), no common grid.

Benign variations of held-out rows (what a deployment sends without attacking):
sensor noise (not re-quantised), slow drift, a brightness / offset shift, a gain
(contrast / unit) shift and rescaled inputs (an image zoomed by a few percent, a
table in slightly different units), and one-feature jitter. The magnitudes are
stated relative to each feature's spread in the training data, so both encodings
get the same treatment. Transfer attacks: FGSM and PGD from a logistic-regression
surrogate trained on the attacker's own half of the held-out data, at budgets of
1/16, 1/8 and 1/4 of each feature's range and at ART's defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass
class Encoding:
    """A data set in one encoding, a victim trained on it, and the held-out split."""

    name: str
    model: Pipeline
    x_train: np.ndarray
    y_train: np.ndarray
    attacker: np.ndarray  # the attacker's own natural rows
    attacker_y: np.ndarray
    heldout: np.ndarray  # benign users' rows
    heldout_y: np.ndarray
    low: np.ndarray  # valid range of the encoding, per feature
    high: np.ndarray
    image: tuple[int, int] | None  # the image shape, for spatial variations

    @property
    def classes(self) -> int:
        return int(self.y_train.max()) + 1

    @property
    def features(self) -> int:
        return int(self.x_train.shape[1])

    def labels(self, rows: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.model.predict(np.asarray(rows, dtype=np.float64))
        return out

    def scores(self, rows: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.model.predict_proba(np.asarray(rows, dtype=np.float64))
        return out

    def clip(self, rows: np.ndarray) -> np.ndarray:
        return np.clip(rows, self.low, self.high)


def load(name: str, seed: int = 0) -> Encoding:
    if name == "digits/16":
        x, y = load_digits(return_X_y=True)
        x = x / 16.0
        low, high, image = np.zeros(64), np.ones(64), (8, 8)
    elif name == "cancer":
        x, y = load_breast_cancer(return_X_y=True)
        low, high, image = np.zeros(x.shape[1]), np.full(x.shape[1], np.inf), None
    elif name == "wine":
        x, y = load_wine(return_X_y=True)
        low, high, image = np.zeros(x.shape[1]), np.full(x.shape[1], np.inf), None
    elif name == "synthetic":
        x, y = synthetic_table(seed)
        low = np.where(x.min(axis=0) >= 0, 0.0, -np.inf)  # amounts stay non-negative
        high, image = np.full(x.shape[1], np.inf), None
    else:
        raise ValueError(name)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.4, random_state=seed, stratify=y
    )
    model = make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=600, random_state=seed)
    )
    model.fit(x_train, y_train)
    order = np.random.default_rng(7).permutation(len(x_test))
    half = len(order) // 2
    return Encoding(
        name,
        model,
        x_train,
        y_train,
        x_test[order[:half]],
        y_test[order[:half]],
        x_test[order[half:]],
        y_test[order[half:]],
        low,
        high,
        image,
    )


def synthetic_table(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A generated table in mixed units: scikit-learn's ``make_classification`` (3
    classes, 2 clusters each, correlated redundant features), a third of the features
    exponentiated (positive, heavy-tailed: amounts, areas), the rest in units from
    0.01 to 1000 and offset (readings away from zero). Never used to design a test."""
    x, y = make_classification(
        n_samples=2400, n_features=18, n_informative=6, n_redundant=6, n_classes=3,
        n_clusters_per_class=2, class_sep=1.2, random_state=100 + seed,
    )  # fmt: skip
    rng = np.random.default_rng(100 + seed)
    units = 10.0 ** rng.uniform(-2, 3, x.shape[1])
    heavy = np.arange(x.shape[1]) % 3 == 0
    x = np.where(heavy, np.exp(0.6 * x), x + rng.uniform(-2, 6, x.shape[1])) * units
    return x, y


Variation = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def benign_variations(enc: Encoding) -> dict[str, Variation]:
    """Benign ways of changing a stream of held-out rows (row i of n gets ``t = i / n``)."""
    spread = enc.x_train.std(axis=0)
    spread = np.where(spread > 0, spread, np.median(spread[spread > 0]))

    def noise(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return enc.clip(rows + rng.normal(0.0, 0.05, rows.shape) * spread)

    def drift(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        t = np.linspace(0, 1, len(rows))[:, None]
        if enc.image is not None:  # a sensor slowly brightening, by up to 10 % of the range
            return enc.clip(rows + 0.1 * t * (enc.high - enc.low))
        return enc.clip(rows * (1 + 0.1 * t))  # a calibration slowly off by up to 10 %

    def offset(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if enc.image is not None:
            return enc.clip(rows + 0.1 * (enc.high - enc.low))
        return enc.clip(rows + 0.25 * spread)

    def gain(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        factor = rng.choice([0.85, 1.15], size=(len(rows), 1))
        return enc.clip(rows * factor)

    def rescaled(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if enc.image is None:  # the same quantities in slightly different units per row
            return enc.clip(rows * rng.uniform(0.95, 1.05, size=(len(rows), 1)))
        h, w = enc.image
        out = []
        for row in rows:
            zoom = rng.uniform(0.9, 1.1)
            big = ndimage.zoom(row.reshape(h, w), zoom, order=1)
            canvas = np.zeros((max(h, big.shape[0]), max(w, big.shape[1])))
            top, left = (canvas.shape[0] - big.shape[0]) // 2, (canvas.shape[1] - big.shape[1]) // 2
            canvas[top : top + big.shape[0], left : left + big.shape[1]] = big
            ct, cl = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
            out.append(canvas[ct : ct + h, cl : cl + w].ravel())
        return enc.clip(np.asarray(out))

    def jitter(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = rows.copy()
        cols = rng.integers(0, rows.shape[1], len(rows))
        out[np.arange(len(rows)), cols] += (
            rng.choice([-2.0, -1.0, 1.0, 2.0], len(rows)) * spread[cols]
        )
        return enc.clip(out)

    return {
        "unmodified": lambda rows, rng: rows.copy(),
        "sensor noise": noise,
        "slow drift": drift,
        "offset shift": offset,
        "gain shift": gain,
        "rescaled": rescaled,
        "one-feature jitter": jitter,
    }


BUDGETS = (1 / 16, 1 / 8, 1 / 4)  # L-infinity, as a fraction of each feature's range


def transfer_attacks(enc: Encoding, targets: np.ndarray) -> dict[str, np.ndarray]:
    """FGSM and PGD inputs from a logistic-regression surrogate (ART), per budget.

    The surrogate works on features scaled to ``[0, 1]`` (an image's pixel range; a
    table's range over the attacker's own rows), so each budget is the same fraction
    of every feature's range: 1/16, 1/8 and 1/4 (1, 2 and 4 steps of a 1/16 grid),
    then ART's defaults (FGSM ``eps`` 0.3; PGD ``eps`` 0.3, ``eps_step`` 0.1), the
    budgets of the issue's harness. Clipped to the encoding."""
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification.scikitlearn import ScikitlearnLogisticRegression
    from sklearn.linear_model import LogisticRegression

    if enc.image is not None:
        low, span, clip = enc.low, enc.high - enc.low, (0.0, 1.0)
    else:  # a table: its range as the attacker sees it, a margin of 1/4 beyond
        low = enc.attacker.min(axis=0)
        span = np.maximum(enc.attacker.max(axis=0) - low, 1e-12)
        clip = (-0.25, 1.25)
    to = lambda x: (x - low) / span  # noqa: E731
    surrogate = ScikitlearnLogisticRegression(
        LogisticRegression(max_iter=2000).fit(to(enc.attacker), enc.attacker_y),
        clip_values=clip,
    )
    attacks: dict[str, Any] = {}
    for eps in BUDGETS:
        step = {"eps": eps, "eps_step": eps / 4, "max_iter": 20, "verbose": False}
        attacks[f"FGSM eps={eps:g}"] = FastGradientMethod(surrogate, eps=eps)
        attacks[f"PGD eps={eps:g}"] = ProjectedGradientDescent(surrogate, **step)
    attacks["FGSM ART default"] = FastGradientMethod(surrogate)
    attacks["PGD ART default"] = ProjectedGradientDescent(surrogate, verbose=False)
    z = to(targets)
    return {name: enc.clip(low + a.generate(x=z) * span) for name, a in attacks.items()}
