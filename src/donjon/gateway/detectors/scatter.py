"""Scattered queries: a run of queries each far from the data and from each other.

Decision-based attacks start from random points: ART's BoundaryAttack draws
uniform noise over the feature box until the model answers another class (about
20 draws on a two-class table), KnockoffNets over noise and other synthetic
sets query unrelated random points. No draw is close to an earlier one, so the
near-query tests (:mod:`.evasion`) cannot see them, and each is only moderately
far from the data (on a heavy-tailed table, near the 99.5th percentile of natural
records), so the binary "far" verdict of :mod:`.extraction` misses many.

What sets them apart is that they are scattered: each is farther from the
nearest of the principal's earlier queries than natural queries are. Per query:

* ``p`` = the probability that a natural query is at least that far from the
  nearest of as many earlier ones (the profile's :class:`~..spacing.Spacing`, a
  null model calibrated on held-out rows), floored at ``p_floor`` (0.01: the
  evidence of one query is capped) -- or 1 when the query is nearer the data
  than ``gate`` (0.95) of natural records are (a natural-looking record is no
  evidence, however far from the others);
* the CUSUM ``S = max(0, S + ln a + (1 - a) ln(1 / p))``, the log-likelihood ratio
  of ``p`` between the alternative density ``a p^(a-1)`` (``a`` = 0.25: small
  p-values are likely) and the uniform null; flagged when ``S >= ln(1 / alpha)``
  (9.2) after ``min_queries`` (10).

The step is a likelihood ratio, ``E[exp(step)] = 1`` under a uniform ``p``, so each
excursion of ``S`` above 0 reaches ``ln(1 / alpha)`` with probability at most
``alpha`` (Wald); with the gate, 95 % of natural queries step by ``ln a = -1.39``
and start no excursion, so a natural stream raises a false alarm about once in
``1 / (0.05 alpha)`` = 200,000 queries. On 20,000 queries of benign variety (noise,
drift, offset, gain, rescaling) ``S`` stayed under 4.3. A query at the floor adds
2.1, one at ``p`` = 0.03 about 1.2, so about eight scattered draws are flagged. The distance between
a principal's own queries is unchanged by shifts of its whole stream (brightness,
drift, units), which is why this test is quiet on shifted benign traffic where a
distance-to-data test is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from donjon.gateway.detectors import Action, Signal
from donjon.gateway.detectors.state import PrincipalState
from donjon.gateway.rules import EXTRACTION
from donjon.gateway.spacing import Spacing


@dataclass(frozen=True)
class ScatterConfig:
    action: Action = Action.BLOCK
    alpha: float = 1e-4
    min_queries: int = 10
    alternative: float = 0.25  # a in a * p^(a-1)
    p_floor: float = 0.01
    gate: float = 0.95  # natural quantile of the distance to the data


def largest_step(alternative: float, p_floor: float) -> float:
    """The most one query adds to the CUSUM (its ``p`` at ``p_floor``): at or below 0,
    the statistic never leaves 0 and the test can never fire."""
    return math.log(alternative) - (1.0 - alternative) * math.log(p_floor)


class ScatterDetector:
    name = "scatter"

    def __init__(self, spacing: Spacing, gate_score: float, config: ScatterConfig) -> None:
        """``gate_score``: the OOD score (the profile's k-NN distance over the OOD
        threshold) of the natural ``config.gate`` quantile."""
        self.spacing = spacing
        self.gate_score = gate_score
        self.config = config
        self.limit = -math.log(config.alpha)
        self._log_alternative = math.log(config.alternative)

    def evidence(self, nearest: float, earlier: int, score: float) -> float:
        """The CUSUM step of one query: ``nearest`` its distance to the principal's
        closest earlier query (not an exact repeat), ``earlier`` how many there are,
        ``score`` its OOD score."""
        c = self.config
        p = 1.0
        if earlier > 0 and math.isfinite(nearest) and score > self.gate_score:
            p = max(self.spacing.pvalue(nearest, earlier), c.p_floor)
        return self._log_alternative - (1.0 - c.alternative) * math.log(p)

    def observe(self, state: PrincipalState, step: float) -> Signal | None:
        state.scatter = max(0.0, state.scatter + step)
        if state.queries < self.config.min_queries or state.scatter < self.limit:
            return None
        return Signal(
            detector=self.name,
            rule=EXTRACTION,
            action=self.config.action,
            score=state.scatter,
            threshold=self.limit,
            message=(
                "a run of scattered queries, each far from the data and from the "
                f"principal's earlier queries (CUSUM {state.scatter:.1f} against "
                f"{self.limit:.1f}): random draws of a black-box attack"
            ),
            evidence={"cusum": round(state.scatter, 3)},
        )
