"""Is an input typical of the class the model answered? (the answer-consistency test)

A transfer attack moves an input until a surrogate model changes its answer, and the
victim often follows. The input then carries the victim's new label while it still
looks like a row of its old class with a push in an unnatural direction. The test
scores an answered input ``x`` with label ``y`` by how far it is from the
training rows of class ``y`` (a shared covariance, as in linear discriminant
analysis, shrunk towards the identity by ``SHRINK``), feature by feature, in a space
where heavy-tailed features do not dominate:

* each feature is compressed, ``t(x) = sign(x) log(1 + |x| / c)``, ``c`` the
  feature's median absolute value floored at its scale (linear near 0, logarithmic
  far out: an area in the thousands and a ratio under 0.1 get comparable tails);
* the input is first aligned by the benign gain and offset of the profile
  (:mod:`.alignment`: a brighter camera, other units, a drift), found by a few
  projected Gauss-Newton steps from ``a = 1, b = 0``;
* each feature's residual given all the others (what a regression of the feature on
  the others within the class leaves, standardised) is squared and summed, the
  largest term left out: one feature mistyped or jittered is not an attack, a
  perturbation of every feature that breaks how they move together is. (The sum
  weighs the directions in which rows of a class hardly vary more than the
  Mahalanobis distance does: on the cancer table, transfer inputs at a quarter of the
  range were flagged at 96 % against 60 % at the same benign rate.)

The threshold is calibrated on the profile's own rows with their labels, out of
fold (each fifth of the rows scored by a model fitted on the other four fifths),
and on benign copies of those rows (:func:`benign_changes`: one feature jittered by
1 or 2 of its standard deviations, sensor noise of 5 % of each), scored the same way:
``quantiles[q]`` is exceeded by about ``1 - q`` of natural inputs answered with their
true label and by at most ``CHANGE_RATE (1 - q)`` of each kind of benign copy (0.5 %
and 0.75 % at the default 0.995: under the 1 % that a benign stream may cost, with
room for the sampling error of the copies). Nothing is fitted to attacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.errors import InputError
from donjon.gateway.alignment import Alignment

Array = npt.NDArray[np.float64]
log = logging.getLogger("donjon.gateway")
STATISTIC = "residual-sum/1"  # the score the quantiles are of (older profiles: none)
SHRINK = 0.05  # weight of the identity in the shared covariance
FOLDS = 5
STEPS = 6  # Gauss-Newton steps of the alignment
MAX_FEATURES = 256  # beyond this the d x d precision is not kept (the test is off)
MIN_CLASS = 2  # rows a class needs to get a mean
QUANTILES = (0.9, 0.95, 0.99, 0.995, 0.999)
CHANGE_RATE = 1.5  # a benign change may exceed the threshold 1.5 times as often
COPIES = 4  # benign copies of each row per kind of change, for the calibration
CALIBRATION_ROWS = 8000  # fewer copies per row beyond this many rows


@dataclass(frozen=True)
class ConsistencyModel:
    classes: tuple[str, ...]  # label names, in the order of score columns (sorted)
    compress: Array  # c per feature
    spread: Array  # std of the compressed features, floored
    means: Array  # classes x features, in the compressed, spread-scaled space
    precision: Array  # features x features
    quantiles: dict[float, float]  # of the out-of-fold score on the profile's rows
    # what the quantiles were calibrated on: "natural" rows, and benign changes of them
    calibration: tuple[str, ...] = ("natural",)

    def threshold(self, quantile: float) -> float:
        keys = sorted(self.quantiles)
        return float(np.interp(quantile, keys, [self.quantiles[k] for k in keys]))

    def index(self, name: str) -> int | None:
        """The class of a label name, if the profile knows it."""
        try:
            return self.classes.index(name)
        except ValueError:
            return None

    def scores(self, rows: Array, classes: npt.NDArray[np.int64], alignment: Alignment) -> Array:
        """The score of each raw row answered with class index ``classes[i]``."""
        rows = np.asarray(rows, dtype=np.float64)
        means = self.means[classes]
        gain, offset = _align(self, rows, means, alignment)
        z = rows * gain[:, None] + offset[:, None] * alignment.offset
        r = _compressed(z, self.compress) / self.spread - means
        result: Array = np.sqrt(np.maximum(_residual_sum(r, self.precision), 0.0))
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "compress": self.compress.tolist(),
            "spread": self.spread.tolist(),
            "means": np.round(self.means, 8).tolist(),
            "precision": np.round(self.precision, 10).tolist(),
            "quantiles": {str(q): v for q, v in self.quantiles.items()},
            "calibration": list(self.calibration),
            "statistic": STATISTIC,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], features: int) -> ConsistencyModel | None:
        """The model, or None (and a warning) when its quantiles were calibrated for
        another statistic: a profile built by an earlier version, to rebuild."""
        if data.get("statistic") != STATISTIC:
            log.warning(
                "the profile's answer-consistency model was built by an earlier version "
                "(another score): the test is off until the profile is rebuilt with "
                "`donjon gateway profile --label`"
            )
            return None
        model = cls(
            classes=tuple(str(c) for c in data["classes"]),
            compress=np.asarray(data["compress"], dtype=np.float64),
            spread=np.asarray(data["spread"], dtype=np.float64),
            means=np.asarray(data["means"], dtype=np.float64),
            precision=np.asarray(data["precision"], dtype=np.float64),
            quantiles={float(q): float(v) for q, v in data["quantiles"].items()},
            calibration=tuple(str(k) for k in data["calibration"]),
        )
        d, k = features, len(model.classes)
        if (
            model.compress.shape != (d,)
            or model.spread.shape != (d,)
            or model.means.shape != (k, d)
            or model.precision.shape != (d, d)
            or k < 2
            or not model.quantiles
            or not (model.compress > 0).all()
            or not (model.spread > 0).all()
            or not (np.diag(model.precision) > 0).all()
        ):
            raise InputError("profile consistency model is malformed")
        return model


def class_names(labels: npt.ArrayLike) -> list[str]:
    """Training labels as the names the gateway compares: whole numbers without ``.0``."""
    out = []
    for value in np.asarray(labels).ravel().tolist():
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        out.append(str(value))
    return out


def learn_consistency(
    data: Array, labels: list[str], scale: Array, alignment: Alignment, seed: int = 0
) -> ConsistencyModel | None:
    """The model of ``data`` with its class ``labels``, calibrated out of fold; None when
    there are fewer than two classes with ``MIN_CLASS`` rows, or too many features."""
    if len(labels) != len(data):
        raise InputError(f"{len(labels)} labels for {len(data)} rows")
    if data.shape[1] > MAX_FEATURES:
        return None
    names = np.asarray(labels, dtype=object)
    counts = {n: int((names == n).sum()) for n in set(labels)}
    classes = tuple(sorted((n for n, c in counts.items() if c >= MIN_CLASS), key=_order))
    if len(classes) < 2:
        return None
    keep = np.isin(names, classes)
    position = {name: k for k, name in enumerate(classes)}
    data = data[keep]
    index = np.asarray([position[n] for n in names[keep]], dtype=np.int64)
    rng = np.random.default_rng(seed)
    folds = rng.permutation(len(data)) % FOLDS
    changes = benign_changes(data)
    copies = max(1, min(COPIES, CALIBRATION_ROWS // len(data)))
    natural: list[Array] = []
    changed: dict[str, list[Array]] = {name: [] for name in changes}
    for f in range(FOLDS):
        part = folds == f
        if not part.any() or len(set(index[~part])) < len(classes):
            continue
        fitted = _fit(data[~part], index[~part], classes, scale)
        natural.append(fitted.scores(data[part], index[part], alignment))
        for name, change in changes.items():
            for _ in range(copies):
                rows = change(data[part], rng)
                changed[name].append(fitted.scores(rows, index[part], alignment))
    model = _fit(data, index, classes, scale)
    if not natural:
        out = model.scores(data, index, alignment)
        return replace(model, quantiles={q: float(np.quantile(out, q)) for q in QUANTILES})
    # natural rows at the rate 1 - q, each kind of benign change at CHANGE_RATE (1 - q)
    kinds = [np.concatenate(v) for v in changed.values()]
    quantiles = {
        q: max(
            float(np.quantile(np.concatenate(natural), q)),
            *(float(np.quantile(v, max(0.0, 1 - CHANGE_RATE * (1 - q)))) for v in kinds),
        )
        for q in QUANTILES
    }
    return replace(model, quantiles=quantiles, calibration=("natural", *changed))


Change = Callable[[Array, np.random.Generator], Array]


def benign_changes(data: Array) -> dict[str, Change]:
    """What a benign client does to rows, in the training data's own spread: one feature
    mistyped or jittered by 1 or 2 of its standard deviations (``jitter``), sensor noise
    of 5 % of each feature's deviation (``noise``). A feature never negative in the
    data stays non-negative (a count, an area). Gains, offsets and drifts are left to
    the alignment."""
    spread = data.std(axis=0)
    spread = np.where(spread > 0, spread, float(np.median(spread)) or 1.0)
    floor = np.where(data.min(axis=0) >= 0, 0.0, -np.inf)

    def jitter(rows: Array, rng: np.random.Generator) -> Array:
        out = rows.copy()
        n = len(rows)
        cols = rng.integers(0, rows.shape[1], n)
        out[np.arange(n), cols] += rng.choice([-2.0, -1.0, 1.0, 2.0], n) * spread[cols]
        result: Array = np.maximum(out, floor)
        return result

    def noise(rows: Array, rng: np.random.Generator) -> Array:
        result: Array = np.maximum(rows + rng.normal(0.0, 0.05, rows.shape) * spread, floor)
        return result

    return {"jitter": jitter, "noise": noise}


def _order(name: str) -> tuple[int, float, str]:
    """Numbers in numeric order, then other names (scikit-learn's ``classes_`` order)."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def _fit(
    data: Array, index: npt.NDArray[np.int64], classes: tuple[str, ...], scale: Array
) -> ConsistencyModel:
    compress = np.maximum(np.median(np.abs(data), axis=0), scale)
    t = _compressed(data, compress)
    spread = t.std(axis=0)
    floor = float(np.median(spread))
    spread = np.maximum(spread, floor if floor > 0 else 1.0)
    z = t / spread
    means = np.zeros((len(classes), data.shape[1]))
    for k in range(len(classes)):
        mine = z[index == k]
        means[k] = mine.mean(axis=0) if len(mine) else z.mean(axis=0)
    resid = z - means[index]
    cov = resid.T @ resid / max(len(z) - len(classes), 1)
    cov /= max(float(np.mean(np.diag(cov))), 1e-12)
    shrunk = (1.0 - SHRINK) * cov + SHRINK * np.eye(len(cov))
    return ConsistencyModel(classes, compress, spread, means, np.linalg.inv(shrunk), {})


