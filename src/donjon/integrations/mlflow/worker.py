"""Accepted deliveries, handled by a bounded pool of threads, in order per model version.

Each delivery goes to one of ``workers`` lanes, chosen by its model name and
version, and each lane is one thread taking its queue in order: deliveries
about one version (created, then alias, then tags) are handled one after the
other, while other versions are reviewed beside them. A full lane answers
``False`` (the receiver answers 503 and MLflow retries).
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib

from donjon.errors import InputError
from donjon.integrations.mlflow.gate import MlflowGate
from donjon.integrations.mlflow.verdict import activity
from donjon.integrations.mlflow.webhook import Delivery

log = logging.getLogger(__name__)


class GateWorker:
    """Handles deliveries on ``workers`` threads (at least one), ordered per version."""

    def __init__(self, gate: MlflowGate, maxsize: int = 1000, workers: int = 2) -> None:
        self.gate = gate
        lanes = max(1, workers)
        self._queues: list[queue.Queue[Delivery | None]] = [
            queue.Queue(max(1, maxsize // lanes)) for _ in range(lanes)
        ]
        self._threads: list[threading.Thread] = []

    def _lane(self, delivery: Delivery) -> queue.Queue[Delivery | None]:
        name, version = delivery.data.get("name"), delivery.data.get("version")
        key = f"{name}\0{version}".encode(errors="replace")
        return self._queues[zlib.crc32(key) % len(self._queues)]

    def submit(self, delivery: Delivery) -> bool:
        """Queue a delivery; ``False`` when its lane is full (answer 503: MLflow retries)."""
        try:
            self._lane(delivery).put_nowait(delivery)
        except queue.Full:
            return False
        return True

    @property
    def pending(self) -> int:
        return sum(q.qsize() for q in self._queues)

    def start(self) -> None:
        if not self._threads:
            self._threads = [
                threading.Thread(
                    target=self._run, args=(q,), name=f"donjon-mlflow-{i}", daemon=True
                )
                for i, q in enumerate(self._queues)
            ]
            for thread in self._threads:
                thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop."""
        for lane in self._queues if self._threads else ():
            lane.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _run(self, lane: queue.Queue[Delivery | None]) -> None:
        while (delivery := lane.get()) is not None:
            self.process(delivery)

    def process(self, delivery: Delivery) -> None:
        try:
            outcome = self.gate.handle(delivery)
        except InputError as e:
            log.warning("MLflow delivery %s refused: %s", delivery.delivery_id, e)
        except Exception as e:  # the worker must outlive one bad delivery (logged, published)
            log.exception("MLflow delivery %s failed", delivery.delivery_id)
            self.gate.bus.publish(
                activity(
                    "delivery_failed",
                    f"{delivery.event} not handled: {type(e).__name__}: {e}",
                    ok=False,
                    delivery=delivery.delivery_id,
                    data=dict(delivery.data),
                )
            )
        else:
            log.info("MLflow delivery %s (%s): %s", delivery.delivery_id, delivery.event, outcome)
