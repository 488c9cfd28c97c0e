"""Watched metrics as time series, computed from security events in fixed buckets.

| metric | per bucket |
|---|---|
| ``events`` | every event |
| ``requests:<principal>`` | ACCESS and DATA_ACCESS events of that principal |
| ``deny_ratio`` | denied share of ACCESS decisions |
| ``error_ratio`` | failed share of ACCESS, DATA_ACCESS, AUTHENTICATION and ACTIVITY events |
| ``auth_failure_ratio`` | failed share of AUTHENTICATION events |
| ``findings`` | FINDING events of medium severity or more |
| ``score:<detector>`` | mean of the ``score`` attribute of events naming that ``detector`` |
| ``latency_ms`` | 95th percentile of the ``latency_ms`` attribute |
| ``class_share:<label>`` | share of the ``predicted_class`` attribute taking that label |
| ``robustness:<model>`` | mean ``robustness`` of ``watch.probe`` events of that model |
| ``drift:<model>``, ``class_drift:<model>`` | largest ``drift_score`` / ``class_score`` |
| ``psi:<model>``, ``class_psi:<model>`` | largest ``psi`` / ``class_psi`` (not alerted) |

The last four come from ``watch.drift`` events; a drift score is ``-log10`` of
the corrected p-value of the drift tests.

Counts are 0 in a bucket without events; ratios, means and shares are left
out of a bucket where nothing was measured.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.severity import Severity

_COUNTED = ("events", "findings")
# attribute of a watch.drift event -> the series it feeds
DRIFT_SERIES = {
    "drift_score": "drift",
    "class_score": "class_drift",
    "psi": "psi",
    "class_psi": "class_psi",
}


@dataclass
class Series:
    """One metric: bucket start (epoch seconds) -> value, in time order."""

    name: str
    points: dict[int, float] = field(default_factory=dict)

    def values(self) -> list[tuple[int, float]]:
        return sorted(self.points.items())


@dataclass
class _Bucket:
    events: int = 0
    findings: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    access: int = 0
    denied: int = 0
    ops: int = 0
    failed: int = 0
    auth: int = 0
    auth_failed: int = 0
    scores: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    latencies: list[float] = field(default_factory=list)
    classes: Counter[str] = field(default_factory=Counter)
    robustness: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    drift: dict[str, float] = field(default_factory=dict)  # "psi:<model>" -> largest value


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def build_series(events: Iterable[SecurityEvent], bucket_seconds: int = 60) -> dict[str, Series]:
    """Every watched metric of ``events``, bucketed by event time."""
    buckets: dict[int, _Bucket] = defaultdict(_Bucket)
    principals: set[str] = set()
    labels: set[str] = set()
    for event in events:
        if event.kind is EventKind.ALERT:  # the monitor's own output is not traffic
            continue
        b = buckets[int(event.time.timestamp()) // bucket_seconds * bucket_seconds]
        b.events += 1
        failed = event.outcome is Outcome.FAILURE
        kind = event.kind
        if kind is EventKind.FINDING and event.severity >= Severity.MEDIUM:
            b.findings += 1
        if kind in (EventKind.ACCESS, EventKind.DATA_ACCESS) and event.principal is not None:
            b.requests[event.principal.id] += 1
            principals.add(event.principal.id)
        if kind is EventKind.ACCESS and event.decision is not None:
            b.access += 1
            b.denied += not event.decision.allowed
        if kind in (EventKind.ACCESS, EventKind.DATA_ACCESS, EventKind.AUTHENTICATION,
                    EventKind.ACTIVITY):  # fmt: skip
            b.ops += 1
            b.failed += failed
        if kind is EventKind.AUTHENTICATION:
            b.auth += 1
            b.auth_failed += failed
        attrs = event.attributes
        score = _number(attrs.get("score"))
        if score is not None and attrs.get("detector"):
            b.scores[str(attrs["detector"])].append(score)
        latency = _number(attrs.get("latency_ms"))
        if latency is not None:
            b.latencies.append(latency)
        robustness = _number(attrs.get("robustness"))
        if robustness is not None and event.action == "watch.probe":
            b.robustness[str(attrs.get("model"))].append(robustness)
        if event.action == "watch.drift":
            for key, series in DRIFT_SERIES.items():
                value = _number(attrs.get(key))
                if value is not None:
                    name = f"{series}:{attrs.get('model')}"
                    b.drift[name] = max(value, b.drift.get(name, value))
        if attrs.get("predicted_class") is not None:
            label = str(attrs["predicted_class"])
            b.classes[label] += 1
            labels.add(label)
    out: dict[str, Series] = {}

    def put(name: str, start: int, value: float) -> None:
        out.setdefault(name, Series(name)).points[start] = value

    if not buckets:
        return out
    first, last = min(buckets), max(buckets)
    for start in range(first, last + bucket_seconds, bucket_seconds):
        b = buckets.get(start, _Bucket())
        put("events", start, b.events)
        put("findings", start, b.findings)
        for principal in principals:
            put(f"requests:{principal}", start, b.requests[principal])
        if b.access:
            put("deny_ratio", start, b.denied / b.access)
        if b.ops:
            put("error_ratio", start, b.failed / b.ops)
        if b.auth:
            put("auth_failure_ratio", start, b.auth_failed / b.auth)
        for detector, scores in b.scores.items():
            put(f"score:{detector}", start, sum(scores) / len(scores))
        for name, value in b.drift.items():
            put(name, start, value)
        for model, values in b.robustness.items():
            put(f"robustness:{model}", start, sum(values) / len(values))
        if b.latencies:
            put("latency_ms", start, _p95(b.latencies))
        total = sum(b.classes.values())
        if total:
            for label in labels:
                put(f"class_share:{label}", start, b.classes[label] / total)
    return out


def bucket_time(start: int) -> datetime:
    return datetime.fromtimestamp(start, UTC)
