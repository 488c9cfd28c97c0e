"""Per-input out-of-distribution / adversarial score against the reference profile.

``score = knn_distance(x) / knn_threshold`` where the threshold is the profile's
calibrated ``quantile`` (0.995) of the same statistic on held-out reference rows:
a natural input scores above 1 about 0.5 % of the time. The distance is taken after
the best benign alignment of the input (a bounded gain and offset, see
:mod:`..profile`): a brighter camera, a contrast or unit change and slow drifts of
either do not make an input far. When a feature has a value grid and
``check_grid`` is on, an input off it is flagged too -- but only for a principal
whose first queries were on the grid (the guard decides, see :mod:`..guard`): a
client whose own encoding is continuous (unrounded sensor noise, another scale)
is not flagged for it. And (``range_rate``, when the profile has ``range_rates``)
an input with at least ``m`` features outside the training data's per-feature
``[min, max]``, widened by ``range_margin`` (0.25) of each feature's scale, both
as sent and after the alignment, is flagged, ``m`` the least count that at most
``range_rate`` (0.5 %) of held-out natural rows reach (at margin 0, so the rate is
an upper bound): sign-gradient perturbations (FGSM, PGD) push features that are
constant in the training data (a digit's background) off their range, which the
scaled distance barely sees, while sensor noise smaller than the margin does not.
And (``split_rate``, when the profile has background features) an input whose
background features split into two large groups of equal values, the trace of a
sign-gradient perturbation at any budget (:mod:`..splits`), is flagged, at the
least group size that at most ``split_rate`` (0.5 %) of held-out natural rows reach.

Two kinds of evidence, two actions. Distance (the score, the range test) says an
input is unlike the training data, which a covariate shift says too: a zoomed image,
a new camera. It takes ``distance_action`` (log). Structure (the split test; off the
grid for a principal whose first queries were on it) is what a perturbation leaves
and a benign transformation does not; it takes ``action`` (log by default, block
when configured). Adversarial inputs that leave no structure behind and stay close
to natural data (small perturbations of continuous tables) are not caught per input.
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
    quantile: float = 0.995
    check_grid: bool = True
    range_rate: float | None = 0.005
    range_margin: float = 0.25
    split_rate: float | None = 0.005
    distance_action: Action = Action.LOG


class OodDetector:
    name = "ood"

    def __init__(self, profile: ReferenceProfile, config: OodConfig | None = None) -> None:
        self.profile = profile
        self.config = config or OodConfig()
        self.threshold = profile.knn_threshold(self.config.quantile)
        rate = self.config.range_rate
        self.range_limit = profile.range_limit(rate) if rate else None  # 0 / None: off
        split = self.config.split_rate
        self.split_limit = profile.split_limit(split) if split else None  # 0 / None: off
        pad = self.config.range_margin * profile.scale
        self._low, self._high = profile.low - pad, profile.high + pad  # as profile.outside

    def outside(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Per (aligned) row, features off the training range (zeros when the test is off)."""
        if self.range_limit is None:
            return np.zeros(len(rows), dtype=np.int64)
        counts: npt.NDArray[np.int64] = ((rows < self._low) | (rows > self._high)).sum(axis=1)
        return counts

    def scores(
        self, rows: npt.NDArray[np.float64], scaled: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        """Per row: the score (>1 is out of distribution), off-grid flags and the count of
        features outside the training range after the alignment (see :meth:`split`)."""
        found = self.profile.nearest(scaled)
        score: npt.NDArray[np.float64] = found.distance / self.threshold
        grid = (
            self.profile.off_grid(rows)
            if self.config.check_grid
            else np.zeros(len(rows), dtype=bool)
        )
        # outside on both: the alignment explains a shifted input, and never adds a flag
        outside = self.outside(rows)
        if outside.any():
            outside = np.minimum(outside, self.outside(self.profile.realigned(scaled, found)))
        return score, grid, outside

    def split(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Per row, the split statistic (zeros when the test is off)."""
        if self.split_limit is None:
            return np.zeros(len(rows), dtype=np.int64)
        return self.profile.splits(rows)

    def signal(
        self, score: float, off_grid: bool, outside: int = 0, split: int = 0
    ) -> Signal | None:
        off_range = self.range_limit is not None and outside >= self.range_limit
        is_split = self.split_limit is not None and split >= self.split_limit
        if score <= 1.0 and not off_grid and not off_range and not is_split:
            return None
        if is_split:
            why = f"with {split} background features moved together (a sign-like perturbation)"
        elif off_grid:
            why = "off the training data's value grid"
        elif off_range:
            why = f"with {outside} features outside the training data's range"
        else:
            why = "far from the training data"
        structural = is_split or off_grid
        return Signal(
            detector=self.name,
            rule=ADVERSARIAL_INPUT,
            action=self.config.action if structural else self.config.distance_action,
            score=score,
            threshold=1.0,
            message=f"input {why} (OOD score {score:.2f})",
            evidence={
                "ood_score": round(score, 4),
                "off_grid": off_grid,
                "outside": outside,
                "split": split,
            },
        )
