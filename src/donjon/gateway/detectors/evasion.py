"""Query-based evasion: close queries walking across a decision boundary.

Decision-based black-box attacks (HopSkipJump, Boundary Attack and their kin)
search for the boundary with many queries that differ from each other by tiny
amounts, and whose answers disagree (one side of the boundary or the other).
For each new query we count the *distinct* earlier queries of the same principal
within a "near" radius, ignoring exact repeats (retries, natural duplicates):

* radius ``near = near_factor * nn_q01`` where ``nn_q01`` is the profile's 1 %
  quantile of nearest-neighbour distances between natural records: two
  natural records are almost never that close, so benign drift does not count;
* fire when at least ``min_near`` distinct near queries exist **and** the
  model gave at least two different labels among them (the cluster straddles a
  boundary). Small jitter of a benign re-send rarely crosses a boundary, and a
  benign client re-sends one record only a few times.

Before the walk gets that close, it *finds* the boundary with a line search:
HopSkipJump and its kin bisect the segment between the original input and a
starting point of another class, so every step lies on the segment between the
previous query and an earlier one answered differently. The line test
(:class:`~.state.LineTest`) fires when ``min_walk`` (2) queries in the window did
that, to within ``walk_tolerance`` (2 %) of the segment's length, at least
``walk_offset`` (10 %) of it from either end, on a segment longer than ``near``.
Exactness is the signal: a bisection has excess 0, grid rounding adds a few
tenths of a percent on the first, long steps, while independent natural records
are far from collinear in many dimensions (digits: 16 % at the least). Where they
are not (few features), :func:`natural_excess` caps the tolerance at half the
smallest excess among natural triples of the profile's sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from donjon.gateway.detectors import Action, Signal
from donjon.gateway.detectors.state import LineTest, Neighbours
from donjon.gateway.rules import EVASION_PROBING


@dataclass(frozen=True)
class EvasionConfig:
    action: Action = Action.BLOCK
    near_factor: float = 0.5
    min_near: int = 4
    min_labels: int = 2
    min_walk: int = 2
    walk_tolerance: float = 0.02
    walk_offset: float = 0.1


class EvasionDetector:
    name = "evasion"

    def __init__(self, config: EvasionConfig | None = None) -> None:
        self.config = config or EvasionConfig()

    def line_test(
        self, near_radius: float, natural: npt.NDArray[np.float64] | None = None
    ) -> LineTest | None:
        """The line test, its tolerance capped at half the smallest excess that natural
        rows (``natural``, the profile's scaled sample) show (see :func:`natural_excess`)."""
        c = self.config
        if c.min_walk < 1:
            return None
        tolerance = c.walk_tolerance
        if natural is not None:
            tolerance = min(tolerance, 0.5 * natural_excess(natural, c.walk_offset, near_radius))
        return LineTest(tolerance, c.walk_offset, near_radius)

    def signal(self, near: Neighbours) -> Signal | None:
        c = self.config
        if near.bisects and near.walk >= c.min_walk:
            return Signal(
                detector=self.name,
                rule=EVASION_PROBING,
                action=c.action,
                score=float(near.walk),
                threshold=float(c.min_walk),
                message=(
                    f"{near.walk} queries each between two earlier queries answered "
                    "differently: a line search for the decision boundary"
                ),
                evidence={"bisecting": near.walk, "nearest": round(near.nearest, 4)},
            )
        if near.distinct_near < c.min_near or len(near.near_labels) < c.min_labels:
            return None
        return Signal(
            detector=self.name,
            rule=EVASION_PROBING,
            action=c.action,
            score=float(near.distinct_near),
            threshold=float(c.min_near),
            message=(
                f"{near.distinct_near} distinct near-identical queries answered with "
                f"{len(near.near_labels)} different labels: a decision-boundary walk"
            ),
            evidence={
                "distinct_near": near.distinct_near,
                "labels": sorted(near.near_labels),
                "nearest": round(near.nearest, 4),
            },
        )


def natural_excess(
    rows: npt.NDArray[np.float64],
    offset: float,
    min_span: float,
    window: int = 127,
    trials: int = 500,
) -> float:
    """The smallest relative excess ``(|x-p| + |x-a| - |p-a|) / |p-a|`` over natural
    triples: up to ``trials`` rows ``x``, each against one other row ``p`` and a window
    of ``window`` rows ``a``.

    In many dimensions independent records are far from collinear (digits, 64 features:
    0.16, eight times the default tolerance), in a few they are not (iris, 4 features:
    under 0.001), so the line test's tolerance is capped at half this value: a natural
    query then meets it at a rate below about one in ``trials``. Seeded: deterministic.
    """
    n = len(rows)
    if n < 3:
        return 0.0
    rng = np.random.default_rng(0)
    k = min(window, n - 1)
    best = np.inf
    for start in range(0, min(n, trials), 50):  # chunks: memory 50 x k x features
        xs = rows[start : min(n, trials, start + 50)]
        p = rows[rng.integers(n, size=len(xs))]
        a = rows[np.stack([rng.choice(n, k, replace=False) for _ in range(len(xs))])]
        span = np.linalg.norm(a - p[:, None, :], axis=2)
        legs = np.linalg.norm(a - xs[:, None, :], axis=2)
        dp = np.linalg.norm(xs - p, axis=1)[:, None]
        valid = (span >= max(min_span, 1e-12)) & (np.minimum(legs, dp) >= offset * span)
        if valid.any():
            best = min(best, float(((legs + dp - span)[valid] / span[valid]).min()))
    return best if np.isfinite(best) else 0.0
