"""Performance and group-fairness metrics of a held-out evaluation (fairlearn).

The record goes into the training run's provenance, so bias and performance
are part of what a model must prove before promotion. Needs the
``provenance`` extra (fairlearn, scikit-learn).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from donjon.errors import InputError


def _number(value: Any) -> float:
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise InputError("an evaluation metric is not a finite number")
    return round(number, 6)


def evaluate(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    sensitive_features: Sequence[Any],
    *,
    dataset: str = "holdout",
    sensitive_name: str = "sensitive_feature",
) -> dict[str, Any]:
    """Overall and per-group metrics, demographic-parity and equalized-odds differences.

    Precision, recall and F1 are reported for binary labels; accuracy always.
    """
    try:
        from fairlearn.metrics import (  # type: ignore[import-untyped]
            MetricFrame,
            demographic_parity_difference,
            equalized_odds_difference,
        )
        from sklearn.metrics import (
            accuracy_score,
            f1_score,
            precision_score,
            recall_score,
        )
    except ImportError as e:
        raise InputError("evaluation needs fairlearn and scikit-learn (extra 'provenance')") from e
    n = len(y_true)
    if n == 0 or n != len(y_pred) or n != len(sensitive_features):
        raise InputError(
            "y_true, y_pred and sensitive_features must be non-empty and of the same length"
        )
    labels = set(y_true) | set(y_pred)
    metrics: dict[str, Any] = {"accuracy": accuracy_score}
    binary = len(labels) <= 2
    if binary:
        metrics.update(
            precision=lambda t, p: precision_score(t, p, zero_division=0),
            recall=lambda t, p: recall_score(t, p, zero_division=0),
            f1=lambda t, p: f1_score(t, p, zero_division=0),
        )
    try:
        frame = MetricFrame(
            metrics=metrics,
            y_true=list(y_true),
            y_pred=list(y_pred),
            sensitive_features=list(sensitive_features),
        )
        overall = {name: _number(v) for name, v in frame.overall.items()}
        by_group = {
            str(group): {name: _number(v) for name, v in row.items()}
            for group, row in frame.by_group.iterrows()
        }
        fairness: dict[str, float] = {
            "demographic_parity_difference": _number(
                demographic_parity_difference(
                    list(y_true), list(y_pred), sensitive_features=list(sensitive_features)
                )
            )
        }
        if binary:
            fairness["equalized_odds_difference"] = _number(
                equalized_odds_difference(
                    list(y_true), list(y_pred), sensitive_features=list(sensitive_features)
                )
            )
    except (ValueError, TypeError) as e:
        raise InputError(f"cannot evaluate: {e}") from e
    return {
        "dataset": dataset,
        "samples": n,
        "sensitive_feature": sensitive_name,
        "overall": overall,
        "by_group": by_group,
        **fairness,
    }
