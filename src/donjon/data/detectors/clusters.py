"""Backdoor traces in features or embeddings: spectral signatures and activation clustering.

Both look inside one class at a time, on the features (or, better, the embeddings of a
model trained on the data, when the user supplies them):

- **Spectral signatures** (Tran et al., 2018): project each record of the class on the
  top singular vector of the centred class matrix. Poisons sit in one tail. A record is an
  outlier when its robust z-score (median / MAD) passes the Bonferroni-corrected Gaussian
  bound for the class size: no poison rate is assumed.
- **Activation clustering** (Chen et al., 2018): split the class in two (k-means on the
  top principal components). A poison cluster is a small (under 35 %), well separated
  (silhouette above 0.25) cluster.

Either way a cluster is only reported when its records do not belong to their class on
their own: with the cluster left out, most of its records' nearest neighbours carry other
labels (a binomial test). Natural sub-styles of a class (a seven with or without a bar)
pass the first tests but fail this one.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
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

SPECTRAL, ACTIVATION = "spectral_signature", "activation_clustering"
MIN_CLASS = 20
MAX_SHARE = 0.35
MIN_SILHOUETTE = 0.25
ALPHA = 0.01
NEIGHBOURS = 10


def _foreign(y: np.ndarray, scaled: np.ndarray, cluster: np.ndarray, label: int) -> np.ndarray:
    """For each cluster row, the share of its neighbours (outside the cluster) of other labels."""
    pool = np.setdiff1d(np.arange(len(y)), cluster)
    index = NearestNeighbors(n_neighbors=min(NEIGHBOURS, len(pool))).fit(scaled[pool])
    _, found = index.kneighbors(scaled[cluster])
    return np.asarray((y[pool][found] != label).mean(axis=1))


def _confirmed(foreign: np.ndarray) -> bool:
    majority = int((foreign > 0.5).sum())
    return bool(stats.binomtest(majority, len(foreign), 0.5, "greater").pvalue <= ALPHA)


def _scaled(data: LabelledData) -> np.ndarray:
    return np.asarray(StandardScaler().fit_transform(data.X))


def detect_spectral(data: LabelledData) -> DetectorResult:
    if data.y is None:
        return DetectorResult(SPECTRAL, rules.POISON_CLUSTER, error="needs labels")
    scaled = _scaled(data)
    flags: list[RecordFlag] = []
    classes = []
    for label in range(data.k):
        rows = np.flatnonzero(data.y == label)
        if len(rows) < MIN_CLASS:
            continue
        centred = data.X[rows] - data.X[rows].mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        z = robust_z(centred @ vt[0])
        if np.abs(z.min()) > np.abs(z.max()):
            z = -z
        bound = bonferroni_z(len(rows), ALPHA)
        suspects = rows[z > bound]
        if len(suspects) < 2 or len(suspects) > MAX_SHARE * len(rows):
            continue
        foreign = _foreign(data.y, scaled, suspects, label)
        if not _confirmed(foreign):
            continue
        classes.append({"class": data.label_name(label), "records": len(suspects)})
        for row, zi, fi in zip(suspects, z[z > bound], foreign, strict=True):
            flags.append(
                RecordFlag(
                    int(row),
                    SPECTRAL,
                    rules.POISON_CLUSTER,
                    float(min(1.0, fi)),
                    f"spectral outlier of class {data.label_name(label)!r} (robust z {zi:.1f}); "
                    f"{fi:.0%} of its neighbours outside the outliers carry other labels",
                    {"z": round(float(zi), 2)},
                )
            )
    return DetectorResult(SPECTRAL, rules.POISON_CLUSTER, tuple(flags), {"classes": classes})


def detect_activation_clusters(data: LabelledData, seed: int = 0) -> DetectorResult:
    if data.y is None:
        return DetectorResult(ACTIVATION, rules.POISON_CLUSTER, error="needs labels")
    scaled = _scaled(data)
    flags: list[RecordFlag] = []
    classes = []
    for label in range(data.k):
        rows = np.flatnonzero(data.y == label)
        if len(rows) < MIN_CLASS:
            continue
        dims = min(10, len(rows) - 1, data.X.shape[1])
        reduced = PCA(dims, random_state=seed).fit_transform(scaled[rows])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assign = KMeans(2, n_init=5, random_state=seed).fit_predict(reduced)
        sizes = np.bincount(assign, minlength=2)
        small = int(sizes.argmin())
        if sizes[small] < 2 or sizes[small] > MAX_SHARE * len(rows):
            continue
        quality = float(silhouette_score(reduced, assign))
        if quality < MIN_SILHOUETTE:
            continue
        cluster = rows[assign == small]
        foreign = _foreign(data.y, scaled, cluster, label)
        if not _confirmed(foreign):
            continue
        classes.append(
            {"class": data.label_name(label), "records": len(cluster), "silhouette": quality}
        )
        for row, fi in zip(cluster, foreign, strict=True):
            flags.append(
                RecordFlag(
                    int(row),
                    ACTIVATION,
                    rules.POISON_CLUSTER,
                    float(min(1.0, fi)),
                    f"in a small separated cluster of class {data.label_name(label)!r} "
                    f"(silhouette {quality:.2f}); {fi:.0%} of its neighbours outside the "
                    "cluster carry other labels",
                    {"silhouette": round(quality, 3)},
                )
            )
    return DetectorResult(ACTIVATION, rules.POISON_CLUSTER, tuple(flags), {"classes": classes})
