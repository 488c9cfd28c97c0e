"""Drift of a deployed model's inputs and outputs, from the gateway's own traffic.

Per model, per time bucket: each feature's values are counted into the
reference's quintile bins (edges from the gateway's reference profile sample),
and each predicted class is counted. Memory is fixed (features x bins counts for
the last ``window`` buckets, at most ``MAX_CLASSES`` labels): no row is kept,
there is no second copy of the traffic. When a bucket closes, one
``watch.drift`` event carries

* ``psi``: the largest Population Stability Index over the features,
  ``sum((p - q) ln(p / q))`` over the bins (both smoothed by half a count), of
  the last ``window`` buckets' counts (2 by default: half the noise of one
  bucket, and a shift is fully in the window by its second bucket), and
  ``psi_feature``, the feature it came from;
* ``class_psi``: the PSI of the bucket's class shares against the first
  ``baseline_buckets`` buckets (the baseline the deployment started with);
* ``class_shares``.

``donjon monitor`` turns them into the series ``psi:<model>`` and
``class_psi:<model>`` and alerts on rises (docs/watch.md).
"""

from __future__ import annotations

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

BINS = 5  # quintiles: a mean shift of 0.5 std moves them clearly, noise has 4 degrees of freedom
MAX_CLASSES = 100
MIN_ROWS = 50  # a bucket with fewer rows says nothing and is not reported


def psi(observed: npt.NDArray[np.float64], expected: npt.NDArray[np.float64]) -> float:
    """Population Stability Index of two count vectors (half-count smoothing)."""
    p = (observed + 0.5) / (observed.sum() + 0.5 * len(observed))
    q = (expected + 0.5) / (expected.sum() + 0.5 * len(expected))
    return float(np.sum((p - q) * np.log(p / q)))


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
        self.model = model
        self.publish = publish
        self.bucket_seconds = bucket_seconds
        self.baseline_buckets = baseline_buckets
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
        """Report the current bucket now (at shutdown)."""
        with self._lock:
            self._report()
            self._reset(self._bucket(self.clock()))

    def _roll(self, now: float) -> None:
        start = self._bucket(now)
        if start != self._start:
            self._report()
            self._reset(start)

    def _reset(self, start: float) -> None:
        if self._rows >= MIN_ROWS:
            self._recent.append(self._counts)
        else:
            self._recent.clear()  # a gap in the traffic: the window starts again
        self._start = start
        self._counts = [np.zeros(len(e) + 1) for e in self.edges]
        self._classes = Counter()
        self._rows = 0

    def _report(self) -> None:
        if self._rows < MIN_ROWS:
            return
        counts = [sum(parts) for parts in zip(*self._recent, self._counts, strict=True)]
        scores = [psi(c, e) for c, e in zip(counts, self.expected, strict=True)]
        worst = int(np.argmax(scores))
        total = sum(self._classes.values())
        shares = {k: v / total for k, v in sorted(self._classes.items())} if total else {}
        class_psi = None
        if self._baseline_seen < self.baseline_buckets:
            self._baseline.update(self._classes)
            self._baseline_seen += 1
        elif total:
            labels = sorted(set(self._baseline) | set(self._classes))
            class_psi = psi(
                np.array([self._classes[k] for k in labels], dtype=np.float64),
                np.array([self._baseline[k] for k in labels], dtype=np.float64),
            )
        attributes: dict[str, Any] = {
            "model": self.model,
            "rows": self._rows,
            "bucket_start": self._start,
            "psi": scores[worst],
            "psi_feature": worst,
            "class_psi": class_psi,
            "class_shares": shares,
        }
        message = (
            f"{self.model}: input PSI {scores[worst]:.3g} (feature {worst}), "
            f"{self._rows} rows" + (f", class PSI {class_psi:.3g}" if class_psi is not None else "")
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
