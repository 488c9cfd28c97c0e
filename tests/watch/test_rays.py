"""Random rays to a decision boundary: shared directions and the flat-boundary estimate."""

from __future__ import annotations

import numpy as np

from donjon.watch.rays import HIGH, boundary_estimate, directions, ray_distances


def test_the_rays_are_the_same_for_the_same_rows_whatever_their_count() -> None:
    few, more = directions("sha256:aa", 3, 3, 16), directions("sha256:aa", 3, 8, 16)
    assert np.array_equal(few, more[:, :3])  # a version given more rays keeps the first ones
    assert np.allclose(np.linalg.norm(more, axis=2), 1.0)
    assert np.allclose(more[:, 0], -more[:, 1])  # opposite pairs
    assert not np.allclose(directions("sha256:bb", 3, 3, 16), few)  # other rows, other rays


def test_the_estimate_finds_a_flat_boundary_and_the_crossings_bound_it() -> None:
    """A half-space in 32 dimensions: 400 rows at known distances; the estimate is right
    on average (in log) and every crossing found is at least the true distance."""
    rng = np.random.default_rng(0)
    width, normal = 32, np.eye(32)[0]
    rows = rng.normal(0.0, 1.0, (400, width)) + 4.0
    rows[:, 0] = rng.uniform(0.2, 2.0, 400)  # distance to the plane x0 = 0
    queries = []

    def label(points: np.ndarray) -> np.ndarray:
        queries.append(len(points))
        return (points @ normal > 0).astype(int)

    rays = directions("sha256:cc", len(rows), 8, width)
    found = ray_distances(label, rows, label(rows), rays)
    truth = rows[:, 0] / np.linalg.norm(rows, axis=1)
    estimate = boundary_estimate(found, width)
    assert abs(np.median(np.log(estimate / truth))) < 0.1
    assert np.all(np.nanmin(found, axis=1) >= truth * (1 - 1e-9))
    met = np.isfinite(found).reshape(len(rows), 4, 2)
    assert not np.any(met.all(axis=2))  # a half-space: never both rays of an opposite pair
    censored = int((~np.isfinite(found)).sum())
    assert sum(queries[1:]) == 6 * found.size - 5 * censored  # a censored ray: one query
    assert np.all(found[np.isfinite(found)] <= HIGH)
