"""``donjon mlflow serve`` stops within its drain deadline when MLflow is gone.

A real ``mlflow server`` and a real receiver; MLflow is stopped, three signed
deliveries are accepted (202), and a SIGTERM ends the receiver after its drain
deadline instead of after MLflow's client has retried for minutes: the
deliveries it could not handle are named on stderr and recorded as events.
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
from tests.integrations.mlflow_env import SECRET, donjon_receiver, mlflow_server

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


def test_sigterm_with_mlflow_gone_stops_at_the_drain_deadline(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with mlflow_server(tmp_path / "mlflow") as tracking_server:
        tracking = tracking_server.ready()
        args = ("--workers", "1", "--drain-seconds", "1")
        with donjon_receiver(home, tracking, *args) as receiver_server:
            receiver = receiver_server.ready()  # warmed up: MLflow answered once
            tracking_server.proc.send_signal(signal.SIGTERM)
            assert tracking_server.proc.wait(timeout=30) is not None
            ids = [_deliver(receiver, "churn", str(v)) for v in (1, 2, 3)]
            time.sleep(0.5)  # the lane has the first in hand, MLflow's client retrying
            proc = receiver_server.proc
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            took = time.monotonic() - began
    said = receiver_server.log.read_text()
    assert code in (0, -signal.SIGTERM), said  # uvicorn re-raises the signal it handled
    assert took < 15, f"{took:.1f} s to stop: {said}"  # MLflow's retries alone take minutes
    assert "3 accepted MLflow deliveries not handled" in said
    assert all(i in said for i in ids)
    assert "donjon mlflow review NAME VERSION" in said
