"""Accepted deliveries, handled by a bounded pool of threads, in order per model version.

Each delivery goes to one of ``workers`` lanes, chosen by its model name and
version, and each lane is one thread taking its queue in order: deliveries
about one version (created, then alias, then tags) are handled one after the
other, while other versions are reviewed beside them. A full lane answers
``False`` (the receiver answers 503 and MLflow retries).

Stopping is bounded: :meth:`GateWorker.stop` lets the lanes work through their
queues until a deadline, then hands back what they did not get to (MLflow
being down, a lane can hang in its client's retries for minutes). The queues
are in memory and MLflow was answered 202: nothing re-sends those deliveries,
so the caller reports them.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque

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
        self._capacity = max(1, maxsize // lanes)
        self._lanes: list[deque[Delivery]] = [deque() for _ in range(lanes)]
        self._busy: list[Delivery | None] = [None] * lanes  # in hand, per lane
        self._changed = threading.Condition()  # guards lanes, busy and the flags below
        self._closing = False  # no new deliveries; lanes finish what they hold
        self._abandoned = False  # the drain deadline passed: lanes take nothing more
        self._threads: list[threading.Thread] = []

    def _lane(self, delivery: Delivery) -> int:
        name, version = delivery.data.get("name"), delivery.data.get("version")
        key = f"{name}\0{version}".encode(errors="replace")
        return zlib.crc32(key) % len(self._lanes)

    def submit(self, delivery: Delivery) -> bool:
        """Queue a delivery; ``False`` when its lane is full or the worker is stopping
        (answer 503: MLflow retries)."""
        lane = self._lanes[self._lane(delivery)]
        with self._changed:
            if self._closing or len(lane) >= self._capacity:
                return False
            lane.append(delivery)
            self._changed.notify_all()
        return True

    @property
    def pending(self) -> int:
        with self._changed:
            return sum(len(lane) for lane in self._lanes)

    def start(self) -> None:
        if not self._threads:
            self._threads = [
                threading.Thread(
                    target=self._run, args=(i,), name=f"donjon-mlflow-{i}", daemon=True
                )
                for i in range(len(self._lanes))
            ]
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float | None = None) -> list[Delivery]:
        """Finish what is queued, for at most ``timeout`` seconds (None: however long it
        takes), then stop. Returns the deliveries left unhandled, oldest first per lane: the
        one a lane still had in hand (MLflow not answering) and those queued behind it."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        end = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
        with self._changed:
            self._abandoned = True
            left = [
                d for busy, lane in zip(self._busy, self._lanes, strict=True)
                for d in ([busy] if busy is not None else []) + list(lane)
            ]  # fmt: skip
            for lane in self._lanes:
                lane.clear()
            self._changed.notify_all()
        self._threads = []
        return left

    def _run(self, index: int) -> None:
        lane = self._lanes[index]
        while True:
            with self._changed:
                while not lane and not self._closing:
                    self._changed.wait()
                if self._abandoned or not lane:
                    return
                delivery = self._busy[index] = lane.popleft()
            try:
                self.process(delivery)
            finally:
                with self._changed:
                    self._busy[index] = None

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
