"""The split test: a shared background value broken in two by a sign-like perturbation.

Many encodings have *background* features, whose most common value holds at least
half of the rows (an image's blank border at 0, a count that is usually 0, an
absent one-hot category). A natural row has most of them at that value and the rest
at assorted values. A benign change of the whole row -- a gain and offset, a drift,
clipping to the valid range -- maps equal values to equal values, so the background
stays one group; resampling (a zoom, a blur) gives the pixels it touches assorted
values. A sign-gradient perturbation (FGSM, PGD and their kin) moves every feature
by ``+eps`` or ``-eps``: the background splits into two large groups of equal values,
``b + eps`` and ``b - eps`` (or ``b`` itself, where the valid range clips it).

The statistic of a row is the size of its *second* largest group of equal values
among the background features (values equal to ``1e-7`` of the typical feature
scale). ``split_rates[m-1]`` of the profile is the share of held-out natural rows
that reach ``m``; the test flags a row at the least ``m`` with a rate at most the
configured one. Continuous features have no background, and a table without any has
no split test: a perturbation that leaves no equal values behind is not visible here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
SHARE = 0.5  # a background feature's most common value holds at least this share of rows
RESOLUTION = 1e-7  # values closer than this (in units of the typical scale) are equal
SMALL = 8  # batches up to this many rows are counted row by row


def learn_background(data: Array, share: float = SHARE) -> npt.NDArray[np.int64]:
    """The features whose most common value holds at least ``share`` of the rows."""
    found = []
    for j in range(data.shape[1]):
        _, counts = np.unique(data[:, j], return_counts=True)
        if counts.max() >= share * len(data):
            found.append(j)
    return np.asarray(found, dtype=np.int64)


class SplitCheck:
    """Per row, the second largest group of equal values among the background features."""

    def __init__(self, features: npt.NDArray[np.int64], unit: float) -> None:
        self.features = features
        self.unit = unit if unit > 0 else 1.0
        self._factor = 1.0 / (self.unit * RESOLUTION)

    def __call__(self, rows: Array) -> npt.NDArray[np.int64]:
        n, k = len(rows), len(self.features)
        if k < 2 or n == 0:
            return np.zeros(n, dtype=np.int64)
        values = np.rint(rows[:, self.features] * self._factor)
        if n <= SMALL:  # a request of a few rows: counting in Python is cheaper
            return np.asarray([_second_run(r) for r in values.tolist()], dtype=np.int64)
        values.sort(axis=1)
        starts = np.ones((n, k), dtype=bool)
        starts[:, 1:] = values[:, 1:] != values[:, :-1]
        run = np.cumsum(starts, axis=1) - 1 + (np.arange(n) * k)[:, None]
        sizes = np.bincount(run.ravel(), minlength=n * k).reshape(n, k)
        second: npt.NDArray[np.int64] = np.partition(sizes, k - 2, axis=1)[:, k - 2]
        return second


def _second_run(values: list[float]) -> int:
    """The second largest group of equal values (0 with one group): the runs of the
    sorted values, counted in one pass (cheaper than a ``Counter`` for a few dozen)."""
    values.sort()
    first = second = 0
    run, previous = 0, values[0]
    for value in values:
        if value == previous:
            run += 1
            continue
        if run > first:
            first, second = run, first
        elif run > second:
            second = run
        run, previous = 1, value
    if run > first:
        first, second = run, first
    elif run > second:
        second = run
    return second


def split_rates(held: Array, check: SplitCheck) -> tuple[float, ...]:
    """``rates[m-1]``: the share of ``held`` rows whose statistic reaches ``m``."""
    if len(check.features) < 2:
        return ()
    counts = check(held)
    top = max(1, len(check.features) // 2)  # the second group holds at most half
    return tuple(float((counts >= m).mean()) for m in range(1, top + 1))
