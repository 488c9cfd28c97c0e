"""Baselines of healthy behaviour and the alerts raised when a metric leaves them.

For each bucket the baseline learns a band from the ``window`` buckets that
precede the recent trend segment: fences at the quartiles widened by ``k``
inter-quartile ranges (4.5 by default, wider than Tukey's far-out 3 so that a
per-minute metric stays quiet for days; robust to outliers in the window and
fit for skewed metrics such as latencies), at least ``min_width`` from the
median, and for counts never tighter than a Poisson tail bound. Two alerts:

- **breach**: the value is outside the band;
- **trend**: the value is still inside, but a least-squares line through the
  last ``trend_points`` buckets (or the last half of them) is a clear trend
  (slope at least 4 standard errors from zero, recent values already
  off-centre) and crosses the band within ``horizon`` buckets: the alert comes
  *before* the incident.

An alert is itself a :class:`SecurityEvent` of kind ALERT.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.severity import Severity
from donjon.monitor.series import Series, bucket_time

MIN_T = 4.0  # slope / standard error needed to call a trend


@dataclass(frozen=True, slots=True)
class AlertRule:
    """Which metrics to watch and how wide their band is (``metric`` may use ``*``)."""

    metric: str
    severity: Severity = Severity.MEDIUM
    k: float = 4.5
    min_width: float = 0.0
    window: int = 120
    horizon: int = 10
    trend_points: int = 20
    upper_only: bool = False
    absolute_high: float | None = None
    count: bool = False  # a count per bucket: never tighter than a Poisson bound
    lower_only: bool = False  # only a drop matters (a model's robustness)
    threshold_only: bool = False  # a breach is a value above absolute_high; nothing is learnt

    def applies(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.metric)


DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule("deny_ratio", Severity.MEDIUM, min_width=0.02, upper_only=True),
    AlertRule("error_ratio", Severity.MEDIUM, min_width=0.02, upper_only=True),
    AlertRule("auth_failure_ratio", Severity.MEDIUM, min_width=0.05, upper_only=True),
    AlertRule("requests:*", Severity.MEDIUM, upper_only=True, count=True),
    AlertRule("score:*", Severity.HIGH, min_width=0.05, upper_only=True),
    AlertRule("latency_ms", Severity.LOW, min_width=5, upper_only=True),
    AlertRule("class_share:*", Severity.MEDIUM, min_width=0.05),
    # one point per probe run: a short reference, and a drop of 0.05 (relative L2) at least
    # input and class drift: -log10 of a corrected p-value whose null does not depend on the
    # traffic, so a fixed threshold (p < 1e-5) rather than a learnt band
    AlertRule("drift:*", Severity.MEDIUM, absolute_high=5.0, threshold_only=True),
    AlertRule("class_drift:*", Severity.MEDIUM, absolute_high=5.0, threshold_only=True),
    AlertRule(
        "robustness:*", Severity.HIGH, min_width=0.05, window=3, trend_points=6, lower_only=True
    ),
    AlertRule("findings", Severity.MEDIUM, upper_only=True, count=True),
    AlertRule("events", Severity.LOW, upper_only=True, count=True),
)


@dataclass(frozen=True, slots=True)
class Band:
    center: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class Alert:
    metric: str
    kind: Literal["breach", "trend"]
    bucket: int
    value: float
    band: Band
    severity: Severity
    slope: float = 0.0
    projected: float | None = None
    horizon: int = 0

    def to_event(self) -> SecurityEvent:
        direction = "rising" if self.value > self.band.center else "falling"
        if self.kind == "trend":
            message = (
                f"{self.metric} is {direction} toward the edge of its band "
                f"[{self.band.low:.4g}, {self.band.high:.4g}]: {self.value:.4g} now, "
                f"{self.projected:.4g} projected in {self.horizon} buckets"
            )
        else:
            message = (
                f"{self.metric} left its band [{self.band.low:.4g}, {self.band.high:.4g}]: "
                f"{self.value:.4g}"
            )
        attributes: dict[str, object] = {
            "metric": self.metric,
            "alert": self.kind,
            "value": finite(self.value),
            "low": finite(self.band.low),  # an open side of the band is null, not -inf
            "high": finite(self.band.high),
            "center": finite(self.band.center),
            "trend": direction,
            "bucket": bucket_time(self.bucket).isoformat(),
        }
        if self.projected is not None:
            attributes.update(
                projected=finite(self.projected), slope=finite(self.slope), horizon=self.horizon
            )
        key = f"{self.metric}|{self.kind}|{self.bucket}"
        return SecurityEvent(
            uid=hashlib.sha256(key.encode()).hexdigest()[:32],  # re-runs are idempotent
            kind=EventKind.ALERT,
            source="monitor",
            action=f"monitor.{self.kind}",
            message=message,
            severity=self.severity,
            outcome=Outcome.UNKNOWN,
            attributes=attributes,
            time=bucket_time(self.bucket),
        )


def learn_band(values: Iterable[float], rule: AlertRule) -> Band:
    values = list(values)
    center = statistics.median(values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    iqr = q3 - q1
    floor = max(rule.min_width, 1e-9 * max(1.0, abs(center)))
    high = max(q3 + rule.k * iqr, center + floor)
    if rule.count:  # rare events: the quartiles say little, a Poisson tail bound does
        mean = statistics.fmean(values)
        high = max(high, mean + 4.5 * math.sqrt(mean) + 1)
    low = min(q1 - rule.k * iqr, center - floor)
    if rule.absolute_high is not None:
        high = min(high, rule.absolute_high)
    if rule.upper_only or (low < 0 <= min(values)):  # a count or ratio cannot go below 0
        low = -math.inf
    if rule.lower_only:
        high = math.inf
    return Band(center, low, high)


def _fit(ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x over x = 0..n-1: (a, b, standard error of b)."""
    n = len(ys)
    xbar = (n - 1) / 2
    ybar = sum(ys) / n
    sxx = sum((x - xbar) ** 2 for x in range(n))
    slope = sum((x - xbar) * (y - ybar) for x, y in enumerate(ys)) / sxx
    intercept = ybar - slope * xbar
    residual = sum((y - intercept - slope * x) ** 2 for x, y in enumerate(ys))
    se = math.sqrt(residual / (n - 2) / sxx) if n > 2 else math.inf
    return intercept, slope, se


