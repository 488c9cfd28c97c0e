"""Prometheus metrics of one gateway (its own registry, exposed on ``/metrics``).

Each metric is wrapped so that ``labels(...)`` returns the child from a plain
dict after its first use: prometheus-client validates and locks on every
``labels`` call, which showed up on the proxy's per-request profile. A request
goes further: :meth:`GatewayMetrics.model` hands the pipeline one model's
children together (:class:`ModelMetrics`), looked up once per request, and the
histograms observe through a bisection of their bounds rather than
prometheus-client's validation and linear scan (same buckets, same exposition).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "ModelMetrics"]


class _Histogram(Histogram):
    """A histogram whose children observe in a bisection and two increments."""

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        if exemplar is not None or not self._labelvalues or math.isnan(amount):
            super().observe(amount, exemplar)  # the library's checks and NaN handling
            return
        # the first bucket whose upper bound is at least ``amount`` (the last is +Inf)
        self._buckets[bisect_left(self._upper_bounds, amount)].inc(1)
        self._sum.inc(amount)


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


class ModelMetrics:
    """One model's metric children, fetched once: what a request updates."""

    def __init__(self, metrics: GatewayMetrics, model: str) -> None:
        self.name = model
        self.queries = metrics.queries.labels(model)
        self.ood_score = metrics.ood_score.labels(model)
        self.overhead = metrics.overhead.labels(model)
        self.latency = metrics.latency.labels(model)
        self._metrics = metrics
        self._requests: dict[tuple[str, int], Counter] = {}

    def requests(self, decision: str, status: int) -> Counter:
        """The request counter of this decision and status code."""
        child = self._requests.get((decision, status))
        if child is None:
            child = self._metrics.requests.labels(self.name, decision, str(status))
            if len(self._requests) < 100:  # status codes are few; bound it anyway
                self._requests[decision, status] = child
        return child


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._models: dict[str, ModelMetrics] = {}
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
            _Histogram(
                "donjon_gateway_request_seconds",
                "Time from request to response, upstream included.",
                ["model"],
                buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
                registry=self.registry,
            )
        )
        self.overhead = Labelled(
            _Histogram(
                "donjon_gateway_pipeline_seconds",
                "Time spent in the gateway's own rules (upstream excluded).",
                ["model"],
                buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05),
                registry=self.registry,
            )
        )
        self.ood_score = Labelled(
            _Histogram(
                "donjon_gateway_ood_score",
                "Per-input out-of-distribution score (1 = the calibrated threshold).",
                ["model"],
                buckets=(0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 4.0),
                registry=self.registry,
            )
        )

    def model(self, name: str) -> ModelMetrics:
        """The children of one model's metrics (models are configured, so few)."""
        found = self._models.get(name)
        if found is None:
            found = self._models[name] = ModelMetrics(self, name)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
