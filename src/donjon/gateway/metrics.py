"""Prometheus metrics of one gateway (its own registry, exposed on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "donjon_gateway_requests",
            "Requests by model, decision and status code.",
            ["model", "decision", "status"],
            registry=self.registry,
        )
        self.queries = Counter(
            "donjon_gateway_queries",
            "Input rows seen, by model.",
            ["model"],
            registry=self.registry,
        )
        self.signals = Counter(
            "donjon_gateway_detector_signals",
            "Detector signals by detector and action.",
            ["model", "detector", "action"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "donjon_gateway_request_seconds",
            "Time from request to response, upstream included.",
            ["model"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=self.registry,
        )
        self.overhead = Histogram(
            "donjon_gateway_pipeline_seconds",
            "Time spent in the gateway's own rules (upstream excluded).",
            ["model"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05),
            registry=self.registry,
        )
        self.ood_score = Histogram(
            "donjon_gateway_ood_score",
            "Per-input out-of-distribution score (1 = the calibrated threshold).",
            ["model"],
            buckets=(0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 4.0),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
