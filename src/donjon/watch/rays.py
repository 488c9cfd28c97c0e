"""A row's distance to a model's decision boundary, estimated along random rays shared by versions.

From each probe row, rays in random directions; along each, one query at ``HIGH``
times the row's norm, then, when the label changed there, a bisection in log
radius (all rays of all rows in one batch a step) finds where it first changes
after ``LOW`` times the norm, to ``(log HIGH - log LOW) / 2**(steps - 1)`` (16 %
with the defaults: far finer than the rays differ from each other). A ray that
keeps the label up to ``HIGH`` is censored, for one query.

Where the boundary is locally flat at distance ``d`` with normal ``n``, a ray of
unit direction ``u`` meets it at ``t = d / (n . u)`` when ``n . u > 0`` and not
at all otherwise; for ``u`` uniform on the sphere of dimension ``D``,
``E[(n . u)_+ ** 2] = 1 / (2 D)``. So ``1 / sqrt(2 D mean(1 / t ** 2))``, censored
rays counting 0, estimates ``d`` (:func:`boundary_estimate`): the distance an
attacker who knew the boundary would need, from a few queries, in every
direction at once (random rays see features the data never varies, where a
model trained without noise augmentation or regularisation keeps large weights
and a gradient estimate from a few dozen queries does not look). The shortest
ray that met the boundary is an adversarial example found: an upper bound.

The directions are drawn from the probe rows' digest and each row's index, not
from the probe's seed: every version probed on the same rows is measured along
the same rays, so a row's ratio between versions cancels most of what the
random directions add (a paired design with common random numbers). They come
in opposite pairs, so a flat boundary is met by one ray of each pair (a binary
model leaves no row without a crossing); the first ``k`` directions of a row
are the same whatever ``count`` is.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np

from donjon.watch.ports import Rows

LOW = 2.0**-5  # of the row's norm: the nearest crossing the bisection resolves
HIGH = 4.0  # of the row's norm: farther, a ray is censored (a change that size is no attack)
STEPS = 6  # queries a ray: one at HIGH, then bisection in log radius to 7 octaves / 32 (16 %)

Labeller = Callable[[Rows], np.ndarray]  # rows -> class indices, queries counted


def directions(digest: str, rows: int, count: int, width: int) -> Rows:
    """``rows x count x width`` unit directions, a function of ``digest`` and the row index,
    in opposite pairs (``u``, ``-u``)."""
    seed = int.from_bytes(hashlib.sha256(digest.encode()).digest()[:8], "big")
    out = np.empty((rows, count, width))
    for i in range(rows):
        drawn = np.random.default_rng([seed, i]).standard_normal(((count + 1) // 2, width))
        out[i] = np.stack([drawn, -drawn], axis=1).reshape(-1, width)[:count]
    norms = np.linalg.norm(out, axis=2, keepdims=True)
    unit: Rows = out / np.where(norms > 0, norms, 1.0)
    return unit


def ray_distances(
    label: Labeller, rows: Rows, labels: np.ndarray, rays: Rows, steps: int = STEPS
) -> Rows:
    """``rows x count`` relative distances to the first label change along each ray (inf:
    none up to ``HIGH``); ``rays``: as :func:`directions` returns, ``labels``: the rows'.

    At most ``steps`` queries a ray: the first at ``HIGH`` (a ray whose label holds there
    is censored and costs no more), then a bisection in log radius between ``LOW`` and
    ``HIGH``, every ray of every row in one batch a step."""
    count = rays.shape[1]
    scale = np.linalg.norm(rows, axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    start = np.repeat(rows, count, axis=0)
    step = rays.reshape(-1, rows.shape[1]) * np.repeat(scale, count)[:, None]
    own = np.repeat(labels, count)
    crossed = label(start + HIGH * step) != own
    low = np.full(len(start), math.log(LOW))
    high = np.full(len(start), math.log(HIGH))
    live = np.flatnonzero(crossed)
    for _ in range(steps - 1):
        middle = (low[live] + high[live]) / 2
        same = label(start[live] + np.exp(middle)[:, None] * step[live]) == own[live]
        low[live] = np.where(same, middle, low[live])
        high[live] = np.where(same, high[live], middle)
    found: Rows = np.where(crossed, np.exp(high), math.inf).reshape(len(rows), count)
    return found


def boundary_estimate(distances: Rows, width: int, steps: int = STEPS) -> Rows:
    """Per row, the distance to a flat boundary that would give these ray distances
    (inf when no ray met it; NaN: a ray not measured); ``width``: the rows' dimension.
    A crossing is taken at the middle (in log) of the bracket the bisection left."""
    middle = math.exp(-(math.log(HIGH) - math.log(LOW)) / 2**steps)
    inverse = np.where(np.isfinite(distances), 1.0 / (middle * distances), 0.0)
    inverse = np.where(np.isnan(distances), np.nan, inverse)
    mean_square = np.nanmean(inverse**2, axis=1)
    with np.errstate(divide="ignore"):
        estimate: Rows = 1.0 / np.sqrt(2.0 * width * mean_square)
    return estimate
