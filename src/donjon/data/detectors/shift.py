"""Shift between two versions of a data set: per-feature tests and class balance.

Numeric features are compared with the two-sample Kolmogorov-Smirnov test, the class
balance with a chi-square test; p-values are Bonferroni-corrected over the features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.01


@dataclass(frozen=True)
class ShiftResult:
    features: tuple[dict[str, Any], ...] = ()  # the shifted ones, strongest first
    tested: int = 0
    class_balance: dict[str, Any] = field(default_factory=dict)

    @property
    def class_shift(self) -> bool:
        return bool(self.class_balance.get("shifted"))


def feature_shift(
    old: np.ndarray, new: np.ndarray, names: tuple[str, ...], alpha: float = ALPHA
) -> list[dict[str, Any]]:
    shifted = []
    tests = old.shape[1]
    for j in range(tests):
        a, b = old[:, j], new[:, j]
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        if len(a) < 2 or len(b) < 2:
            continue
        result = stats.ks_2samp(a, b)
        p = min(1.0, float(result.pvalue) * tests)
        if p < alpha:
            shifted.append(
                {
                    "feature": names[j] if j < len(names) else str(j),
                    "ks": round(float(result.statistic), 4),
                    "p_corrected": p,
                    "mean_old": float(a.mean()),
                    "mean_new": float(b.mean()),
                }
            )
    shifted.sort(key=lambda f: -f["ks"])
    return shifted


def class_balance(old: list[str], new: list[str], alpha: float = ALPHA) -> dict[str, Any]:
    classes = sorted(set(old) | set(new))
    a = np.array([old.count(c) for c in classes], dtype=float)
    b = np.array([new.count(c) for c in classes], dtype=float)
    if len(classes) < 2 or a.sum() == 0 or b.sum() == 0:
        return {"shifted": False, "classes": classes}
    table = np.vstack([a, b]) + 0.5  # continuity for classes absent on one side
    chi2, p, _, _ = stats.chi2_contingency(table)
    share_a, share_b = a / a.sum(), b / b.sum()
    changes = {
        c: {"old": round(float(x), 4), "new": round(float(y), 4)}
        for c, x, y in zip(classes, share_a, share_b, strict=True)
    }
    return {"shifted": bool(p < alpha), "chi2": float(chi2), "p": float(p), "shares": changes}


def detect_shift(
    old_X: np.ndarray,
    new_X: np.ndarray,
    names: tuple[str, ...],
    old_labels: list[str] | None,
    new_labels: list[str] | None,
) -> ShiftResult:
    features = feature_shift(old_X, new_X, names) if old_X.shape[1] == new_X.shape[1] else []
    balance = class_balance(old_labels, new_labels) if old_labels and new_labels else {}
    return ShiftResult(tuple(features), old_X.shape[1], balance)
