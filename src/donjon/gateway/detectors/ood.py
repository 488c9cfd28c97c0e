"""Per-input out-of-distribution / adversarial score against the reference profile.

``score = knn_distance(x) / knn_threshold`` where the threshold is the profile's
calibrated ``quantile`` (0.99) of the same statistic on held-out reference rows:
a natural input scores above 1 about 1 % of the time. When the training data
lies on a value grid (integers, multiples of 1/255) and ``check_grid`` is on, an
input off that grid is flagged too (perturbation-based attacks that do not round
land off the grid). And (``range_rate``, when the profile has ``range_rates``) an
input with at least ``m`` features outside the training data's per-feature ``[min, max]``
is flagged, ``m`` the least count that at most ``range_rate`` (0.5 %) of held-out natural
rows reach: sign-gradient perturbations (FGSM, PGD) push pixels that are constant in
the training data (a digit's background) off their range, which the scaled distance
barely sees. This is the only per-request handle on one-shot transfer attacks, and it
cannot catch an adversarial input that stays close to natural data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from donjon.gateway.detectors import Action, Signal
from donjon.gateway.profile import ReferenceProfile
from donjon.gateway.rules import ADVERSARIAL_INPUT


@dataclass(frozen=True)
class OodConfig:
    action: Action = Action.LOG
    quantile: float = 0.99
    check_grid: bool = True
    range_rate: float | None = 0.005


class OodDetector:
    name = "ood"

    def __init__(self, profile: ReferenceProfile, config: OodConfig | None = None) -> None:
        self.profile = profile
        self.config = config or OodConfig()
        self.threshold = profile.knn_threshold(self.config.quantile)
        rate = self.config.range_rate
        self.range_limit = profile.range_limit(rate) if rate else None  # 0 / None: off

    def outside(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Per row, features off the training range (zeros when the range test is off)."""
        if self.range_limit is None:
            return np.zeros(len(rows), dtype=np.int64)
        return self.profile.outside(rows)

    def scores(
        self, rows: npt.NDArray[np.float64], scaled: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Per-row score (>1 is out of distribution) and off-grid flags."""
        score: npt.NDArray[np.float64] = self.profile.knn_distance(scaled) / self.threshold
        grid = (
            self.profile.off_grid(rows)
            if self.config.check_grid
            else np.zeros(len(rows), dtype=bool)
        )
        return score, grid

    def signal(self, score: float, off_grid: bool, outside: int = 0) -> Signal | None:
        off_range = self.range_limit is not None and outside >= self.range_limit
        if score <= 1.0 and not off_grid and not off_range:
            return None
        if off_grid:
            why = "off the training data's value grid"
        elif off_range:
            why = f"with {outside} features outside the training data's range"
        else:
            why = "far from the training data"
        return Signal(
            detector=self.name,
            rule=ADVERSARIAL_INPUT,
            action=self.config.action,
            score=score,
            threshold=1.0,
            message=f"input {why} (OOD score {score:.2f})",
            evidence={"ood_score": round(score, 4), "off_grid": off_grid, "outside": outside},
        )
