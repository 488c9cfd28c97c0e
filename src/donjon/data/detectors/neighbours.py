"""Injected duplicates / near-duplicates, and outliers, from nearest-neighbour distances.

Both compare each record's distance to its nearest neighbour with the data set's own
distribution of those distances, on a log scale with robust statistics (median and MAD),
so the thresholds come from the data and not from an assumed poison rate:

- a **near-duplicate** is a record whose nearest-neighbour distance is below the data's
  typical distance by more than the Bonferroni-corrected Gaussian bound (or is zero: an
  exact copy). Records joined by such distances form groups; the group's medoid (the
  record the copies were most likely made from; the earliest on ties) is kept as the
  original and the others are flagged;
- an **outlier** is a record whose mean distance to its nearest neighbours is above the
  typical one by more than that bound.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from donjon.data import rules
from donjon.data.detectors.base import (
    DetectorResult,
    LabelledData,
    RecordFlag,
    bonferroni_z,
    robust_z,
)

DUPLICATES, OUTLIERS = "near_duplicates", "outliers"
NEIGHBOURS = 5
ALPHA = 0.01


def _distances(data: LabelledData) -> tuple[np.ndarray, np.ndarray]:
    scaled = StandardScaler().fit_transform(data.X)
    k = min(NEIGHBOURS + 1, data.n)
    distances, found = NearestNeighbors(n_neighbors=k).fit(scaled).kneighbors(scaled)
    return distances[:, 1:], found[:, 1:]


def detect_near_duplicates(data: LabelledData) -> DetectorResult:
    if data.n < 10:
        return DetectorResult(DUPLICATES, rules.NEAR_DUPLICATES, error="needs 10 records or more")
    distances, found = _distances(data)
    nearest = distances[:, 0]
    if float(np.median(nearest)) == 0.0:
        # most records have an exact twin: duplicates are this data set's nature, not an attack
        summary = {"groups": 0, "skipped": "most records have an exact duplicate"}
        return DetectorResult(DUPLICATES, rules.NEAR_DUPLICATES, summary=summary)
    positive = nearest[nearest > 0]
    floor = float(positive.min()) if len(positive) else 1.0
    logs = np.log(np.maximum(nearest, floor * 1e-3))
    z = robust_z(logs)
    bound = -bonferroni_z(data.n, ALPHA)
    close = (distances <= np.exp(np.median(logs) + bound * _spread(logs))) | (distances == 0)
    rows, cols = np.nonzero(close)
    pairs = found[rows, cols]
    graph = coo_matrix((np.ones(len(rows)), (rows, pairs)), shape=(data.n, data.n))
    _, component = connected_components(graph, directed=False)
    flags: list[RecordFlag] = []
    groups = 0
    members_of: dict[int, list[int]] = {}
    for row in np.unique(np.concatenate([rows, pairs])) if len(rows) else []:
        members_of.setdefault(int(component[row]), []).append(int(row))
    scaled = StandardScaler().fit_transform(data.X)
    for members in members_of.values():
        members.sort()
        groups += 1
        original = _original(scaled, members)
        for row in (m for m in members if m != original):
            flags.append(
                RecordFlag(
                    row,
                    DUPLICATES,
                    rules.NEAR_DUPLICATES,
                    float(min(1.0, abs(z[row]) / (2 * abs(bound)))) if nearest[row] > 0 else 1.0,
                    f"near-duplicate of record {original} (group of {len(members)}; distance "
                    f"{nearest[row]:.3g}, typical {np.exp(np.median(logs)):.3g})",
                    {"original": original, "group_size": len(members)},
                )
            )
    summary = {"groups": groups, "typical_distance": float(np.exp(np.median(logs)))}
    return DetectorResult(DUPLICATES, rules.NEAR_DUPLICATES, tuple(flags), summary)


def _original(scaled: np.ndarray, members: list[int]) -> int:
    """The group's medoid: copies made from one record are each closer to it than to each
    other; ties go to the earliest record."""
    points = scaled[members]
    total = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)).sum(axis=1)
    return members[int(np.argmin(total))]


def _spread(values: np.ndarray) -> float:
    center = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - center)))
    return spread if spread > 0 else 1.2533 * float(np.mean(np.abs(values - center)))


def detect_outliers(data: LabelledData) -> DetectorResult:
    if data.n < 10:
        return DetectorResult(OUTLIERS, rules.OUTLIERS, error="needs 10 records or more")
    distances, _ = _distances(data)
    spread = np.log(np.maximum(distances.mean(axis=1), 1e-12))
    z = robust_z(spread)
    bound = bonferroni_z(data.n, ALPHA)
    flags = tuple(
        RecordFlag(
            int(row),
            OUTLIERS,
            rules.OUTLIERS,
            float(min(1.0, z[row] / (2 * bound))),
            f"far from every other record (robust z {z[row]:.1f} > {bound:.1f})",
            {"z": round(float(z[row]), 2)},
        )
        for row in np.flatnonzero(z > bound)
    )
    return DetectorResult(OUTLIERS, rules.OUTLIERS, flags, {"bound": round(bound, 2)})
