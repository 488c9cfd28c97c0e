"""Prometheus metrics of every ML task Donjon guards, fed by the event bus.

:class:`DonjonMetrics` is an event sink: subscribe it to the bus and every
capability's events become metrics (scans, data checks, gateway traffic and
detector scores, access decisions, authentications, alerts). Outbox lag and
dead letters are read from the delivery dispatcher at scrape time.
:func:`metrics_app` is the ASGI ``/metrics`` app any server can mount.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from donjon.core.events import EventKind, SecurityEvent

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


def _label(value: object, default: str = "unknown") -> str:
    text = str(value) if value not in (None, "") else default
    return text[:128]


class DonjonMetrics:
    """A registry of Donjon's metrics; ``emit`` makes it an event sink."""

    name = "metrics"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(
            "donjon_events", "Security events by kind, source and severity",
            ["kind", "source", "severity"], registry=r,
        )  # fmt: skip
        self.findings = Counter(
            "donjon_findings", "Findings by source, rule and severity",
            ["source", "rule", "severity"], registry=r,
        )  # fmt: skip
        self.scans = Counter("donjon_scans", "Scans run, by outcome", ["outcome"], registry=r)
        self.data_checks = Counter(
            "donjon_data_checks", "Dataset checks run, by check and outcome",
            ["check", "outcome"], registry=r,
        )  # fmt: skip
        self.gateway_requests = Counter(
            "donjon_gateway_requests", "Inference requests through the gateway",
            ["model", "outcome"], registry=r,
        )  # fmt: skip
        self.gateway_latency = Histogram(
            "donjon_gateway_latency_seconds", "Gateway request latency", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.detector_score = Histogram(
            "donjon_detector_score", "Scores of the gateway's detectors (0..1)", ["detector"],
            buckets=SCORE_BUCKETS, registry=r,
        )  # fmt: skip
        self.robustness = Gauge(
            "donjon_watch_robustness",
            "Median relative L2 distance to the decision boundary of a watched model (last probe)",
            ["model", "version"], registry=r,
        )  # fmt: skip
        self.access = Counter(
            "donjon_access_decisions", "Access decisions by action and effect",
            ["action", "effect"], registry=r,
        )  # fmt: skip
        self.authentications = Counter(
            "donjon_authentications", "Authentications by outcome", ["outcome"], registry=r
        )
        self.alerts = Counter(
            "donjon_alerts", "Monitor alerts by metric and type", ["metric", "type"], registry=r
        )

    def emit(self, event: SecurityEvent) -> None:
        """Count ``event`` (the bus calls this for every published event)."""
        attrs = event.attributes
        self.events.labels(event.kind.value, event.source, event.severity.label).inc()
        if event.finding is not None:
            self.findings.labels(event.source, event.finding.rule.id, event.severity.label).inc()
        if event.kind is EventKind.ACTIVITY and event.action.startswith("scan."):
            self.scans.labels(event.outcome.value).inc()
        if event.source == "data" and "check" in event.action:
            self.data_checks.labels(
                _label(attrs.get("check"), event.action), event.outcome.value
            ).inc()
        if event.source == "gateway" and event.kind in (EventKind.ACCESS, EventKind.ACTIVITY):
            model = _label(attrs.get("model"))
            self.gateway_requests.labels(model, event.outcome.value).inc()
            latency = attrs.get("latency_ms")
            if isinstance(latency, int | float) and not isinstance(latency, bool):
                self.gateway_latency.labels(model).observe(float(latency) / 1000.0)
        score = attrs.get("score")
        if attrs.get("detector") and isinstance(score, int | float):
            self.detector_score.labels(_label(attrs["detector"])).observe(float(score))
        robustness = attrs.get("robustness")
        if event.action == "watch.probe" and isinstance(robustness, int | float):
            model, version = _label(attrs.get("model")), _label(attrs.get("version"))
            self.robustness.labels(model, version).set(float(robustness))
        if event.decision is not None:
            self.access.labels(event.decision.action, event.decision.effect.value).inc()
        if event.kind is EventKind.AUTHENTICATION:
            self.authentications.labels(event.outcome.value).inc()
        if event.kind is EventKind.ALERT:
            self.alerts.labels(_label(attrs.get("metric")), _label(attrs.get("alert"))).inc()

    def track_outbox(
        self,
        lag: Callable[[], dict[str, int]],
        dead_letters: Callable[[], list[dict[str, Any]]] | None = None,
        guarantees: Mapping[str, str] | None = None,
    ) -> None:
        """Export the outbox's per-sink lag (and dead letters), read at each scrape, and
        each sink's delivery guarantee (``lossy`` for syslog over UDP)."""
        self.registry.register(_OutboxCollector(lag, dead_letters, dict(guarantees or {})))

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _OutboxCollector(Collector):
    def __init__(
        self,
        lag: Callable[[], dict[str, int]],
        dead: Callable[[], list[dict[str, Any]]] | None,
        guarantees: dict[str, str],
    ) -> None:
        self._lag, self._dead, self._guarantees = lag, dead, guarantees

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "donjon_outbox_lag_events", "Events stored but not yet delivered, per sink", None,
            ["sink"],
        )  # fmt: skip
        for sink, lag in sorted(self._lag().items()):
            gauge.add_metric([sink], lag)
        yield gauge
        if self._dead is not None:
            dead = GaugeMetricFamily(
                "donjon_outbox_dead_letters", "Events parked after failed deliveries", None,
                ["sink"],
            )  # fmt: skip
            counts: dict[str, int] = {}
            for row in self._dead():
                counts[str(row["sink"])] = counts.get(str(row["sink"]), 0) + 1
            for sink, count in sorted(counts.items()):
                dead.add_metric([sink], count)
            yield dead
        if self._guarantees:
            info = GaugeMetricFamily(
                "donjon_outbox_sink_guarantee",
                "1 per sink with its delivery guarantee: at-least-once, or lossy (syslog "
                "over UDP: 'delivered' there only means sent)", None, ["sink", "guarantee"],
            )  # fmt: skip
            for sink, guarantee in sorted(self._guarantees.items()):
                info.add_metric([sink, guarantee], 1)
            yield info


def metrics_app(metrics: DonjonMetrics) -> Any:
    """The ASGI app serving ``metrics`` in the Prometheus text format (mount at /metrics)."""
    return make_asgi_app(metrics.registry)
