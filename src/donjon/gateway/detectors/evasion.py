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
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def line_test(self, near_radius: float) -> LineTest | None:
        c = self.config
        if c.min_walk < 1:
            return None
        return LineTest(c.walk_tolerance, c.walk_offset, near_radius)

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
