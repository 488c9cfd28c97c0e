"""The in-process forms: GuardedModel around a predict function, and the ASGI middleware."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from donjon.core import EventBus, MemorySink
from donjon.gateway import FirewallMiddleware, GuardedModel, Refused, build_pipeline
from donjon.gateway.pipeline import Pipeline
from tests.gateway.harness import Victim, serve_app, victim_scores, write_setup


@pytest.fixture
def pipeline(tmp_path: Path, victim: Victim) -> tuple[Pipeline, dict[str, str], MemorySink]:
    settings, keys = write_setup(
        tmp_path, victim, ["alice", "mallory"], {"hardening": {"decimals": 1}}
    )
    sink = MemorySink()
    return build_pipeline(settings, bus=EventBus([sink])), keys, sink


def test_guarded_model_answers_hardened_and_refuses_without_credentials(
    pipeline: tuple[Pipeline, dict[str, str], MemorySink], victim: Victim
) -> None:
    guarded_pipeline, keys, _ = pipeline
    guarded = GuardedModel(lambda rows: victim_scores(victim.model, rows), guarded_pipeline,
                           path="/predict")  # fmt: skip
    auth = {"Authorization": f"Bearer {keys['alice']}"}
    scores = np.asarray(guarded.predict(victim.x_test[:2], headers=auth))
    assert scores.shape == (2, 10)
    assert np.allclose(scores, np.round(scores, 1))
    with pytest.raises(Refused) as refused:
        guarded.predict(victim.x_test[:1], headers={})
    assert refused.value.status == 401


def test_guarded_model_blocks_a_boundary_walk(
    pipeline: tuple[Pipeline, dict[str, str], MemorySink], victim: Victim
) -> None:
    guarded_pipeline, keys, sink = pipeline
    guarded = GuardedModel(lambda rows: victim_scores(victim.model, rows), guarded_pipeline,
                           path="/predict")  # fmt: skip
    auth = {"authorization": f"Bearer {keys['mallory']}"}
    a, b = victim.x_test[0], victim.x_test[1]  # two digits of different classes
    label = victim.model.predict(a[None] / 16)[0]

    def binary_search() -> None:  # the attacker's search for the boundary between them
        low, high = 0.0, 1.0
        for _ in range(30):
            mid = (low + high) / 2
            scores = guarded.predict([(1 - mid) * a + mid * b], headers=auth)
            low, high = (mid, high) if int(np.argmax(scores)) == label else (low, mid)

    with pytest.raises(Refused) as refused:
        binary_search()
    assert refused.value.status == 403
    assert any(e.finding and e.finding.rule.id == "DJ-GW-001" for e in sink.events)


def test_a_failing_model_is_not_answered_as_success(
    pipeline: tuple[Pipeline, dict[str, str], MemorySink], victim: Victim
) -> None:
    guarded_pipeline, keys, _ = pipeline

    def broken(rows: Any) -> Any:
        raise ValueError("model crashed")

    guarded = GuardedModel(broken, guarded_pipeline, path="/predict")
    status, doc = guarded.handle(b'{"inputs": [[0]]}', {"x-api-key": keys["alice"]})
    assert status == 400  # validation first: 1 feature instead of 64
    status, doc = guarded.handle(
        ('{"inputs": [' + ",".join(["0"] * 64) + "]}").encode(), {"x-api-key": keys["alice"]}
    )
    assert status == 502
    assert doc["error"]["code"] == "upstream_error"


@pytest.mark.integration
def test_asgi_middleware_guards_model_routes_and_passes_health(
    pipeline: tuple[Pipeline, dict[str, str], MemorySink], victim: Victim
) -> None:
    guarded_pipeline, keys, _ = pipeline

    async def predict(request: Request) -> JSONResponse:
        rows = np.asarray((await request.json())["inputs"], dtype=float)
        return JSONResponse({"outputs": victim_scores(victim.model, rows).tolist()})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    inner = Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                              Route("/health", health), Route("/secret", health)])  # fmt: skip
    app = FirewallMiddleware(inner, guarded_pipeline, passthrough=["/health"])
    with serve_app(app) as url, httpx.Client(base_url=url) as client:
        assert client.get("/health").json() == {"ok": True}
        assert client.get("/secret").status_code == 404
        body = {"inputs": victim.x_test[:1].tolist()}
        assert client.post("/predict", json=body).status_code == 401
        ok = client.post("/predict", json=body, headers={"x-api-key": keys["alice"]})
        assert ok.status_code == 200
        assert "x-request-id" in ok.headers
        scores = np.asarray(ok.json()["outputs"])
        assert np.allclose(scores, np.round(scores, 1))


@pytest.mark.integration
def test_the_in_process_app_receives_the_rows_the_pipeline_checked(
    pipeline: tuple[Pipeline, dict[str, str], MemorySink], victim: Victim
) -> None:
    guarded_pipeline, keys, _ = pipeline
    received: list[tuple[bytes, str | None]] = []

    async def predict(request: Request) -> JSONResponse:
        body = await request.body()
        received.append((body, request.headers.get("content-length")))
        rows = np.asarray(json.loads(body)["inputs"], dtype=float)
        return JSONResponse({"outputs": victim_scores(victim.model, rows).tolist()})

    app = FirewallMiddleware(Starlette(routes=[Route("/predict", predict, methods=["POST"])]),
                             guarded_pipeline)  # fmt: skip
    checked = victim.x_test[:1].tolist()
    # duplicate keys: JSON's last one wins, and only it reaches the app
    raw = b'{"inputs": ' + json.dumps(victim.x_test[1:9].tolist()).encode()
    raw += b', "inputs": ' + json.dumps(checked).encode() + b"}"
    with serve_app(app) as url:
        ok = httpx.post(url + "/predict", content=raw, headers={"x-api-key": keys["alice"]})
        assert ok.status_code == 200
        assert len(ok.json()["outputs"]) == 1
        two = {"dataframe_split": {"data": checked}, "inputs": victim.x_test[1:9].tolist()}
        refused = httpx.post(url + "/predict", json=two, headers={"x-api-key": keys["alice"]})
        assert refused.status_code == 400
    assert len(received) == 1
    body, length = received[0]
    assert json.loads(body) == {"inputs": checked}
    assert length == str(len(body))
