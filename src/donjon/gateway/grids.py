"""The value grid of each feature, learned from the training data.

Data are often stored on a grid: pixel intensities as integers, as multiples of
1/255 or 1/16, counts, prices in cents, readings with a fixed number of decimals.
A feature's grid is ``origin + k * step``; :func:`learn_grids` finds, per
feature, the coarsest step that explains every difference between its distinct
values (``NaN`` where none does: a continuous feature). Two rules keep it from
reading a grid that is too coarse into sparse data:

* a feature's values may use only part of its grid (a pixel seen only at 0, 4 and
  8, or at 0 and 3/16) while the encoding is finer: when its step is a whole
  multiple of the step most features share, it takes the shared step;
* a grid finer than ``1e-7`` of the feature's range is no grid (floating-point
  noise of continuous values).

Constant features take the shared step (origin: their value) when there is one.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
TOLERANCE = 1e-4  # in steps: how close to a grid point a value must be
DIVISORS = 12  # candidate steps: the smallest gap divided by 1..12


def learn_grids(data: Array) -> tuple[Array, Array]:
    """Per feature, the grid ``(step, origin)``; ``NaN`` step where there is none."""
    features = data.shape[1]
    steps = np.full(features, np.nan)
    origins = np.zeros(features)
    for j in range(features):
        values = np.unique(data[:, j])
        origins[j] = values[0]
        if len(values) < 2:
            continue
        step = _step(values)
        if step is not None:
            steps[j] = step
    shared = _shared(steps)
    if shared is not None:
        for j in range(features):
            step = steps[j]
            if np.isnan(step):
                if len(np.unique(data[:, j])) == 1:
                    steps[j] = shared  # a constant feature: on the shared grid
                continue
            ratio = step / shared
            if ratio > 1.5 and abs(ratio - round(ratio)) < TOLERANCE:
                steps[j] = shared
    return steps, origins


def off_grid(rows: Array, steps: Array, origins: Array) -> npt.NDArray[np.bool_]:
    """Per row, is any feature that has a grid off it?"""
    return GridCheck(steps, origins)(rows)


class GridCheck:
    """:func:`off_grid` for one profile's grids, with what does not change computed once."""

    def __init__(self, steps: Array, origins: Array) -> None:
        has = ~np.isnan(steps)
        self.columns = None if has.all() else np.flatnonzero(has)  # None: every feature
        self.none = not has.any()
        self.steps, self.origins = steps[has], origins[has]

    def __call__(self, rows: Array) -> npt.NDArray[np.bool_]:
        if self.none:
            return np.zeros(len(rows), dtype=bool)
        values = rows if self.columns is None else rows[:, self.columns]
        k = (values - self.origins) / self.steps
        k -= np.rint(k)
        np.abs(k, out=k)
        result: npt.NDArray[np.bool_] = np.logical_or.reduce(k > TOLERANCE, axis=1)  # np.any
        return result


def common_step(steps: Array) -> float | None:
    """The one step every feature has, or None (some feature continuous, or mixed steps)."""
    if len(steps) == 0 or np.isnan(steps).any():
        return None
    first = float(steps[0])
    return first if np.allclose(steps, first, rtol=1e-9, atol=0.0) else None


def _step(values: Array) -> float | None:
    gaps = np.diff(values)
    span = float(values[-1] - values[0])
    smallest = float(gaps.min())
    offsets = values - values[0]
    for divisor in range(1, DIVISORS + 1):
        step = smallest / divisor
        if step <= 1e-7 * span:
            return None
        k = offsets / step
        if (np.abs(k - np.rint(k)) <= TOLERANCE).all():
            return _tidy(step)
    return None


def _tidy(step: float) -> float:
    """``1/16`` rather than ``0.06250000000000001``: snap to ``1/n`` or ``10^-d`` when close."""
    for candidate in (1.0 / round(1.0 / step) if step < 1 else float(round(step)),):
        if candidate > 0 and abs(candidate - step) <= 1e-9 * step:
            return candidate
    return step


def _shared(steps: Array) -> float | None:
    """The step most features with a grid have (None if no feature has one)."""
    known = [float(s) for s in steps if not np.isnan(s)]
    if not known:
        return None
    counts = Counter(round(s, 12) for s in known)
    return float(counts.most_common(1)[0][0])
