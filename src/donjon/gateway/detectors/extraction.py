"""Model extraction: a sequential test on the principal's out-of-distribution ratio.

Natural traffic exceeds the per-input OOD threshold (:mod:`.ood`) at about its
calibrated rate (1 %). We allow a margin for drift, ``null_rate`` (5 %), and
after ``min_queries`` test H0 "this principal's OOD rate <= null_rate" with the
exact binomial tail: fire when ``P(K >= k | n, null_rate) < alpha`` (1e-6).
Synthetic extraction queries (noise, Jacobian augmentation, KnockoffNets or
CopycatCNN over a surrogate data set) are mostly OOD and cross it within tens of
queries; extraction with *natural* data does not, and only the cumulative budget
(``budget`` queries per principal, rule DJ-GW-003) bounds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from donjon.gateway.detectors import Action, Signal
from donjon.gateway.detectors.state import PrincipalState
from donjon.gateway.rules import EXTRACTION, QUERY_BUDGET


@dataclass(frozen=True)
class ExtractionConfig:
    action: Action = Action.BLOCK
    null_rate: float = 0.05
    alpha: float = 1e-6
    min_queries: int = 10
    budget: int | None = 100_000
    budget_action: Action = Action.THROTTLE


def binomial_tail(k: int, n: int, p: float) -> float:
    """``P(K >= k)`` for ``K ~ Binomial(n, p)``, summed in log space."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if n > 2000:  # Chernoff bound exp(-n KL(k/n || p)): an upper bound, so conservative
        f = k / n
        kl = f * math.log(f / p) + ((1 - f) * math.log((1 - f) / (1 - p)) if f < 1 else 0.0)
        return math.exp(-n * kl)
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * log_p
        + (n - i) * log_q
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


class ExtractionDetector:
    name = "extraction"

    def __init__(self, config: ExtractionConfig | None = None) -> None:
        self.config = config or ExtractionConfig()

    def signals(self, state: PrincipalState) -> list[Signal]:
        c = self.config
        found: list[Signal] = []
        if c.budget is not None and state.queries > c.budget:
            found.append(
                Signal(
                    detector="budget",
                    rule=QUERY_BUDGET,
                    action=c.budget_action,
                    score=float(state.queries),
                    threshold=float(c.budget),
                    message=f"{state.queries} queries exceed the budget of {c.budget}",
                    evidence={"queries": state.queries, "budget": c.budget},
                )
            )
        n, k = state.queries, state.ood
        if n >= c.min_queries and k > c.null_rate * n:
            p_value = binomial_tail(k, n, c.null_rate)
            if p_value < c.alpha:
                found.append(
                    Signal(
                        detector=self.name,
                        rule=EXTRACTION,
                        action=c.action,
                        score=p_value,
                        threshold=c.alpha,
                        message=(
                            f"{k} of {n} queries out of distribution "
                            f"(p = {p_value:.2g} under a {c.null_rate:.0%} natural rate)"
                        ),
                        evidence={"queries": n, "ood": k, "p_value": p_value},
                    )
                )
        return found
