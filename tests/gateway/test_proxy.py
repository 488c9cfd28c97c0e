"""The reverse proxy end to end over loopback HTTP: victim server, gateway, clients."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import numpy as np
import pytest

from donjon.core import EventBus, EventKind, MemorySink, Principal
from donjon.gateway import build_pipeline, create_proxy
from donjon.gateway.replies import Reply
from tests.gateway.harness import Gateway, Victim, serve_app, write_setup

pytestmark = pytest.mark.integration


def post(
    gw: Gateway, who: str | None, body: Any, path: str = "/predict", **kw: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {gw.keys[who]}"} if who else {}
    headers.update(kw.pop("headers", {}))
    return httpx.post(gw.url + path, json=body, headers=headers, timeout=10, **kw)


def test_benign_request_is_answered_with_the_request_id(make_gateway: Any, victim: Victim) -> None:
    gw = make_gateway()
    rows = victim.x_test[:3].tolist()
    response = post(gw, "alice", {"inputs": rows}, headers={"x-request-id": "req-12345678"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-12345678"
    scores = np.asarray(response.json()["outputs"])
    assert scores.shape == (3, 10)
    assert scores.argmax(1).tolist() == victim.model.predict(victim.x_test[:3] / 16).tolist()
    generated = post(gw, "alice", {"inputs": rows[:1]})
    assert len(generated.headers["x-request-id"]) == 32
    assert gw.findings() == []


def test_kserve_and_mlflow_requests_are_guarded_and_hardened(
    make_gateway: Any, victim: Victim
) -> None:
    gw = make_gateway({"hardening": {"top_k": 2, "decimals": 2}})
    x = victim.x_test[:2]
    kserve = post(gw, "bob", {"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32",
                                          "data": x.ravel().tolist()}]},
                  path="/v2/models/digits/infer")  # fmt: skip
    assert kserve.status_code == 200
    tensor = kserve.json()["outputs"][0]
    data = np.asarray(tensor["data"]).reshape(tensor["shape"])
    assert ((data > 0).sum(axis=1) <= 2).all()
    assert np.allclose(data, np.round(data, 2))
    split = {"dataframe_split": {"columns": [f"p{i}" for i in range(64)], "data": x.tolist()}}
    mlflow = post(gw, "bob", split, path="/invocations")
    assert mlflow.status_code == 200
    assert ((np.asarray(mlflow.json()["predictions"]) > 0).sum(axis=1) <= 2).all()


def test_label_only_mode(make_gateway: Any, victim: Victim) -> None:
    gw = make_gateway({"hardening": {"label_only": True}})
    response = post(gw, "alice", {"inputs": victim.x_test[:4].tolist()})
    assert response.json()["outputs"] == victim.model.predict(victim.x_test[:4] / 16).tolist()


@pytest.mark.parametrize(
    ("who", "headers", "body", "status", "code"),
    [
        (None, {}, {"inputs": [[0] * 64]}, 401, "unauthenticated"),
        (None, {"authorization": "Bearer djk_alice_" + "x" * 43}, {"inputs": [[0] * 64]}, 401,
         "unauthenticated"),
        ("eve", {}, {"inputs": [[0] * 64]}, 403, "forbidden"),
        ("alice", {}, {"inputs": [[0] * 63]}, 400, "invalid_request"),
        ("alice", {}, {"inputs": [[99] * 64]}, 400, "invalid_request"),
        ("alice", {}, {"inputs": [[0] * 64] * 300}, 400, "invalid_request"),
    ],
)  # fmt: skip
def test_refusals_carry_a_clear_json_error_and_an_event(
    make_gateway: Any,
    who: str | None,
    headers: Mapping[str, str],
    body: Any,
    status: int,
    code: str,
) -> None:
    gw = make_gateway({"allow": ["alice", "bob", "mallory", "trudy", "oscar"]})
    response = post(gw, who, body, headers=dict(headers))
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]
    assert gw.sink.events, "every refusal is recorded on the bus"
    if status == 403:
        assert gw.sink.events[-1].kind is EventKind.ACCESS


def test_unknown_paths_are_refused_and_metrics_are_served(make_gateway: Any) -> None:
    gw = make_gateway()
    assert httpx.get(gw.url + "/admin").status_code == 404
    post(gw, "alice", {"inputs": [[0] * 64]})
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'donjon_gateway_requests_total{decision="allow",model="digits",status="200"} 1.0' in (
        metrics
    )
    assert "donjon_gateway_pipeline_seconds_bucket" in metrics
    assert "donjon_gateway_ood_score_bucket" in metrics


def test_quota_exceeded_gives_429_with_retry_after(make_gateway: Any) -> None:
    gw = make_gateway(quotas=write_quota(principal_rate=0.01, principal_burst=3))
    codes = [post(gw, "alice", {"inputs": [[0] * 64]}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    last = post(gw, "alice", {"inputs": [[0] * 64]})
    assert int(last.headers["retry-after"]) >= 1
    assert post(gw, "bob", {"inputs": [[0] * 64]}).status_code == 200


def write_quota(**values: float) -> Any:
    from donjon.gateway.settings import QuotaConfig

    return QuotaConfig(**values)


class Exploding:
    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        raise RuntimeError("boom")


def test_an_unexpected_error_denies_and_emits_an_event(
    tmp_path: Any, victim: Victim, upstream: str
) -> None:
    settings, _ = write_setup(tmp_path, victim, ["alice"])
    sink = MemorySink()
    pipeline = build_pipeline(settings, bus=EventBus([sink]), authenticator=Exploding())
    with serve_app(create_proxy(pipeline, upstream)) as url:
        response = httpx.post(url + "/predict", json={"inputs": [[0] * 64]})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "gateway_error"
    assert [e.finding.rule.id for e in sink.events if e.finding] == ["DJ-GW-009"]


class Flaky:
    """An authenticator that raises until it is mended."""

    broken = True

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        if self.broken:
            raise RuntimeError("boom")
        return Principal(id="alice")


def test_fail_closed_events_are_one_per_window_with_the_count_of_denials(
    tmp_path: Any, victim: Victim
) -> None:
    from donjon.gateway.pipeline import GatewayRequest

    settings, _ = write_setup(tmp_path, victim, ["alice"])
    settings = settings.model_copy(update={"event_interval_seconds": 60.0})
    sink, flaky, now = MemorySink(), Flaky(), [0.0]
    pipeline = build_pipeline(settings, bus=EventBus([sink]), authenticator=flaky)
    pipeline.clock = lambda: now[0]
    request = GatewayRequest("POST", "/predict", {}, b'{"inputs": [[' + b"0," * 63 + b"0]]}")

    def denials() -> list[Any]:
        found = [e.finding for e in sink.events if e.finding]
        return [f.evidence["denied"] for f in found if f.rule.id == "DJ-GW-009"]

    for second in range(5):  # an outage: five requests denied within one window
        now[0] = float(second)
        assert pipeline.admit(request).status == 500  # type: ignore[union-attr]
    assert denials() == [1]  # said at once, then counted
    now[0], flaky.broken = 70.0, False  # mended; the next answer reports the rest
    admitted = pipeline.admit(request)
    assert not isinstance(admitted, Reply)
    pipeline.complete(admitted, 200, b'{"outputs": [[0.9, 0.1]]}')
    assert denials() == [1, 4]
    asyncio.run(pipeline.aclose())
    assert denials() == [1, 4]  # nothing left to report
    flaky.broken = True
    now[0] = 80.0
    pipeline.admit(request)
    assert denials() == [1, 4, 1]  # a new window
    asyncio.run(pipeline.aclose())
    assert denials() == [1, 4, 1]


def test_upstream_down_is_a_502(tmp_path: Any, victim: Victim) -> None:
    settings, keys = write_setup(tmp_path, victim, ["alice"])
    pipeline = build_pipeline(settings)
    with serve_app(create_proxy(pipeline, "http://127.0.0.1:1")) as url:
        response = httpx.post(url + "/predict", json={"inputs": [[0] * 64]},
                              headers={"authorization": f"Bearer {keys['alice']}"})  # fmt: skip
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"
