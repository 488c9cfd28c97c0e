"""The score test: where does the suspect put the keyed class among the wrong ones?

A mark's keyed label is chosen by the key uniformly among the ``C - 1`` classes
other than the model's answer ``y`` (:func:`~.rewrite.keyed_class`), from bits of
the HMAC that differ for every distinct input. A suspect that never saw the
watermarked answers is independent of the key, so whatever scores it gives,
the rank of the keyed class among its scores of the ``C - 1`` wrong classes is
uniform on ``1..C-1``, and independent from one mark to the next, even when the
marked inputs are near-copies of each other and the suspect's errors are
correlated. The null distribution is therefore exact, with no rate to estimate:
the p-value is the lower tail of the sum of the ranks, a sum of independent
discrete uniforms, computed exactly (:func:`rank_sum_tail`).

Ties and unknown scores count against the test: a wrong class scored as high as
the keyed one is ranked above it, and a keyed class the suspect does not list
(top-k answers) takes the last rank, so the p-value can only be too large.
A surrogate trained on the marked answers puts the keyed class first or near it
even where it does not make it its top answer (near-copies of a marked input
with the true answer pull its top answer back), which top-1 agreement misses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from donjon.gateway.watermark.records import Label


def keyed_rank(
    scores: Mapping[Label, float], truth: Label, keyed: Label, classes: int
) -> int | None:
    """The keyed class's rank (1 = first) among the suspect's scores of the wrong classes.

    None when there is nothing to rank (two classes: the keyed one is the only wrong one).
    """
    wrong = classes - 1
    if wrong < 2:
        return None
    mine = scores.get(keyed)
    if mine is None or not math.isfinite(mine):
        return wrong
    above = sum(
        1
        for label, score in scores.items()
        if label not in (truth, keyed) and not (math.isfinite(score) and score < mine)
    )
    return min(1 + above, wrong)


def rank_sum_tail(ranks: Sequence[int], sizes: Sequence[int]) -> float:
    """P(R_1 + ... + R_n <= sum(ranks)) for independent R_i uniform on 1..sizes[i]."""
    if len(ranks) != len(sizes):
        raise ValueError("one size per rank")
    if not ranks:
        return 1.0
    total = sum(ranks)
    dist = np.zeros(total + 1)
    dist[0] = 1.0
    sums = np.arange(total + 1)
    for size in sizes:
        # the distribution of the next partial sum, cut at the observed total
        cumulative = np.concatenate(([0.0], np.cumsum(dist)))
        dist = (cumulative[sums] - cumulative[np.maximum(0, sums - size)]) / size
    return float(min(1.0, dist.sum()))
