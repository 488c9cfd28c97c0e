"""``donjon mlflow serve`` stops within its drain deadline when MLflow is gone.

A real receiver that warms up against the package's real ``mlflow server``
through a relay; the relay is cut (MLflow's port is closed, its connections
dropped: MLflow is gone for the receiver), three signed deliveries are accepted
(202), and a SIGTERM ends the receiver after its drain deadline instead of after
MLflow's client has retried for minutes: the deliveries it could not handle are
named on stderr and recorded as events.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from donjon.integrations.mlflow.webhook import signature
from tests.integrations.mlflow_env import SECRET, Relay, Started, donjon_receiver

pytest.importorskip("mlflow")
pytestmark = pytest.mark.integration


def _deliver(receiver: str, name: str, version: str) -> str:
    delivery_id, stamp = str(uuid.uuid4()), str(int(time.time()))
    body = json.dumps({
        "entity": "model_version", "action": "created", "timestamp": int(stamp) * 1000,
        "data": {"name": name, "version": version, "source": f"models:/{name}/{version}"},
    }).encode()  # fmt: skip
    headers = {
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": signature(SECRET, delivery_id, stamp, body),
        "Content-Type": "application/json",
    }
    answer = httpx.post(f"{receiver}/webhook", content=body, headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    return delivery_id


def _in_hand(receiver: str) -> None:
    """Wait until the lane has taken the first delivery (two left queued)."""
    deadline = time.monotonic() + 30
    while httpx.get(f"{receiver}/health", timeout=10).json()["pending"] > 2:
        assert time.monotonic() < deadline, "the lane never took a delivery"
        time.sleep(0.05)


def test_sigterm_with_mlflow_gone_stops_at_the_drain_deadline(
    tmp_path: Path, mlflow_tracking: Started
) -> None:
    home = tmp_path / "home"
    relay = Relay(mlflow_tracking.ready())
    args = ("--workers", "1", "--drain-seconds", "1")
    try:
        with donjon_receiver(home, relay.url, *args) as receiver_server:
            receiver = receiver_server.ready()  # warmed up: MLflow answered once
            assert "could not reach MLflow" not in receiver_server.log.read_text()
            relay.cut()
            ids = [_deliver(receiver, "churn", str(v)) for v in (1, 2, 3)]
            _in_hand(receiver)  # MLflow's client now retrying for the first
            proc = receiver_server.proc
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            took = time.monotonic() - began
    finally:
        relay.cut()
    said = receiver_server.log.read_text()
    assert code in (0, -signal.SIGTERM), said  # uvicorn re-raises the signal it handled
    assert took < 30, f"{took:.1f} s to stop: {said}"  # MLflow's retries alone take minutes
    assert "3 accepted MLflow deliveries not handled" in said
    assert all(i in said for i in ids)
    assert "donjon mlflow review NAME VERSION" in said
