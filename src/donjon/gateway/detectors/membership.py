"""Membership-inference probing: one record queried with many small perturbations.

Label-only and noise-robustness membership inference estimate how stable the
model's answer is around a candidate record, by querying many perturbed copies
of it. The signature is the same near-cluster as evasion (see
:mod:`.evasion`) without the need for a label change: fire when a query has at
least ``min_near`` distinct near-identical predecessors in the window. The
threshold is higher than evasion's because it needs no boundary crossing:
a benign client re-sending a record with small jitter a handful of times stays
under it.
"""

from __future__ import annotations

from dataclasses import dataclass

from donjon.gateway.detectors import Action, Signal
from donjon.gateway.detectors.state import Neighbours
from donjon.gateway.rules import MEMBERSHIP_PROBING


@dataclass(frozen=True)
class MembershipConfig:
    action: Action = Action.BLOCK
    min_near: int = 12


class MembershipDetector:
    name = "membership"

    def __init__(self, config: MembershipConfig | None = None) -> None:
        self.config = config or MembershipConfig()

    def signal(self, near: Neighbours) -> Signal | None:
        if near.distinct_near < self.config.min_near:
            return None
        return Signal(
            detector=self.name,
            rule=MEMBERSHIP_PROBING,
            action=self.config.action,
            score=float(near.distinct_near),
            threshold=float(self.config.min_near),
            message=f"{near.distinct_near} distinct near-identical variants of one record",
            evidence={"distinct_near": near.distinct_near, "nearest": round(near.nearest, 4)},
        )
