"""Drift of a deployed model's inputs and outputs, from the gateway's own traffic.

Per model, per time bucket: each feature's values are counted into the
reference's decile bins (edges from the gateway's reference profile sample),
and each predicted class is counted. Memory is fixed (features x bins counts for
the last ``window`` buckets, at most ``MAX_CLASSES`` labels): no row is kept,
there is no second copy of the traffic.

**Tests whose false-alarm rate does not depend on the traffic.** The PSI of a
bucket is noise of order ``bins / n``: a threshold on it alarms at low traffic
and sleeps at high traffic. So each feature's counts of the last ``window``
buckets are tested against the reference's counts with two tests whose null
distributions are known for any ``n``: a rank test on the ordered bins (the
Mann-Whitney U of the binned values with its tie correction: a location shift)
and the chi-squared test of homogeneity (any change of shape). The smallest
p-value is Bonferroni-corrected over the features and the two tests; the class
counts get a chi-squared test against the baseline's. The event carries the
corrected p-values and ``drift_score = -log10(p)``; ``donjon monitor`` alerts
when the score passes ``-log10(ALPHA)`` = 5 (a false alarm once in 100,000
buckets: none in a year of minutes per model, in expectation 0.5).

**Enough rows.** A bucket closes when its time is up *and* it holds at least
``min_rows`` rows (200 by default); at lower traffic it stretches over several
bucket lengths (the event says so: ``stretched``). So a shift of half a
standard deviation is seen with the power that 400 rows give, whatever the
traffic (docs/watch.md, benchmarks/watch_bench.py).

When a bucket closes, one ``watch.drift`` event carries ``p_value``,
``drift_score``, ``drift_feature`` (the feature with the smallest p),
``psi`` and ``psi_feature`` (the largest PSI, an effect size),
``class_p_value``, ``class_score``, ``class_psi``, ``class_shares``, ``rows``,
``seconds`` and ``stretched``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.core.events import SecurityEvent
from donjon.watch.findings import activity
from donjon.watch.ports import Rows

log = logging.getLogger(__name__)

BINS = 10  # deciles: the binned rank test keeps ~99 % of the unbinned test's efficiency
MAX_CLASSES = 100
MIN_ROWS = 200  # a bucket stretches until it holds this many rows
ALPHA = 1e-5  # per bucket and model, after the correction over features and tests
MAX_SCORE = 300.0  # -log10 of a p-value that underflowed


def psi(observed: npt.NDArray[np.float64], expected: npt.NDArray[np.float64]) -> float:
    """Population Stability Index of two count vectors (half-count smoothing)."""
    p = (observed + 0.5) / (observed.sum() + 0.5 * len(observed))
    q = (expected + 0.5) / (expected.sum() + 0.5 * len(expected))
    return float(np.sum((p - q) * np.log(p / q)))


def rank_p(observed: npt.NDArray[np.float64], expected: npt.NDArray[np.float64]) -> float:
    """Two-sided p of the Mann-Whitney U test of two samples given as counts per ordered bin
    (normal approximation with the tie correction: every bin is one tie group)."""
    n, m = float(observed.sum()), float(expected.sum())
    total = n + m
    if n == 0 or m == 0:
        return 1.0
    below = np.cumsum(expected) - expected
    u = float(np.sum(observed * (below + expected / 2)))
    ties = observed + expected
    variance = n * m / 12 * ((total + 1) - float(np.sum(ties**3 - ties)) / (total * (total - 1)))
    if variance <= 0:
        return 1.0
    from scipy.stats import norm

    return float(2 * norm.sf(abs(u - n * m / 2) / math.sqrt(variance)))


def homogeneity_p(observed: npt.NDArray[np.float64], expected: npt.NDArray[np.float64]) -> float:
    """p of the chi-squared test that two count vectors come from one distribution."""
    from scipy.stats import chi2

    table = np.vstack([observed, expected])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    fitted = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(np.sum((table - fitted) ** 2 / fitted))
    return float(chi2.sf(statistic, table.shape[1] - 1))


def score(p_value: float) -> float:
    """``-log10(p)``, finite."""
    return MAX_SCORE if p_value <= 0 else min(MAX_SCORE, -math.log10(p_value))


class DriftMonitor:
    """One model's drift, bucket by bucket; thread-safe, bounded memory."""

    def __init__(
        self,
        model: str,
        reference: Rows,
        publish: Callable[[SecurityEvent], object],
        *,
        bucket_seconds: float = 60.0,
        baseline_buckets: int = 5,
        window: int = 2,
        min_rows: int = MIN_ROWS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
        self.model = model
        self.publish = publish
        self.bucket_seconds = bucket_seconds
        self.baseline_buckets = baseline_buckets
        self.min_rows = min_rows
        self.clock = clock
        quantiles = np.linspace(0.0, 1.0, BINS + 1)[1:-1]
        self.edges = [np.unique(np.quantile(column, quantiles)) for column in reference.T]
        self.expected = [
            self._histogram(column, e) for column, e in zip(reference.T, self.edges, strict=True)
        ]
        self._lock = threading.Lock()
        self._recent: deque[list[npt.NDArray[np.float64]]] = deque(maxlen=max(0, window - 1))
        self._start = self._bucket(clock())
        self._counts = [np.zeros(len(e) + 1) for e in self.edges]
        self._classes: Counter[str] = Counter()
        self._rows = 0
        self._baseline: Counter[str] = Counter()
        self._baseline_seen = 0
        self._warned = False
        self._stretched = False

    def observe(self, rows: Rows, labels: Sequence[Any]) -> None:
        """Count one request's rows and predicted labels (a closed bucket is reported first)."""
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        if rows.shape[1] != len(self.edges):
            return  # another input shape: the input contract reports it, not the drift
        with self._lock:
            self._roll(self.clock())
            for i, column in enumerate(rows.T):
                self._counts[i] += self._histogram(column, self.edges[i])
            for label in labels:
                key = str(label)
                if key in self._classes or len(self._classes) < MAX_CLASSES:
                    self._classes[key] += 1
            self._rows += len(rows)

    def flush(self) -> None:
        """Report the current bucket now (at shutdown) if it holds enough rows."""
        with self._lock:
            if self._rows >= self.min_rows:
                self._report(self.clock())
                self._reset(self._bucket(self.clock()))

    def _roll(self, now: float) -> None:
        start = self._bucket(now)
        if start == self._start:
            return
        if self._rows < self.min_rows:  # too few rows to test: the bucket stretches
            if not self._warned:
                log.warning(
                    "drift of %s: fewer than %d rows in %g s, buckets stretch until they hold %d",
                    self.model, self.min_rows, self.bucket_seconds, self.min_rows,
                )  # fmt: skip
                self._warned = True
            self._stretched = True
            return
        self._report(now)
        self._reset(start)

    def _reset(self, start: float) -> None:
        self._recent.append(self._counts)
        self._start = start
        self._counts = [np.zeros(len(e) + 1) for e in self.edges]
        self._classes = Counter()
        self._rows = 0
        self._stretched = False

    def _report(self, now: float) -> None:
        counts = [sum(parts) for parts in zip(*self._recent, self._counts, strict=True)]
        psis = [psi(c, e) for c, e in zip(counts, self.expected, strict=True)]
        worst = int(np.argmax(psis))
        tests = [
            min(rank_p(c, e), homogeneity_p(c, e))
            for c, e in zip(counts, self.expected, strict=True)
        ]
        drift_feature = int(np.argmin(tests))
        p_value = min(1.0, tests[drift_feature] * 2 * len(tests))
        total = sum(self._classes.values())
        shares = {k: v / total for k, v in sorted(self._classes.items())} if total else {}
        class_psi = class_p = None
        if self._baseline_seen < self.baseline_buckets:
            self._baseline.update(self._classes)
            self._baseline_seen += 1
        elif total:
            labels = sorted(set(self._baseline) | set(self._classes))
            now_counts = np.array([self._classes[k] for k in labels], dtype=np.float64)
            then = np.array([self._baseline[k] for k in labels], dtype=np.float64)
            class_psi = psi(now_counts, then)
            class_p = homogeneity_p(now_counts, then)
        seconds = max(self._bucket(now) - self._start, self.bucket_seconds)
        attributes: dict[str, Any] = {
            "model": self.model,
            "rows": self._rows,
            "bucket_start": self._start,
            "seconds": seconds,
            "stretched": self._stretched,
            "p_value": p_value,
            "drift_score": score(p_value),
            "drift_feature": drift_feature,
            "psi": psis[worst],
            "psi_feature": worst,
            "class_p_value": class_p,
            "class_score": None if class_p is None else score(class_p),
            "class_psi": class_psi,
            "class_shares": shares,
        }
        message = (
            f"{self.model}: input drift p = {p_value:.3g} (feature {drift_feature}), "
            f"largest PSI {psis[worst]:.3g} (feature {worst}), {self._rows} rows"
            + (f", class drift p = {class_p:.3g}" if class_p is not None else "")
        )
        event = activity("drift", message, **attributes)
        self.publish(replace(event, time=datetime.fromtimestamp(self._start, UTC)))

    def _bucket(self, now: float) -> float:
        return math.floor(now / self.bucket_seconds) * self.bucket_seconds

    @staticmethod
    def _histogram(
        column: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        return np.bincount(
            np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1
        ).astype(np.float64)
