"""What every detector takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from donjon.core.rules import Rule


@dataclass(frozen=True)
class LabelledData:
    """Features (n, d) as float64, labels encoded 0..K-1, and what they stand for."""

    X: np.ndarray
    y: np.ndarray | None
    classes: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    image_shape: tuple[int, ...] | None = None
    pred_probs: np.ndarray | None = None  # user-supplied out-of-sample probabilities

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def k(self) -> int:
        return len(self.classes)

    def label_name(self, code: int) -> str:
        return self.classes[code] if 0 <= code < len(self.classes) else str(code)


@dataclass(frozen=True)
class RecordFlag:
    """One record flagged by one detector: a score in [0, 1] and a reason."""

    row: int
    detector: str
    rule: Rule
    score: float
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DetectorResult:
    detector: str
    rule: Rule
    flags: tuple[RecordFlag, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def bonferroni_z(count: int, alpha: float = 0.01, two_sided: bool = False) -> float:
    """The z beyond which one of ``count`` Gaussian draws falls with probability ``alpha``."""
    tail = alpha / max(count, 1) / (2 if two_sided else 1)
    return float(stats.norm.isf(tail))


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD); a zero MAD falls back to the mean absolute deviation."""
    center = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - center)))
    if spread <= 0:
        spread = 1.2533 * float(np.mean(np.abs(values - center)))
    if spread <= 0:
        return np.zeros_like(values, dtype=float)
    return np.asarray((values - center) / spread, dtype=float)
