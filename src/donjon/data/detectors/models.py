"""Out-of-sample class probabilities from cross-validated scikit-learn models.

Three model families (a linear model, k nearest neighbours, and up to 20,000 records an
RBF support vector machine, each on standardised features) are cross-validated; their
probabilities are mixed with the weights that give the lowest out-of-sample log-loss on
the rows being fitted, so the mixture leans on whichever family suits the data at hand.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

FOLDS = 5
MAX_SVM_ROWS = 20_000
_WEIGHT_STEP = 0.1


def _models(n_train: int, n_total: int, smallest: int = 3) -> list[Pipeline]:
    """The model families; ``smallest``: the fewest training records of any class."""
    neighbours = max(1, min(10, n_train // 10))
    models = [
        make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)),
        make_pipeline(StandardScaler(), KNeighborsClassifier(neighbours, weights="distance")),
    ]
    if n_total <= MAX_SVM_ROWS and smallest >= 3:  # quadratic cost; calibration needs 3 folds
        svm = CalibratedClassifierCV(SVC(C=10), ensemble=False, cv=3)
        models.append(make_pipeline(StandardScaler(), svm))
    return models


def _fit_predict(
    model: Pipeline, X: np.ndarray, y: np.ndarray, Xt: np.ndarray, k: int
) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        probs = model.predict_proba(Xt)
    out = np.zeros((Xt.shape[0], k))
    out[:, model.classes_] = probs
    return out


def out_of_sample_probs(
    X: np.ndarray, y: np.ndarray, k: int, fit_rows: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Probabilities (n, k) for every row, each from models that never saw that row.

    Rows in ``fit_rows`` (default: all) are predicted by cross-validation on ``fit_rows``;
    the others by models fitted on all of ``fit_rows``.
    """
    n = X.shape[0]
    fit = np.arange(n) if fit_rows is None else np.asarray(fit_rows)
    rest = np.setdiff1d(np.arange(n), fit)
    Xf, yf = X[fit], y[fit]
    smallest = int(np.bincount(yf, minlength=k)[np.bincount(yf, minlength=k) > 0].min())
    folds = max(2, min(FOLDS, smallest))
    in_train = smallest - -(-smallest // folds)  # the fewest of a class in a training fold
    per_model = [np.zeros((n, k)) for _ in _models(len(fit), n, in_train)]
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(splitter.split(Xf, yf))
    for train, test in splits:
        for i, model in enumerate(_models(len(train), n, in_train)):
            per_model[i][fit[test]] = _fit_predict(model, Xf[train], yf[train], Xf[test], k)
    if len(rest):
        for i, model in enumerate(_models(len(fit), n, in_train)):
            per_model[i][rest] = _fit_predict(model, Xf, yf, X[rest], k)
    return _best_mixture(per_model, fit, yf)


def _best_mixture(per_model: list[np.ndarray], fit: np.ndarray, yf: np.ndarray) -> np.ndarray:
    steps = round(1 / _WEIGHT_STEP)
    best_loss, best = np.inf, per_model[0]
    for parts in itertools.product(range(steps + 1), repeat=len(per_model)):
        if sum(parts) != steps:
            continue
        mix = np.zeros_like(per_model[0])
        for part, probs in zip(parts, per_model, strict=True):
            mix += part / steps * probs
        loss = -float(np.log(np.clip(mix[fit, yf], 1e-6, None)).mean())
        if loss < best_loss:
            best_loss, best = loss, mix
    return best
