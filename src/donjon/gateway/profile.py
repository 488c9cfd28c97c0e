"""Reference profile of the training data: feature statistics and a sample for distances.

The profile is plain JSON (``donjon gateway profile DATA -o profile.json``). It
holds, per feature, mean / std / min / max and a robust scale (the std, floored at
the median std so constant features do not explode distances); the value grid of
the data when it is quantised (integers, multiples of 1/255); a sample of rows in
scaled space; and calibrated distance quantiles:

* ``knn``: the mean distance of a held-out reference row to its ``k`` nearest
  sample rows. The per-input OOD threshold is its ``ood_quantile`` (0.99): by
  construction about 1 % of natural inputs exceed it.
* ``nn``: the distance of a held-out row to its nearest sample row. Its low
  quantiles say what "near-identical" means for natural data.
* ``range_rates``: ``range_rates[m-1]`` is the fraction of held-out rows with at least
  ``m`` features outside the ``[min, max]`` of the other rows (m = 1..8): how often a
  natural input leaves the observed range of the training data on m features. Absent
  from older profiles (the range test is then off).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.errors import InputError

FORMAT = "donjon.gateway.profile/v1"
Array = npt.NDArray[np.float64]
QUANTILES = (0.001, 0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995, 0.999)


@dataclass(frozen=True)
class ReferenceProfile:
    features: int
    count: int
    mean: Array
    std: Array
    low: Array
    high: Array
    scale: Array
    quantum: float | None
    sample: Array  # scaled rows
    knn_k: int
    knn_quantiles: dict[float, float]
    nn_quantiles: dict[float, float]
    range_rates: tuple[float, ...] = ()

    # -- distances -----------------------------------------------------------

    @cached_property
    def _sample_norms(self) -> Array:
        """Squared norms of the sample rows, computed once (not on every request)."""
        norms: Array = (self.sample * self.sample).sum(axis=1)
        return norms

    def scaled(self, rows: Array) -> Array:
        return np.asarray(rows, dtype=np.float64) / self.scale

    def knn_distance(self, scaled_rows: Array) -> Array:
        """Mean distance of each scaled row to its ``knn_k`` nearest sample rows."""
        d2 = _sq_distances(scaled_rows, self.sample, self._sample_norms)
        k = min(self.knn_k, self.sample.shape[0])
        part = np.partition(d2, k - 1, axis=1)[:, :k]
        result: Array = np.sqrt(np.maximum(part, 0.0)).sum(axis=1) / k  # = mean, less overhead
        return result

    def knn_threshold(self, quantile: float = 0.99) -> float:
        return _lookup(self.knn_quantiles, quantile)

    def nn_quantile(self, quantile: float) -> float:
        return _lookup(self.nn_quantiles, quantile)

    def outside(self, rows: Array) -> npt.NDArray[np.int64]:
        """Per row, how many features lie outside the training data's ``[min, max]``."""
        rows = np.asarray(rows, dtype=np.float64)
        result: npt.NDArray[np.int64] = ((rows < self.low) | (rows > self.high)).sum(axis=1)
        return result

    def range_limit(self, rate: float) -> int | None:
        """The least feature count ``m`` whose natural exceedance rate is at most ``rate``."""
        return next((m for m, r in enumerate(self.range_rates, 1) if r <= rate), None)

    def off_grid(self, rows: Array) -> npt.NDArray[np.bool_]:
        """True for rows with a value off the data's value grid (when it has one)."""
        if self.quantum is None:
            return np.zeros(len(rows), dtype=bool)
        steps = np.asarray(rows, dtype=np.float64) / self.quantum
        result: npt.NDArray[np.bool_] = np.asarray(
            (np.abs(steps - np.rint(steps)) > 1e-6).any(axis=1), dtype=bool
        )
        return result

    # -- JSON --------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": self.features,
            "count": self.count,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "min": self.low.tolist(),
            "max": self.high.tolist(),
            "scale": self.scale.tolist(),
            "quantum": self.quantum,
            "knn_k": self.knn_k,
            "knn_quantiles": {str(q): v for q, v in self.knn_quantiles.items()},
            "nn_quantiles": {str(q): v for q, v in self.nn_quantiles.items()},
            "range_rates": list(self.range_rates),
            "sample": np.round(self.sample, 6).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        try:
            if data.get("format") != FORMAT:
                raise InputError(f"not a Donjon gateway profile (format {data.get('format')!r})")
            features = int(data["features"])
            vectors = {
                k: np.asarray(data[k], dtype=np.float64) for k in ("mean", "std", "min", "max")
            }
            scale = np.asarray(data["scale"], dtype=np.float64)
            sample = np.asarray(data["sample"], dtype=np.float64)
            if any(v.shape != (features,) for v in (*vectors.values(), scale)):
                raise InputError("profile vectors do not match its feature count")
            if sample.ndim != 2 or sample.shape[1] != features or len(sample) == 0:
                raise InputError("profile sample must be a non-empty rows x features table")
            if not (scale > 0).all():
                raise InputError("profile scale must be positive")
            quantum = data.get("quantum")
            return cls(
                features=features,
                count=int(data["count"]),
                mean=vectors["mean"],
                std=vectors["std"],
                low=vectors["min"],
                high=vectors["max"],
                scale=scale,
                quantum=float(quantum) if quantum is not None else None,
                sample=sample,
                knn_k=int(data["knn_k"]),
                knn_quantiles={float(q): float(v) for q, v in data["knn_quantiles"].items()},
                nn_quantiles={float(q): float(v) for q, v in data["nn_quantiles"].items()},
                range_rates=tuple(float(v) for v in data.get("range_rates", ())),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed gateway profile: {e}") from e

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read profile {path}: {e}") from e
        if not isinstance(data, dict):
            raise InputError(f"{path} is not a gateway profile")
        return cls.from_dict(data)


def build_profile(
    rows: Sequence[Sequence[float]] | Array,
    *,
    sample_size: int = 2000,
    holdout: float = 0.2,
    knn_k: int = 3,
    seed: int = 0,
) -> ReferenceProfile:
    """Build a profile from training rows (at least 20, all finite numbers)."""
    data = np.asarray(rows, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] < 20 or data.shape[1] < 1:
        raise InputError("a profile needs a table of at least 20 rows of numbers")
    if not np.isfinite(data).all():
        raise InputError("the profile data holds NaN or infinite values")
    std = data.std(axis=0)
    floor = float(np.median(std))
    if floor <= 0:
        floor = float(std[std > 0].min()) if (std > 0).any() else 1.0
    scale = np.maximum(std, floor)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    n_hold = max(10, int(len(data) * holdout))
    held, kept = data[order[:n_hold]], data[order[n_hold:]]
    outside = ((held < kept.min(axis=0)) | (held > kept.max(axis=0))).sum(axis=1)
    range_rates = tuple(float((outside >= m).mean()) for m in range(1, 9))
    if len(kept) > sample_size:
        kept = kept[rng.choice(len(kept), sample_size, replace=False)]
    sample = kept / scale
    d2 = _sq_distances(held / scale, sample)
    k = min(knn_k, len(sample))
    nearest = np.sqrt(np.maximum(np.partition(d2, k - 1, axis=1)[:, :k], 0.0))
    nearest.sort(axis=1)
    knn = nearest.mean(axis=1)
    nn = nearest[:, 0]
    return ReferenceProfile(
        features=data.shape[1],
        count=len(data),
        mean=data.mean(axis=0),
        std=std,
        low=data.min(axis=0),
        high=data.max(axis=0),
        scale=scale,
        quantum=_quantum(data),
        sample=sample,
        knn_k=k,
        knn_quantiles={q: float(np.quantile(knn, q)) for q in QUANTILES},
        nn_quantiles={q: float(np.quantile(nn, q)) for q in QUANTILES},
        range_rates=range_rates,
    )


def _quantum(data: Array) -> float | None:
    for quantum in (1.0, 1.0 / 255.0):
        steps = data / quantum
        if (np.abs(steps - np.rint(steps)) <= 1e-6).all():
            return quantum
    return None


def _sq_distances(a: Array, b: Array, b_norms: Array | None = None) -> Array:
    if b_norms is None:
        b_norms = (b * b).sum(axis=1)
    result: Array = (a * a).sum(axis=1)[:, None] + b_norms[None, :] - 2.0 * (a @ b.T)
    return result


def _lookup(table: dict[float, float], quantile: float) -> float:
    if quantile in table:
        return table[quantile]
    keys = sorted(table)
    return float(np.interp(quantile, keys, [table[k] for k in keys]))
