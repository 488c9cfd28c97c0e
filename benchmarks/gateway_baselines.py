"""Peer detectors for the gateway benchmark, re-implemented from their papers.

* :class:`Prada`: Juuti et al., "PRADA: Protecting against DNN Model Stealing
  Attacks" (EuroS&P 2019): per-class growing sets of queries; the minimum
  distance of each new query to its class's set goes into a list whose
  normality is tested with Shapiro-Wilk; an attack is declared when W < delta.
* :class:`NearestNeighbour`: Chen, Carlini and Wagner, "Stateful Detection of
  Black-Box Adversarial Attacks" (2019): the mean distance of a query to its k
  nearest neighbours among the user's previous queries; an attack is declared
  when it falls below the 0.1 % quantile of the same statistic on natural data.

Both work in the same scaled feature space as the gateway (the reference profile's).
"""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np
from scipy.stats import shapiro


class Prada:
    def __init__(self, delta: float = 0.9, min_samples: int = 50) -> None:
        self.delta = delta
        self.min_samples = min_samples
        self.growing: dict[int, list[np.ndarray]] = defaultdict(list)
        self.thresholds: dict[int, list[float]] = defaultdict(list)
        self.distances: list[float] = []

    def observe(self, x: np.ndarray, label: int) -> bool:
        group = self.growing[label]
        if not group:
            group.append(x)
            self.thresholds[label].append(0.0)
            return False
        d = np.linalg.norm(np.asarray(group) - x, axis=1)
        d_min = float(d.min())
        self.distances.append(d_min)
        kept = self.thresholds[label]
        threshold = max(0.0, float(np.mean(kept) - np.std(kept))) if len(kept) > 1 else 0.0
        if d_min > threshold:
            group.append(x)
            kept.append(d_min)
        if len(self.distances) < self.min_samples:
            return False
        sample = np.asarray(self.distances[-5000:])
        if np.ptp(sample) == 0:
            return True  # a constant distance list is as far from normal as it gets
        return float(shapiro(sample).statistic) < self.delta


class NearestNeighbour:
    def __init__(self, threshold: float, k: int = 10, window: int = 1000) -> None:
        self.threshold = threshold
        self.k = k
        self.buffer: deque[np.ndarray] = deque(maxlen=window)

    def observe(self, x: np.ndarray, label: int) -> bool:
        flagged = False
        if len(self.buffer) >= self.k:
            d = np.linalg.norm(np.asarray(self.buffer) - x, axis=1)
            flagged = float(np.sort(d)[: self.k].mean()) < self.threshold
        self.buffer.append(x)
        return flagged

    @staticmethod
    def calibrate(natural: np.ndarray, k: int = 10, quantile: float = 0.001) -> float:
        """The ``quantile`` of the k-NN statistic over a stream of natural records."""
        stats = []
        for i in range(k, len(natural)):
            d = np.linalg.norm(natural[max(0, i - 1000) : i] - natural[i], axis=1)
            stats.append(np.sort(d)[:k].mean())
        return float(np.quantile(stats, quantile))


def first_flag(
    detector: Prada | NearestNeighbour, rows: np.ndarray, labels: np.ndarray
) -> int | None:
    """1-based index of the first query the detector flags, or None."""
    for i, (x, y) in enumerate(zip(rows, labels, strict=True), 1):
        if detector.observe(x, int(y)):
            return i
    return None
