"""Model extraction: a sequential test on the share of a principal's queries that are not
fresh natural records.

A query counts as *synthetic* when it is

* far from the training data: its OOD score (:mod:`.ood`, 1.0 = the calibrated 99.5th
  percentile of natural inputs) exceeds ``far`` (1.5), or it is off the data's value
  grid (for a principal whose first queries were on it; for any principal when the
  score also exceeds 1.0) -- noise, procedural images, KnockoffNets / CopycatCNN over
  a surrogate set; or
* derived from one of the principal's own earlier queries: closer to it (but not an exact
  repeat) than the profile's ``derived_quantile`` (10 %) of natural nearest-neighbour
  distances -- i.e. closer than 90 % of natural records are to their nearest neighbour
  in the whole reference sample, while the principal's window holds far fewer rows --
  Jacobian-based augmentation and other step-from-a-known-point synthesis, including
  attackers that round to the value grid.

Natural traffic rarely does either (shuffled held-out digits: 0 % far, 0-3 % derived),
but benign clients legitimately do some of it: jittered re-sends of a record are derived
(14-17 % of the benchmark's jitter streams), a covariate shift (a camera one pixel off)
pushes a quarter of its inputs past ``far``. The test is therefore a *majority* test,
robust to that: after ``min_queries`` queries, H0 "at most ``null_rate`` (50 %) of this
principal's queries are synthetic" is rejected with the exact binomial tail
``P(K >= k | n, null_rate) < alpha`` (1e-6). An all-synthetic stream is flagged at its 20th query
(0.5^20 < 1e-6), a Jacobian augmentation that starts from ten natural seeds at about its
55th. An exact repeat is classified like any other query (a retry of a natural record is
natural, a repeat of a synthetic one synthetic).

The majority test weighs a principal's whole history: an attacker who starts from ``n``
natural seeds (Jacobian augmentation does) is flagged only after about ``2n + 20``
queries. A change test runs beside it: the CUSUM ``S = max(0, S + llr)`` of the
log-likelihood ratio of each query's verdict between "``shift_rate`` (95 %) of the
queries are synthetic" and the null rate (synthetic: ``+ln(0.95 / 0.5)``, natural:
``ln(0.05 / 0.5)``), flagged when ``S >= ln(1 / alpha)`` (13.8): a run of about 22
synthetic queries, wherever it starts, one natural query in it costing 3.6 synthetic
ones. Under the null (half synthetic) ``S`` drifts down by 0.83 a query, so it rarely
climbs that far (the false-alarm rate per query of such a CUSUM is of order
``alpha``); jittered re-sends (a synthetic one in six) never do.

A principal that mixes at least as many natural queries as synthetic ones stays under
both tests, and extraction with *natural* data is not synthetic at all: only the
cumulative budget (``budget`` queries per principal, rule DJ-GW-003) bounds those.
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
    null_rate: float = 0.5
    alpha: float = 1e-6
    min_queries: int = 10
    budget: int | None = 100_000
    budget_action: Action = Action.THROTTLE
    far: float = 1.5
    derived_quantile: float = 0.1
    shift_rate: float | None = 0.95  # None: no change test (the majority test alone)


def binomial_tail(k: int, n: int, p: float) -> float:
    """``P(K >= k)`` for ``K ~ Binomial(n, p)``, summed in log space.

    It runs on every query of a principal whose share is high but not yet significant,
    so above the mode the sum walks the terms by their ratio and stops once they fall
    below 2^-60 of the total: a few dozen steps instead of up to 2,000 ``lgamma`` calls.
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if n > 2000:  # Chernoff bound exp(-n KL(k/n || p)): an upper bound, so conservative
        f = k / n
        kl = f * math.log(f / p) + ((1 - f) * math.log((1 - f) / (1 - p)) if f < 1 else 0.0)
        return math.exp(-n * kl)
    log_p, log_q = math.log(p), math.log1p(-p)

    def log_term(i: int) -> float:
        return (
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            + i * log_p
            + (n - i) * log_q
        )

    if k <= (n + 1) * p:  # at or below the mode the terms first grow: sum them all
        terms = [log_term(i) for i in range(k, n + 1)]
        top = max(terms)
        return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))
    odds, term, total = p / (1 - p), 1.0, 1.0  # terms relative to the first, which is largest
    for i in range(k, n):
        term *= (n - i) / (i + 1) * odds
        total += term
        if term < total * 2.0**-60:
            break
    return min(1.0, math.exp(log_term(k)) * total)


