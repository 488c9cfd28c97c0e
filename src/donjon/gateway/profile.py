"""Reference profile of the training data: feature statistics and a sample for distances.

The profile is plain JSON (``donjon gateway profile DATA -o profile.json``). It
holds, per feature, mean / std / min / max and a robust scale (the std, floored at
the median std so constant features do not explode distances); the value grid of
each feature (:mod:`.grids`: any uniform step, or none); the bounds of the benign
*alignment* (below); a sample of rows in scaled space; and calibrated distance
quantiles:

* ``knn``: the mean distance of a held-out reference row (or of a sample row, to
  the other sample rows) to its ``k`` nearest
  sample rows, each after the best alignment ``a * x + b * offset`` of the row to
  that sample row, with a gain ``a`` within ``1/gain .. gain`` (1.5) and an offset
  ``b`` within ``offset_bound``. The offset is a common raw value when the
  features share a unit (all values within 10 times the median feature's range:
  pixels, a brightness shift) and the same fraction of each feature's spread otherwise
  (a table). A camera a little brighter, a contrast or unit change, a slow drift
  of either are then no farther from the data than the unchanged input; what
  remains is the shape of the input. The per-input OOD threshold is its
  ``ood_quantile`` (0.99): by construction about 1 % of natural inputs exceed it.
* ``nn``: the distance of a held-out row to its nearest sample row. Its low
  quantiles say what "near-identical" means for natural data.
* ``range_rates``: ``range_rates[m-1]`` is the fraction of held-out rows with at least
  ``m`` features outside the ``[min, max]`` of the other rows (m = 1..8): how often a
  natural input leaves the observed range of the training data on m features. Absent
  from older profiles (the range test is then off).
* ``background`` and ``split_rates``: the features whose most common value holds at
  least half of the rows, and how often a held-out row has ``m`` of them in its second
  largest group of equal values (:mod:`.splits`): the split test. Absent from older
  profiles (the test is then off).
* ``consistency`` (format v2, profiles built with the training labels): per class the
  mean of the rows and a shared covariance, and the calibrated quantiles of the
  answer-consistency score (:mod:`.consistency`): is an answered input typical of the
  class the model gave it? Absent from v1 profiles, from profiles built without
  labels and from data with background features (the split test's; the test is then
  off).
* ``spacing``: how far a held-out row is from the nearest of ``n`` random sample rows,
  per ``n`` (:mod:`.spacing`): the null model of the scatter test. Absent from older
  profiles (the scatter test is then off).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.errors import InputError
from donjon.gateway.alignment import AlignedSample, Alignment, Nearest, mean_k
from donjon.gateway.consistency import ConsistencyModel, class_names, learn_consistency
from donjon.gateway.grids import GridCheck, common_step, learn_grids
from donjon.gateway.spacing import Spacing, calibrate_spacing
from donjon.gateway.splits import SplitCheck, learn_background, split_rates

FORMAT = "donjon.gateway.profile/v2"
READABLE = ("donjon.gateway.profile/v1", FORMAT)  # v1: before the consistency model
Array = npt.NDArray[np.float64]
QUANTILES = (0.001, 0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.995, 0.999)
GAIN = 1.5  # benign alignment: gains within 1/1.5 .. 1.5
OFFSET = 0.25  # and offsets within a quarter of the typical range (or spread)


@dataclass(frozen=True)
class ReferenceProfile:
    features: int
    count: int
    mean: Array
    std: Array
    low: Array
    high: Array
    scale: Array
    grid_step: Array  # per feature; NaN: no grid
    grid_origin: Array
    sample: Array  # scaled rows
    knn_k: int
    knn_quantiles: dict[float, float]
    nn_quantiles: dict[float, float]
    range_rates: tuple[float, ...] = ()
    alignment: Alignment = field(default_factory=Alignment)
    spacing: Spacing | None = None
    background: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    split_rates: tuple[float, ...] = ()
    consistency: ConsistencyModel | None = None

    @property
    def quantum(self) -> float | None:
        """The one value step of every feature, if they share one."""
        return common_step(self.grid_step)

    # -- distances -----------------------------------------------------------

    @cached_property
    def _sample_norms(self) -> Array:
        """Squared norms of the sample rows, computed once (not on every request)."""
        norms: Array = (self.sample * self.sample).sum(axis=1)
        return norms

    @cached_property
    def _aligned(self) -> AlignedSample:
        offset = self.alignment.offset / self.scale
        radius = self.knn_threshold(0.99) if self.knn_quantiles else 0.0
        return AlignedSample(self.sample, offset, self.alignment, self.knn_k, radius)

    def scaled(self, rows: Array) -> Array:
        return np.asarray(rows, dtype=np.float64) / self.scale

    def knn_distance(self, scaled_rows: Array) -> Array:
        """Mean distance of each scaled row to its ``knn_k`` nearest sample rows
        (each after the best benign alignment of the row to that sample row)."""
        return self.aligned(scaled_rows)[0]

    def aligned(self, scaled_rows: Array) -> tuple[Array, Array]:
        """The k-NN distance of each scaled row and the row aligned to its nearest sample
        row, in raw units (the row itself when no alignment is allowed)."""
        found = self.nearest(scaled_rows)
        return found.distance, self.realigned(scaled_rows, found)

    def nearest(self, scaled_rows: Array) -> Nearest:
        """The k-NN distance of each scaled row and its alignment to its nearest sample row
        (gain 1, offset 0 when no alignment is allowed)."""
        u = np.asarray(scaled_rows, dtype=np.float64)
        if self.alignment.active:
            return self._aligned.nearest(u)
        d2 = _sq_distances(u, self.sample, self._sample_norms)
        return Nearest(mean_k(d2, self.knn_k), np.ones(len(u)), np.zeros(len(u)))

    def realigned(self, scaled_rows: Array, found: Nearest) -> Array:
        """The rows in raw units after their alignment ``found``."""
        raw: Array = np.asarray(scaled_rows, dtype=np.float64) * self.scale
        if not self.alignment.active:
            return raw
        return raw * found.gain[:, None] + found.offset[:, None] * self.alignment.offset

    def self_knn(self) -> Array:
        """The k-NN statistic of each sample row against the other sample rows."""
        if self.alignment.active:
            d2 = self._aligned.all_pairs(self.sample)
        else:
            d2 = _sq_distances(self.sample, self.sample, self._sample_norms)
        return mean_k(d2, self.knn_k, skip=1)

    def knn_threshold(self, quantile: float = 0.99) -> float:
        return _lookup(self.knn_quantiles, quantile)

    def nn_quantile(self, quantile: float) -> float:
        return _lookup(self.nn_quantiles, quantile)

    def outside(self, rows: Array, margin: float = 0.0) -> npt.NDArray[np.int64]:
        """Per row, how many features lie outside the training data's ``[min, max]``
        widened by ``margin`` times the feature's scale."""
        rows = np.asarray(rows, dtype=np.float64)
        pad = margin * self.scale
        result: npt.NDArray[np.int64] = ((rows < self.low - pad) | (rows > self.high + pad)).sum(
            axis=1
        )
        return result

    def range_limit(self, rate: float) -> int | None:
        """The least feature count ``m`` whose natural exceedance rate is at most ``rate``."""
        return next((m for m, r in enumerate(self.range_rates, 1) if r <= rate), None)

    def split_limit(self, rate: float) -> int | None:
        """The least second-group size ``m`` whose natural rate is at most ``rate``."""
        return next((m for m, r in enumerate(self.split_rates, 1) if r <= rate), None)

    @cached_property
    def splits(self) -> SplitCheck:
        """The split test's statistic (:mod:`.splits`) for this profile."""
        return SplitCheck(self.background, float(np.median(self.scale)))

    def off_grid(self, rows: Array) -> npt.NDArray[np.bool_]:
        """True for rows with a value off its feature's value grid (features with one)."""
        return self._grids(np.asarray(rows, dtype=np.float64))

    @cached_property
    def _grids(self) -> GridCheck:
        return GridCheck(self.grid_step, self.grid_origin)

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
            "grid": {
                "step": [None if np.isnan(v) else float(v) for v in self.grid_step],
                "origin": self.grid_origin.tolist(),
            },
            "alignment": {
                "gain": self.alignment.gain,
                "offset": self.alignment.offset.tolist(),
                "bound": self.alignment.bound,
            },
            "knn_k": self.knn_k,
            "knn_quantiles": {str(q): v for q, v in self.knn_quantiles.items()},
            "nn_quantiles": {str(q): v for q, v in self.nn_quantiles.items()},
            "range_rates": list(self.range_rates),
            "spacing": None if self.spacing is None else self.spacing.to_dict(),
            "background": self.background.tolist(),
            "split_rates": list(self.split_rates),
            "consistency": None if self.consistency is None else self.consistency.to_dict(),
            "sample": np.round(self.sample, 6).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        try:
            if data.get("format") not in READABLE:
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
            step, origin = _grid_of(data, features)
            return cls(
                features=features,
                count=int(data["count"]),
                mean=vectors["mean"],
                std=vectors["std"],
                low=vectors["min"],
                high=vectors["max"],
                scale=scale,
                grid_step=step,
                grid_origin=origin,
                sample=sample,
                knn_k=int(data["knn_k"]),
                knn_quantiles={float(q): float(v) for q, v in data["knn_quantiles"].items()},
                nn_quantiles={float(q): float(v) for q, v in data["nn_quantiles"].items()},
                range_rates=tuple(float(v) for v in data.get("range_rates", ())),
                alignment=_alignment_of(data, features),
                spacing=Spacing.from_dict(data["spacing"]) if data.get("spacing") else None,
                background=_background_of(data, features),
                split_rates=tuple(float(v) for v in data.get("split_rates", ())),
                consistency=(
                    ConsistencyModel.from_dict(data["consistency"], features)
                    if data.get("consistency")
                    else None
                ),
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


def _grid_of(data: dict[str, Any], features: int) -> tuple[Array, Array]:
    grid = data.get("grid")
    if grid is None:  # profiles before per-feature grids: one ``quantum`` for all
        quantum = data.get("quantum")
        step = np.full(features, np.nan if quantum is None else float(quantum))
        return step, np.zeros(features)
    step = np.asarray([np.nan if v is None else float(v) for v in grid["step"]])
    origin = np.asarray(grid["origin"], dtype=np.float64)
    if step.shape != (features,) or origin.shape != (features,):
        raise InputError("profile grid does not match its feature count")
    if (step[~np.isnan(step)] <= 0).any():
        raise InputError("profile grid steps must be positive")
    return step, origin


def _background_of(data: dict[str, Any], features: int) -> npt.NDArray[np.int64]:
    found = np.asarray(data.get("background", []), dtype=np.int64)
    if found.ndim != 1 or ((found < 0) | (found >= features)).any():
        raise InputError("profile background features are malformed")
    return found


def _alignment_of(data: dict[str, Any], features: int) -> Alignment:
    raw = data.get("alignment")
    if raw is None:  # older profiles: distances without alignment, as they were calibrated
        return Alignment(1.0, np.zeros(features), 0.0)
    offset = np.asarray(raw["offset"], dtype=np.float64)
    gain, bound = float(raw["gain"]), float(raw["bound"])
    if offset.shape != (features,) or gain < 1.0 or bound < 0:
        raise InputError("profile alignment is malformed")
    return Alignment(gain, offset, bound)


def benign_alignment(data: Array, scale: Array) -> Alignment:
    """The offset direction and bounds for ``data`` (see the module docstring)."""
    low, high = data.min(axis=0), data.max(axis=0)
    spans = high - low
    typical = float(np.median(spans))
    if typical > 0 and float(high.max() - low.min()) <= 10.0 * typical:
        return Alignment(GAIN, np.ones(data.shape[1]), OFFSET * typical)  # a shared unit
    return Alignment(GAIN, scale.copy(), 2 * OFFSET)


def build_profile(
    rows: Sequence[Sequence[float]] | Array,
    *,
    sample_size: int = 2000,
    holdout: float = 0.2,
    knn_k: int = 3,
    seed: int = 0,
    align: bool = True,
    labels: Sequence[Any] | None = None,
) -> ReferenceProfile:
    """Build a profile from training rows (at least 20, all finite numbers), and with
    ``labels`` (one per row, the training data's label column) the answer-consistency
    model."""
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
    nn = nearest[:, 0]
    step, origin = learn_grids(data)
    # the split test's calibration uses every row: it fits nothing but the choice of
    # background features (a coarse one), and its tail needs the resolution
    background = learn_background(data)
    splits = SplitCheck(background, float(np.median(scale)))
    alignment = benign_alignment(data, scale) if align else Alignment(1.0, np.zeros(len(scale)))
    profile = ReferenceProfile(
        features=data.shape[1],
        count=len(data),
        mean=data.mean(axis=0),
        std=std,
        low=data.min(axis=0),
        high=data.max(axis=0),
        scale=scale,
        grid_step=step,
        grid_origin=origin,
        sample=sample,
        knn_k=k,
        knn_quantiles={},
        nn_quantiles={q: float(np.quantile(nn, q)) for q in QUANTILES},
        range_rates=range_rates,
        alignment=alignment,
        spacing=calibrate_spacing(held / scale, sample, seed=seed),
        background=background,
        split_rates=split_rates(data, splits),
        # data with a background (an image's border) has the split test; there a
        # brightness shift clipped at the range reads as atypical to a Gaussian model
        consistency=(
            None
            if labels is None or len(background) >= 2
            else learn_consistency(data, class_names(labels), scale, alignment, seed)
        ),
    )
    # the calibration: the same statistic on the held-out rows and on each sample row
    # against the others (more rows than the held-out part alone: finer upper quantiles)
    knn = np.concatenate([profile.knn_distance(held / scale), profile.self_knn()])
    # a new object: what it derives from its quantiles is not cached from before them
    return replace(profile, knn_quantiles={q: float(np.quantile(knn, q)) for q in QUANTILES})


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
