"""Distances to a sample of rows after a benign alignment of the input (a gain and offset).

An input ``u`` (scaled) is compared to each sample row ``s`` after the gain ``a``
and offset ``b`` that bring ``a * u + b * v`` closest to ``s`` (``v`` the offset
direction), within ``1/gain <= a <= gain`` and ``|b| <= bound``: the least-squares
gain, clipped; the offset given it, clipped; the gain again, clipped.

In the plane of ``u`` and ``v`` (orthonormal axes ``v/|v|`` and ``w``) a sample row
has coordinates ``p = s.v/|v|`` (computed once per profile), ``q = s.w`` and a rest
``r`` outside the plane: ``a * u + b * v`` lies at squared distance
``r^2 + (a * u.v/|v| + b * |v| - p)^2 + (a * |u.w| - q)^2``, never less than ``r^2``.
One product with the sample gives ``q`` and ``r^2`` for every sample row; only the
rows of least ``r^2`` are aligned, until the ``k``-th least aligned distance is at
most the ``r^2`` of the next row: no row left can be nearer, so the ``k`` nearest
are exactly those of all pairs, at a fraction of the cost (the gateway does this
on every request). Rows for which a few dozen candidates do not settle it get all
pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from math import sqrt

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
CANDIDATES = 24  # sample rows aligned exactly per input before all are
_TINY = 1e-300


@dataclass(frozen=True)
class Alignment:
    """The benign gain / offset changes an input may have (``gain`` 1: none)."""

    gain: float = 1.0
    offset: Array = field(default_factory=lambda: np.zeros(0))  # raw direction, per feature
    bound: float = 0.0  # |b| at most this

    @cached_property
    def active(self) -> bool:  # asked on every request: computed once
        return self.gain > 1.0 or (self.bound > 0 and bool(self.offset.any()))


@dataclass(frozen=True)
class Nearest:
    """Per input row: the mean distance to its ``k`` nearest sample rows and the gain
    and offset of the alignment to the nearest one."""

    distance: Array
    gain: Array
    offset: Array


@dataclass(frozen=True)
class _Rows:
    """Per input row (as columns): its coordinates in its plane with the offset."""

    alpha: Array  # u . v / |v|
    beta: Array  # |u| across the offset direction
    uu: Array  # |u|^2
    plane: npt.NDArray[np.bool_]  # not along the offset direction (a least-squares gain)

    def of(self, which: npt.NDArray[np.bool_]) -> _Rows:
        return _Rows(self.alpha[which], self.beta[which], self.uu[which], self.plane[which])


@dataclass(frozen=True)
class _Fit:
    d2: Array  # squared aligned distances, rows x sample rows
    a: Array  # their gains
    b: Array  # and offsets


class AlignedSample:
    """The sample rows (scaled) of a profile, ready for aligned nearest-neighbour queries."""

    def __init__(
        self, sample: Array, offset: Array, alignment: Alignment, k: int, radius: float = 0.0
    ) -> None:
        """``radius``: a distance within which the ``k`` nearest of most inputs lie (the
        profile's calibrated k-NN threshold): the first candidates to align (0: none)."""
        self.sample = sample
        self.radius = radius * radius  # squared, as the distances
        self.k = min(k, len(sample))
        length = float(np.sqrt(offset @ offset))
        self.unit: Array = offset / (length or 1.0)
        self.length = length
        self.lengthd = length or 1.0  # the divisor
        self.low, self.high = 1.0 / alignment.gain, alignment.gain
        self.bound = alignment.bound
        self.along: Array = sample @ self.unit
        self.rest: Array = (sample * sample).sum(axis=1) - self.along * self.along

    def nearest(self, u: Array) -> Nearest:
        """The aligned k-NN distance of each scaled row ``u``, and its best alignment."""
        if len(u) == 1:
            found = self._one(u[0])
            if found is not None:
                return found
        rows, q = self._coordinates(u)
        floor = self.rest - q * q  # r^2 of each pair
        fit = self._pruned(rows, q, floor, prune=len(u) > 1)
        k = self.k
        nearest = fit.d2[:, :k].argmin(axis=1)  # the k least come first
        index = np.arange(len(u))
        distance: Array = np.sqrt(np.maximum(fit.d2[:, :k], 0.0)).sum(axis=1) / k
        return Nearest(distance, fit.a[index, nearest], fit.b[index, nearest])

    def all_pairs(self, u: Array) -> Array:
        """Squared aligned distances of each scaled row to every sample row."""
        rows, q = self._coordinates(u)
        return self._fit(rows, self.along, q, self.rest - q * q).d2

    # -- the parts -------------------------------------------------------------------------

    def _coordinates(self, u: Array) -> tuple[_Rows, Array]:
        alpha = u @ self.unit
        across = u - alpha[:, None] * self.unit
        beta = np.sqrt((across * across).sum(axis=1))
        w = across / np.maximum(beta, _TINY)[:, None]  # a zero ``across`` stays zero
        uu = alpha * alpha + beta * beta
        rows = _Rows(alpha[:, None], beta[:, None], uu[:, None], beta * beta > 1e-12 * uu)
        q: Array = w @ self.sample.T
        return rows, q

    def _one(self, u: Array) -> Nearest | None:
        """One row (a request's usual size), in scalars: the candidates in order of
        ``r^2``, aligned one by one until settled; None when they do not settle it."""
        m = CANDIDATES
        if len(self.rest) <= 2 * m:
            return None
        alpha = float(u @ self.unit)
        across = u - alpha * self.unit
        bb = float(across @ across)
        uu = alpha * alpha + bb
        if not bb > 1e-12 * uu:
            return None  # along the offset direction (or zero): the vectorised form
        beta = sqrt(bb)
        q = self.sample @ (across / beta)
        floor = self.rest - q * q
        found = self._settle(alpha, beta, uu, q, floor, floor)
        if found is None:
            # far rows: the bound with the gain and offset in their ranges, term by term
            reach = (self.low * alpha, self.high * alpha)
            shift = self.bound * self.length
            e1 = np.maximum(
                np.maximum(min(reach) - shift - self.along, 0.0), self.along - (max(reach) + shift)
            )
            e2 = np.maximum(np.maximum(self.low * beta - q, 0.0), q - self.high * beta)
            found = self._settle(alpha, beta, uu, q, floor, floor + e1 * e1 + e2 * e2)
        if found is None:
            return None
        values = np.array(found)  # distance, gain, offset: one array, three views
        return Nearest(values[0:1], values[1:2], values[2:3])

    def _settle(
        self, alpha: float, beta: float, uu: float, q: Array, floor: Array, bound: Array
    ) -> tuple[float, float, float] | None:
        """The k-NN distance of one row and its nearest alignment, aligning the sample
        rows in order of ``bound`` (at most their distance) until no other can be nearer."""
        m = CANDIDATES
        picked = (bound < self.radius).nonzero()[0] if self.radius else None
        if picked is not None and self.k <= len(picked) <= 4 * m:
            edge = self.radius  # the rows left out are at least this far
        else:
            part = np.argpartition(bound, m)
            picked = part[:m]
            edge = float(bound[part[m]])
        bounds = bound[picked]
        picked = picked[bounds.argsort()]
        low, high, limit = self.low, self.high, self.bound
        length, lengthd, k = self.length, self.lengthd, self.k
        best: list[tuple[float, float, float]] = []  # (d2, a, b): the k least so far
        worst = float("inf")
        floors = floor[picked].tolist()
        bounds = floors if bound is floor else bound[picked].tolist()
        qs, ps = q[picked].tolist(), self.along[picked].tolist()
        for least, f, qj, pj in zip(bounds, floors, qs, ps, strict=True):
            if least >= worst:
                break  # every row left is at least this far
            a = qj / beta
            a = low if a < low else high if a > high else a
            b = (pj - a * alpha) / lengthd
            b = -limit if b < -limit else limit if b > limit else b
            shifted = b * length
            a = (alpha * (pj - shifted) + beta * qj) / uu
            a = low if a < low else high if a > high else a
            e1 = a * alpha + shifted - pj
            e2 = a * beta - qj
            d2 = f + e1 * e1 + e2 * e2
            if d2 < worst or len(best) < k:
                best.append((d2, a, b))
                best.sort()
                del best[k:]
                if len(best) == k:
                    worst = best[-1][0]
        else:
            if worst > edge:
                return None  # a row left out may be nearer
        distance = sum(sqrt(d if d > 0.0 else 0.0) for d, _, _ in best) / k
        return distance, best[0][1], best[0][2]

    def _pruned(self, rows: _Rows, q: Array, floor: Array, *, prune: bool) -> _Fit:
        """Per row, the ``k`` nearest first, then other candidates (at least ``k``)."""
        m = max(4 * self.k, CANDIDATES)
        k = self.k
        index = np.arange(len(q))[:, None]
        if not prune or floor.shape[1] <= 2 * m:  # all pairs
            fit = self._fit(rows, self.along, q, floor)
            order = np.argpartition(fit.d2, k - 1, axis=1)
            return _Fit(fit.d2[index, order], fit.a[index, order], fit.b[index, order])
        part = np.argpartition(floor, m, axis=1)
        picked = part[:, :m]
        fit = self._fit(rows, self.along[picked], q[index, picked], floor[index, picked])
        order = np.argpartition(fit.d2, k - 1, axis=1)
        fit = _Fit(fit.d2[index, order], fit.a[index, order], fit.b[index, order])
        unsure = fit.d2[:, k - 1] > floor[index[:, 0], part[:, m]]
        if unsure.any():  # these rows get all pairs, their ``m`` nearest kept
            full = self._fit(rows.of(unsure), self.along, q[unsure], floor[unsure])
            order = np.argpartition(full.d2, k - 1, axis=1)[:, :m]
            mine = index[: len(order)]
            fit.d2[unsure] = full.d2[mine, order]
            fit.a[unsure] = full.a[mine, order]
            fit.b[unsure] = full.b[mine, order]
        return fit

    def _fit(self, rows: _Rows, p: Array, q: Array, floor: Array) -> _Fit:
        """The alignment of each row to sample rows of coordinates ``p, q`` (see the module
        docstring), vectorised; the same operations as :meth:`_one`."""
        low, high = self.low, self.high
        a = np.minimum(np.maximum(q / np.maximum(rows.beta, _TINY), low), high)
        if not rows.plane.all():  # along the offset direction: no least-squares gain
            a = np.where(rows.plane[:, None], a, min(max(1.0, low), high))
        b = np.minimum(np.maximum((p - a * rows.alpha) / self.lengthd, -self.bound), self.bound)
        shifted = b * self.length
        a = (rows.alpha * (p - shifted) + rows.beta * q) / np.maximum(rows.uu, _TINY)
        a = np.minimum(np.maximum(a, low), high)
        if not (rows.uu > 0).all():  # a zero row: any gain does; say 1
            a = np.where(rows.uu > 0, a, 1.0)
        e1 = a * rows.alpha + shifted - p
        e2 = a * rows.beta - q
        return _Fit(floor + e1 * e1 + e2 * e2, a, b)


def mean_k(d2: Array, k: int, skip: int = 0) -> Array:
    """Mean of the ``k`` smallest distances per row (squared in ``d2``), after the
    ``skip`` smallest."""
    k = min(k, d2.shape[1] - skip)
    part = np.partition(d2, k + skip - 1, axis=1)[:, : k + skip]
    if skip:
        part = np.sort(part, axis=1)[:, skip:]
    result: Array = np.sqrt(np.maximum(part, 0.0)).sum(axis=1) / k  # = mean, less overhead
    return result