def evaluate_series(series: Series, rule: AlertRule) -> list[Alert]:
    """Alerts over the whole series; one alert per episode (re-armed when back in band).

    The first ``window`` buckets are the healthy reference. After that a bucket
    joins the reference only once it is ``trend_points`` buckets old and was
    neither outside the band nor part of a trend: a drifting metric never
    teaches the baseline that drifting is normal.
    """
    points = series.values()
    if rule.threshold_only:
        return _over_threshold(series.name, points, rule)
    if len(points) <= rule.window:
        return []
    reference: deque[float] = deque((v for _, v in points[: rule.window]), maxlen=rule.window)
    pending: deque[float] = deque()
    alerts: list[Alert] = []
    armed = {"trend": True, "breach": True}
    for i in range(rule.window, len(points)):
        start, value = points[i]
        band = learn_band(reference, rule)
        recent = [v for _, v in points[max(0, i - rule.trend_points + 1) : i + 1]]
        if not band.contains(value):
            pending.clear()
            if armed["breach"]:
                alerts.append(Alert(series.name, "breach", start, value, band, rule.severity))
                armed = {"trend": False, "breach": False}
            continue
        alert = _trend(series.name, start, value, recent, band, rule)
        if alert is not None:
            pending.clear()
            if armed["trend"]:
                alerts.append(alert)
                armed["trend"] = False
            continue
        if _centred(recent, band):
            armed = {"trend": True, "breach": True}
        pending.append(value)
        if len(pending) > rule.trend_points:
            reference.append(pending.popleft())
    return alerts


def _over_threshold(name: str, points: list[tuple[int, float]], rule: AlertRule) -> list[Alert]:
    """A breach each time the value rises above ``absolute_high`` (re-armed below it)."""
    high = math.inf if rule.absolute_high is None else rule.absolute_high
    band = Band(high, -math.inf, high)
    alerts: list[Alert] = []
    armed = True
    for start, value in points:
        if value > high and armed:
            alerts.append(Alert(name, "breach", start, value, band, rule.severity))
        armed = value <= high
    return alerts


def _centred(recent: Sequence[float], band: Band) -> bool:
    high_room = band.high - band.center
    return all(abs(v - band.center) <= high_room / 2 for v in recent[-3:])


def _trend(
    name: str, start: int, value: float, recent: Sequence[float], band: Band, rule: AlertRule
) -> Alert | None:
    """A trend over the last ``trend_points`` buckets, or over the last half of them
    (a fast drift shows there first)."""
    if len(recent) < rule.trend_points:
        return None
    for n in (max(4, rule.trend_points // 2), rule.trend_points):
        alert = _trend_over(name, start, value, recent[-n:], band, rule)
        if alert is not None:
            return alert
    return None


def _trend_over(
    name: str, start: int, value: float, recent: Sequence[float], band: Band, rule: AlertRule
) -> Alert | None:
    intercept, slope, se = _fit(recent)
    if slope == 0 or (se > 0 and abs(slope) / se < MIN_T):
        return None
    n = len(recent)
    projected = intercept + slope * (n - 1 + rule.horizon)
    if band.contains(projected):
        return None
    tail = statistics.fmean(recent[-3:])
    half = (band.high - band.center) if slope > 0 else (band.center - band.low)
    if math.isinf(half) or (tail - band.center) * math.copysign(1, slope) < half / 4:
        return None  # still near the centre: a wobble, not a drift
    return Alert(name, "trend", start, value, band, rule.severity, slope, projected, rule.horizon)


def evaluate(
    all_series: dict[str, Series], rules: Iterable[AlertRule] = DEFAULT_RULES
) -> list[Alert]:
    """Every alert of every watched metric; the first rule matching a metric applies."""
    rules = tuple(rules)
    alerts: list[Alert] = []
    for name in sorted(all_series):
        rule = next((r for r in rules if r.applies(name)), None)
        if rule is not None:
            alerts += evaluate_series(all_series[name], rule)
    return sorted(alerts, key=lambda a: (a.bucket, a.metric))


def finite(value: float | None) -> float | None:
    """JSON (and the ledger's canonical JSON) has no infinities or NaN: those become null."""
    return value if value is not None and math.isfinite(value) else None
