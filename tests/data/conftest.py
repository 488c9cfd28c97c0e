"""Small poisoned corpora built in code from scikit-learn's bundled data sets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:500].astype(float), y[:500]


@pytest.fixture(scope="session")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return X.astype(float), y


def badnets(
    X: np.ndarray, y: np.ndarray, count: int, target: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stamp a 2x2 patch of 16s in the bottom-right corner and relabel to ``target``."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.flatnonzero(y != target), count, replace=False)
    images = X.reshape(-1, 8, 8).copy()
    images[rows, 6:, 6:] = 16.0
    labels = y.copy()
    labels[rows] = target
    return images.reshape(len(y), -1), labels, np.sort(rows)


def flips(y: np.ndarray, rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(y), int(rate * len(y)), replace=False)
    labels = y.copy()
    classes = np.unique(y)
    for row in rows:
        labels[row] = rng.choice(classes[classes != y[row]])
    return labels, np.sort(rows)
