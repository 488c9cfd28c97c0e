"""How far a natural query is from the nearest of ``n`` earlier natural queries.

A principal that sends natural records sends each one at some distance from the
nearest of its earlier queries, and that distance shrinks as it sends more (more
rows, a closer nearest one). :class:`Spacing` is the null model of that distance:
for ``n`` in :data:`COUNTS` (1, 2, 4, ... 256 earlier queries), its quantiles at
:data:`LEVELS` over ``draws`` natural queries (held-out rows), each against ``n``
random reference rows. :meth:`Spacing.pvalue` turns one query's distance into the
probability that a natural query is at least that far from ``n`` earlier ones.

The distance between a principal's own queries does not move when all of them
move together (a brighter camera, a slow drift, other units scale every distance
by the same factor at most), so a shifted benign stream keeps uniform p-values,
where random draws over the feature box (the starting points of a decision-based
attack, noise for extraction) are each far from all the others.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.errors import InputError

Array = npt.NDArray[np.float64]
COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LEVELS = (0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999)


@dataclass(frozen=True)
class Spacing:
    """Per count of earlier queries (``counts``), the quantiles (``levels``) of the
    distance of a natural query to the nearest of them (scaled space)."""

    counts: tuple[int, ...]
    levels: tuple[float, ...]
    quantiles: tuple[tuple[float, ...], ...]

    def pvalue(self, distance: float, earlier: int) -> float:
        """``P(D >= distance)`` for a natural query after ``earlier`` (>= 1) queries,
        interpolated in log-probability between the stored quantiles: 1 below the
        first (the median), ``1 - levels[-1]`` beyond the last. Past the largest calibrated count
        it uses that count's quantiles, and between two counts the smaller one's
        (larger distances, smaller p-values), so it never overstates the evidence."""
        row = self.quantiles[max(0, bisect_right(self.counts, earlier) - 1)]
        if distance <= row[0]:
            return 1.0
        if distance >= row[-1]:
            return 1.0 - self.levels[-1]
        j = bisect_right(row, distance)  # row[j-1] < distance < row[j]; plain floats: fast
        lo, hi = row[j - 1], row[j]
        a, b = math.log(1.0 - self.levels[j - 1]), math.log(1.0 - self.levels[j])
        t = (distance - lo) / (hi - lo) if hi > lo else 1.0
        return math.exp(a + t * (b - a))

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": list(self.counts),
            "levels": list(self.levels),
            "quantiles": [list(r) for r in self.quantiles],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spacing:
        counts = tuple(int(v) for v in data["counts"])
        levels = tuple(float(v) for v in data["levels"])
        quantiles = tuple(tuple(float(v) for v in r) for r in data["quantiles"])
        if (
            not counts
            or list(counts) != sorted(set(counts))
            or counts[0] < 1
            or not levels
            or list(levels) != sorted(levels)
            or not all(0.0 < q < 1.0 for q in levels)
            or len(quantiles) != len(counts)
            or any(len(r) != len(levels) or list(r) != sorted(r) for r in quantiles)
        ):
            raise InputError("profile spacing is malformed")
        return cls(counts, levels, quantiles)


def calibrate_spacing(
    queries: Array, reference: Array, *, draws: int = 2000, seed: int = 0
) -> Spacing:
    """The spacing null from natural ``queries`` (held-out rows, scaled) against
    random rows of ``reference`` (the profile's sample)."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[float, ...]] = []
    for n in COUNTS:
        picked = queries[rng.integers(len(queries), size=draws)]
        found = np.full(draws, np.inf)
        for start in range(0, n, 32):  # chunks of earlier rows: memory draws x 32 x features
            idx = rng.integers(len(reference), size=(draws, min(32, n - start)))
            d2 = ((reference[idx] - picked[:, None, :]) ** 2).sum(axis=2)
            found = np.minimum(found, d2.min(axis=1))
        quantiles = np.quantile(np.sqrt(found), LEVELS)
        rows.append(tuple(float(v) for v in np.maximum.accumulate(quantiles)))
    return Spacing(COUNTS, LEVELS, tuple(rows))
