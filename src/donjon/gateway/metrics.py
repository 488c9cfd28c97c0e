"""Prometheus metrics of one gateway (its own registry, exposed on ``/metrics``).

Each metric is wrapped so that ``labels(...)`` returns the child from a plain
dict after its first use: prometheus-client validates and locks on every
``labels`` call, which showed up on the proxy's per-request profile.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

M = TypeVar("M", Counter, Histogram)


class Labelled(Generic[M]):
    """A labelled metric whose children are looked up once per label set."""

    def __init__(self, metric: M, max_children: int = 10_000) -> None:
        self.metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}
        self._max = max_children

    def labels(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self.metric.labels(*values)
            if len(self._children) < self._max:
                self._children[values] = child
        return child


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Labelled(
            Counter(
                "donjon_gateway_requests",
                "Requests by model, decision and status code.",
                ["model", "decision", "status"],
                registry=self.registry,
            )
        )
        self.queries = Labelled(
            Counter(
                "donjon_gateway_queries",
                "Input rows seen, by model.",
                ["model"],
                registry=self.registry,
            )
        )
        self.signals = Labelled(
            Counter(
                "donjon_gateway_detector_signals",
                "Detector signals by detector and action.",
                ["model", "detector", "action"],
                registry=self.registry,
            )
        )
        self.latency = Labelled(
            Histogram(
                "donjon_gateway_request_seconds",
                "Time from request to response, upstream included.",
                ["model"],
                buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
                registry=self.registry,
            )
        )
        self.overhead = Labelled(
            Histogram(
                "donjon_gateway_pipeline_seconds",
                "Time spent in the gateway's own rules (upstream excluded).",
                ["model"],
                buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05),
                registry=self.registry,
            )
        )
        self.ood_score = Labelled(
            Histogram(
                "donjon_gateway_ood_score",
                "Per-input out-of-distribution score (1 = the calibrated threshold).",
                ["model"],
                buckets=(0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 4.0),
                registry=self.registry,
            )
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
