"""The aligned k-NN distance: the pruned search gives the distances of all pairs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from donjon.gateway import build_profile
from donjon.gateway.alignment import CANDIDATES, AlignedSample, mean_k
from donjon.gateway.profile import ReferenceProfile

REFERENCE_ROWS = 3  # of the 12 of each kind (zero and constant are one row each)


def reference(profile: ReferenceProfile, u: np.ndarray) -> tuple[float, float, float]:
    """One scaled row, pair by pair in the feature space: the clipped least-squares gain,
    the offset given it, the gain again; the mean of the k least distances, and the
    gain and offset of the nearest."""
    align = profile.alignment
    v = align.offset / profile.scale
    low, high = 1 / align.gain, align.gain
    found = []
    for s in profile.sample:
        design = np.stack([u, v], axis=1)
        solved = np.linalg.lstsq(design, s, rcond=None)[0]
        a = 1.0 if np.linalg.matrix_rank(design) < 2 else float(np.clip(solved[0], low, high))
        b = float(np.clip((v @ s - a * (u @ v)) / (v @ v), -align.bound, align.bound))
        if u @ u > 0:
            a = float(np.clip((u @ s - b * (u @ v)) / (u @ u), low, high))
        found.append((float(np.sum((a * u + b * v - s) ** 2)), a, b))
    found.sort()
    k = profile.knn_k
    return sum(np.sqrt(max(d, 0.0)) for d, _, _ in found[:k]) / k, found[0][1], found[0][2]


def inputs(data: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    rows = data[rng.choice(len(data), 12, replace=False)]
    spread = data.std(axis=0) + 1e-9
    return {
        "natural": rows,
        "noisy": rows + rng.normal(size=rows.shape) * spread * 0.3,
        "brighter": rows * 1.2 + spread.mean(),
        "uniform": rng.uniform(data.min(axis=0), data.max(axis=0), rows.shape),
        "far": rows * 6 - 3 * spread,
        "zero": np.zeros((1, data.shape[1])),
        "constant": np.full((1, data.shape[1]), float(np.median(data))),
    }


def pixels(rng: np.random.Generator) -> np.ndarray:
    """Blobs on an 8x8 image, integer intensities 0..16 (one shared unit)."""
    grid = np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(-1, 2)
    centres = rng.uniform(1, 6, (900, 1, 2))
    blobs = 16 * np.exp(-((grid[None] - centres) ** 2).sum(-1) / rng.uniform(2, 6, (900, 1)))
    return np.rint(blobs)


def table(rng: np.random.Generator) -> np.ndarray:
    """Correlated features of unrelated units (per-feature offsets)."""
    latent = rng.normal(size=(900, 3))
    mix = rng.normal(size=(3, 10))
    return (latent @ mix + rng.normal(size=(900, 10)) * 0.3) * rng.uniform(0.1, 50, 10)


@pytest.mark.parametrize("make", [pixels, table])
def test_the_pruned_search_finds_the_distances_of_all_pairs(
    make: Callable[[np.random.Generator], np.ndarray],
) -> None:
    rng = np.random.default_rng(0)
    data = make(rng)
    profile = build_profile(data, sample_size=400)
    assert profile.alignment.active
    assert len(profile.sample) > 2 * CANDIDATES  # the pruned search, not all pairs
    # The pair-by-pair reference costs ~0.2 s a row: it checks REFERENCE_ROWS rows of each
    # kind, drawn with a fixed seed; every row's one-row and batch searches must agree.
    pick = np.random.default_rng(1)
    for name, rows in inputs(data, rng).items():
        u = profile.scaled(rows)
        batch = profile.nearest(u)
        checked = pick.choice(len(u), min(REFERENCE_ROWS, len(u)), replace=False)
        for i, row in enumerate(u):
            one = profile.nearest(row[None, :])
            assert one.distance[0] == pytest.approx(batch.distance[i], rel=1e-9, abs=1e-6), name
            assert one.gain[0] == pytest.approx(batch.gain[i], rel=1e-9, abs=1e-9), name
            assert one.offset[0] == pytest.approx(batch.offset[i], rel=1e-9, abs=1e-9), name
            if i not in checked:
                continue
            distance, gain, offset = reference(profile, row)
            assert one.distance[0] == pytest.approx(distance, rel=1e-9, abs=1e-6), name
            assert one.gain[0] == pytest.approx(gain, rel=1e-9, abs=1e-9), name
            assert one.offset[0] == pytest.approx(offset, rel=1e-9, abs=1e-9), name


def test_all_pairs_is_the_statistic_the_profile_is_calibrated_on() -> None:
    rng = np.random.default_rng(1)
    data = table(rng)
    profile = build_profile(data, sample_size=300)
    u = profile.scaled(data[:40])
    aligned = AlignedSample(
        profile.sample,
        profile.alignment.offset / profile.scale,
        profile.alignment,
        profile.knn_k,
    )
    assert np.allclose(
        mean_k(aligned.all_pairs(u), profile.knn_k), profile.knn_distance(u), rtol=1e-9
    )