def change_steps(null_rate: float, shift_rate: float) -> tuple[float, float]:
    """The change test's CUSUM steps: a synthetic query, a natural one.

    Raises ValueError unless ``0 < null_rate < shift_rate < 1`` and the steps are finite
    and of opposite signs in floating point: a ``null_rate`` of 1e-320 makes
    ``shift_rate / null_rate`` overflow to infinity (an infinite CUSUM cannot be written
    to an event), and rates below 1e-16 round ``1 - rate`` to 1, so a natural query's
    step is 0 and the statistic only climbs (every principal flagged in the end).
    """
    if not 0 < null_rate < shift_rate < 1:
        raise ValueError(
            f"the change test needs 0 < null_rate ({null_rate}) < shift_rate ({shift_rate}) < 1"
        )
    up = math.log(shift_rate / null_rate)
    down = math.log((1 - shift_rate) / (1 - null_rate))
    if not (math.isfinite(up) and math.isfinite(down) and up > 0 > down):
        raise ValueError(
            f"null_rate {null_rate} and shift_rate {shift_rate} give the change test an "
            f"infinite or zero step (ln(shift_rate / null_rate) = {up}, "
            f"ln((1 - shift_rate) / (1 - null_rate)) = {down}): a natural query must "
            "lower the CUSUM by a finite amount and a synthetic one raise it"
        )
    return up, down


class ExtractionDetector:
    name = "extraction"

    def __init__(self, config: ExtractionConfig | None = None) -> None:
        c = self.config = config or ExtractionConfig()
        self.limit = -math.log(c.alpha)  # the change test's threshold
        # the change test's steps: a synthetic query, a natural one
        shift = c.shift_rate
        self._up, self._down = change_steps(c.null_rate, shift) if shift else (0.0, 0.0)

    def synthetic(self, score: float, off_grid: bool, nearest: float, radius: float) -> bool:
        """Is one query synthetic? ``nearest``: its distance to the principal's closest
        earlier query that is not an exact repeat; ``radius``: the profile's natural
        nearest-neighbour distance at ``derived_quantile``."""
        return score > self.config.far or off_grid or nearest < radius

    def observe(self, state: PrincipalState, synthetic: bool) -> None:
        """Count one tested query and update the change statistic."""
        c = self.config
        state.tested += 1
        state.synthetic += synthetic
        if c.shift_rate is not None:
            state.cusum = max(0.0, state.cusum + (self._up if synthetic else self._down))

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
        n, k = state.tested, state.synthetic
        if n >= c.min_queries and state.cusum >= self.limit:
            found.append(
                Signal(
                    detector=self.name,
                    rule=EXTRACTION,
                    action=c.action,
                    score=state.cusum,
                    threshold=self.limit,
                    message=(
                        f"a run of synthetic queries (far from the data or derived from "
                        f"earlier ones; CUSUM {state.cusum:.1f} against "
                        f"{self.limit:.1f}): {k} of {n} in all"
                    ),
                    evidence={"queries": n, "synthetic": k, "cusum": round(state.cusum, 3)},
                )
            )
        elif n >= c.min_queries and k > c.null_rate * n:
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
                            f"{k} of {n} queries synthetic (far from the data or "
                            f"derived from earlier ones; p = {p_value:.2g} under "
                            f"{c.null_rate:.0%})"
                        ),
                        evidence={"queries": n, "synthetic": k, "p_value": p_value},
                    )
                )
        return found