def _residual_sum(r: Array, p: Array) -> Array:
    """Per residual row ``r``: the sum over features of the squared standardised
    residual of the feature given all the others within the class, ``(p r)_j^2 /
    p_jj`` (what leaving the feature out would take off the squared Mahalanobis
    distance), the largest term left out."""
    pr = r @ p
    terms: Array = pr * pr / np.diag(p)
    result: Array = terms.sum(axis=1) - terms.max(axis=1)
    return result


def _compressed(x: Array, c: Array) -> Array:
    result: Array = np.sign(x) * np.log1p(np.abs(x) / c)
    return result


def _align(
    model: ConsistencyModel, rows: Array, means: Array, alignment: Alignment
) -> tuple[Array, Array]:
    """Per row, the gain and offset (within the alignment's bounds) that bring it
    nearest its class mean: projected Gauss-Newton from ``a = 1, b = 0``."""
    n = len(rows)
    gain, offset = np.ones(n), np.zeros(n)
    if not alignment.active:
        return gain, offset
    low, high, bound = 1.0 / alignment.gain, alignment.gain, alignment.bound
    v, c, s, p = alignment.offset, model.compress, model.spread, model.precision
    for _ in range(STEPS):
        z = rows * gain[:, None] + offset[:, None] * v
        r = _compressed(z, c) / s - means
        slope = 1.0 / ((c + np.abs(z)) * s)  # d t(z) / dz, scaled
        j = np.stack([slope * rows, slope * v], axis=2)  # n x d x 2
        pj = np.matmul(p, j)
        h = np.matmul(j.transpose(0, 2, 1), pj)  # n x 2 x 2
        g = (pj * r[:, :, None]).sum(axis=1)  # n x 2
        h00, h01, h11 = h[:, 0, 0] + 1e-12, h[:, 0, 1], h[:, 1, 1] + 1e-12
        det = h00 * h11 - h01 * h01
        da = -(h11 * g[:, 0] - h01 * g[:, 1]) / det
        db = -(h00 * g[:, 1] - h01 * g[:, 0]) / det
        new_gain = np.clip(gain + da, low, high)
        new_offset = np.clip(offset + db, -bound, bound)
        moved = float(np.max(np.abs(new_gain - gain)) + np.max(np.abs(new_offset - offset)))
        gain, offset = new_gain, new_offset
        if moved < 1e-4:
            break
    return gain, offset
