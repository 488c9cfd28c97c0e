"""The gateway in front of model servers of every kind: their answers, hardened; labels read.

Loopback stub servers answer in the documented response shapes of KServe v1/v2,
Triton, MLflow, TorchServe, BentoML and plain servers; MLflow's own scoring
server serves a scikit-learn model (when mlflow installs). For each shape: every
hardening mode, and the evasion detector (which needs the model's labels) stops a
boundary walk; an answer the gateway cannot read is forwarded with one event.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.gateway.harness import Gateway, Victim, serve_app, serve_gateway, write_setup

pytestmark = pytest.mark.integration

CLASSES = [f"digit-{i}" for i in range(10)]
COLUMNS = [f"p{i}" for i in range(64)]
Render = Callable[[np.ndarray], Any]  # scores (rows x 10) -> the server's JSON answer


def kserve_v2(scores: np.ndarray) -> Any:
    return {
        "model_name": "digits",
        "outputs": [
            {"name": "output_label", "shape": [len(scores)], "datatype": "INT64",
             "data": scores.argmax(1).tolist()},
            {"name": "output_probability", "shape": list(scores.shape), "datatype": "FP32",
             "data": scores.ravel().tolist()},
        ],
    }  # fmt: skip


SHAPES: dict[str, Render] = {
    "mlflow-kserve-v1": lambda s: {"predictions": s.tolist()},
    "kserve-v2-triton": kserve_v2,
    "torchserve-top5": lambda s: [
        {CLASSES[c]: float(row[c]) for c in np.argsort(-row)[:5]} for row in s
    ],
    "torchserve-mapping": lambda s: {CLASSES[c]: float(v) for c, v in enumerate(s[0])},
    "bentoml-array": lambda s: s.tolist(),
    "probabilities": lambda s: {"probabilities": s.tolist()},
    "scores": lambda s: {"scores": s.tolist(), "model": "v3"},
    "logits": lambda s: {"logits": np.log(s + 1e-9).tolist()},
    "labels": lambda s: {"labels": [CLASSES[c] for c in s.argmax(1)]},
    "records": lambda s: {"predictions": [dict(zip(CLASSES, r, strict=True)) for r in s]},
    "pointer": lambda s: {"result": {"batch": [{"probs": s.tolist()}]}},
}
SETTINGS: dict[str, dict[str, Any]] = {"pointer": {"output": "/result/batch/0/probs"}}


class _Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    victim: Victim
    seen: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.seen.append(body)
        rows = np.asarray(json.loads(body)["inputs"], dtype=np.float64)
        scores = self.victim.model.predict_proba(rows / 16)
        shape = self.path.rsplit("/", 1)[-1]
        answer = (
            b"model says: " + str(scores.argmax(1).tolist()).encode()
            if shape == "text"
            else json.dumps(SHAPES[shape](scores)).encode()
        )
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def stub_server(victim: Victim) -> Iterator[tuple[str, list[bytes]]]:
    seen: list[bytes] = []
    handler = type("Handler", (_Stub,), {"victim": victim, "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def stub(victim: Victim) -> Iterator[tuple[str, list[bytes]]]:
    with stub_server(victim) as served:
        yield served


MODES: dict[str, dict[str, Any]] = {
    "plain": {},
    "topk": {"top_k": 2},
    "rounded": {"decimals": 1},
    "labels": {"label_only": True},
}


@contextmanager
def gateway(
    tmp_path: Path,
    victim: Victim,
    upstream: str,
    *,
    modes: tuple[str, ...] = ("plain",),
    **model: Any,
) -> Iterator[Gateway]:
    """A gateway guarding the stub at ``/<mode>/<shape>``, one model per hardening mode."""
    settings, keys = write_setup(tmp_path, victim, ["alice", "mallory"], model)
    base = settings.models[0]
    models = [
        base.model_copy(
            update={
                "name": f"digits-{mode}",
                "routes": [f"/{mode}"],
                "hardening": base.hardening.model_copy(update=MODES[mode]),
            }
        )
        for mode in modes
    ]
    with serve_gateway(settings.model_copy(update={"models": models}), keys, upstream) as gw:
        yield gw


def ask(gw: Gateway, who: str, shape: str, rows: np.ndarray, mode: str = "plain") -> httpx.Response:
    return httpx.post(
        f"{gw.url}/{mode}/{shape}",
        json={"inputs": np.asarray(rows).tolist()},
        headers={"authorization": f"Bearer {gw.keys[who]}"},
        timeout=10,
    )


def boundary_walk(victim: Victim, steps: int = 8) -> list[np.ndarray]:
    """A point, one of another class, then the bisection between them (HopSkipJump's start)."""
    x0 = victim.x_test[0]
    y0 = victim.model.predict(x0[None] / 16)[0]
    far = next(x for x in victim.x_test[1:] if victim.model.predict(x[None] / 16)[0] != y0)
    walk, lo, hi = [x0, far], x0, far
    for _ in range(steps):
        mid = (lo + hi) / 2
        walk.append(mid)
        if victim.model.predict(mid[None] / 16)[0] == y0:
            lo = mid
        else:
            hi = mid
    return walk


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_is_hardened_in_every_mode_and_feeds_the_detectors(
    tmp_path: Path, victim: Victim, stub: tuple[str, list[bytes]], shape: str
) -> None:
    url, _ = stub
    rows = victim.x_test[:3]
    truth = victim.model.predict_proba(rows / 16)
    with gateway(tmp_path, victim, url, modes=tuple(MODES), **SETTINGS.get(shape, {})) as gw:
        for mode in ("topk", "rounded", "labels"):
            answer = ask(gw, "alice", shape, rows, mode)
            assert answer.status_code == 200, answer.text
            check_hardened(shape, MODES[mode], answer.json(), truth)
        assert gw.findings() == []
        plain = ask(gw, "alice", shape, rows).json()
        assert plain == json.loads(json.dumps(SHAPES[shape](truth)))  # untouched, unhardened
        codes = [ask(gw, "mallory", shape, x[None]).status_code for x in boundary_walk(victim)]
        assert 403 in codes, codes
        assert codes.index(403) < 8, codes
        assert "DJ-GW-001" in {e.finding.rule.id for e in gw.findings("mallory")}


def scores_of(shape: str, doc: Any) -> np.ndarray:
    """The score table back out of an answer of ``shape`` (labels as one-hot rows)."""
    if shape == "kserve-v2-triton":
        tensor = doc["outputs"][1]
        return np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    if shape in ("torchserve-top5", "records"):
        rows = doc if shape == "torchserve-top5" else doc["predictions"]
        return np.asarray([[r.get(c, 0.0) for c in CLASSES] for r in rows], dtype=np.float64)
    if shape == "torchserve-mapping":
        return np.asarray([[doc[c] for c in CLASSES]], dtype=np.float64)
    if shape == "pointer":
        return np.asarray(doc["result"]["batch"][0]["probs"], dtype=np.float64)
    key = {"bentoml-array": None, "mlflow-kserve-v1": "predictions"}.get(shape, shape)
    return np.asarray(doc if key is None else doc[key], dtype=np.float64)


def check_hardened(shape: str, mode: dict[str, Any], doc: Any, truth: np.ndarray) -> None:
    labels = truth.argmax(1)
    if shape == "labels":  # nothing to take away from labels
        assert doc["labels"] == [CLASSES[c] for c in labels]
        return
    if mode.get("label_only"):
        if shape == "kserve-v2-triton":
            assert [t["datatype"] for t in doc["outputs"]] == ["INT64", "INT64"]
            assert doc["outputs"][1]["data"] == labels.tolist()
        elif shape == "torchserve-mapping":
            assert doc == CLASSES[labels[0]]
        elif shape in ("torchserve-top5", "records"):
            got = doc if shape == "torchserve-top5" else doc["predictions"]
            assert got == [CLASSES[c] for c in labels]
        else:
            got = scores_of(shape, doc)
            assert got.ravel().astype(int).tolist() == labels[: got.size].tolist()
        return
    scores = scores_of(shape, doc)
    assert (scores.argmax(1) == labels[: len(scores)]).all()
    if "top_k" in mode:
        if shape == "logits":
            kept = np.log(truth[: len(scores)] + 1e-9)
            assert (np.sort(scores, 1)[:, :-2] < np.sort(kept, 1)[:, -2:-1]).all()
            assert len({tuple(r[np.argsort(r)[:-2]]) for r in scores[:1]}) == 1
        elif shape != "torchserve-top5":
            assert ((scores > 0).sum(axis=1) <= 2).all()
        else:  # the top-5 rows keep their top 2
            assert ((scores > 0).sum(axis=1) <= 2).all()
    if "decimals" in mode:
        assert np.allclose(scores, np.round(scores, 1))


def test_an_unreadable_answer_is_forwarded_with_one_event_never_a_500(
    tmp_path: Path, victim: Victim, stub: tuple[str, list[bytes]], caplog: Any
) -> None:
    url, _ = stub
    with gateway(tmp_path, victim, url, modes=("topk",)) as gw:
        gw.pipeline.event_interval = 3600  # as deployed: one event per model per interval
        with caplog.at_level("INFO", logger="donjon.gateway"):
            answers = [ask(gw, "alice", "text", victim.x_test[i : i + 1], "topk") for i in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert answers[0].text.startswith("model says:")
        found = [e.finding for e in gw.findings()]
        assert [f.rule.id for f in found] == ["DJ-GW-010"]
        assert found[0].evidence["hardening_skipped"] is True
        said = [r.getMessage() for r in caplog.records if "cannot read its answers" in r.message]
        assert len(said) == 1, said


def test_auto_detection_says_once_what_it_found(
    tmp_path: Path, victim: Victim, stub: tuple[str, list[bytes]], caplog: Any
) -> None:
    url, _ = stub
    with gateway(tmp_path, victim, url) as gw, caplog.at_level("INFO", logger="donjon.gateway"):
        for i in range(3):
            assert ask(gw, "alice", "probabilities", victim.x_test[i : i + 1]).status_code == 200
    said = [r.getMessage() for r in caplog.records if "from its answers" in r.getMessage()]
    assert said == [
        "model digits-plain: reading probabilities at /probabilities (table) from its answers"
    ]


def test_the_two_body_bypass_never_reaches_the_model(
    tmp_path: Path, victim: Victim, stub: tuple[str, list[bytes]]
) -> None:
    """A decoy row for the gateway, a thousand rows for the model: refused, nothing sent."""
    url, seen = stub
    with gateway(tmp_path, victim, url, api="auto", max_rows=256) as gw:
        before = len(seen)
        decoy = {"columns": [f"p{i}" for i in range(64)], "data": victim.x_test[:1].tolist()}
        body = {"dataframe_split": decoy, "inputs": victim.x_test[:1].tolist() * 1000}
        answer = httpx.post(
            f"{gw.url}/plain/probabilities",
            json=body,
            headers={"authorization": f"Bearer {gw.keys['mallory']}"},
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_request"
        assert len(seen) == before
        # duplicate keys: the model receives exactly the rows the gateway checked
        raw = b'{"inputs": [[0]], "inputs": ' + json.dumps(victim.x_test[:2].tolist()).encode()
        raw += b"}"
        answer = httpx.post(
            f"{gw.url}/plain/probabilities",
            content=raw,
            headers={"authorization": f"Bearer {gw.keys['alice']}", "content-type": "text/x"},
        )
        assert answer.status_code == 200
        assert json.loads(seen[-1]) == {"inputs": victim.x_test[:2].tolist()}
        findings = gw.findings("mallory")
        assert [e.finding.rule.id for e in findings] == ["DJ-GW-008"]


# -- MLflow's own scoring server -----------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: Any, victim: Victim) -> Iterator[str]:
    with warnings.catch_warnings():  # mlflow's import-time notes about its own type hints
        warnings.simplefilter("ignore")
        sklearn_flavor = pytest.importorskip("mlflow.sklearn")
        import mlflow.pyfunc
        from mlflow.pyfunc import scoring_server
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame(victim.x_train, columns=COLUMNS)  # named, as MLflow's frames are
    model = LogisticRegression(max_iter=2000).fit(frame, victim.y_train)
    path = tmp_path_factory.mktemp("mlflow") / "model"
    sklearn_flavor.save_model(
        model,
        str(path),
        pip_requirements=["scikit-learn"],  # no dependency inference (no subprocess)
        pyfunc_predict_fn="predict_proba",
        serialization_format="cloudpickle",
    )
    app = scoring_server.init(mlflow.pyfunc.load_model(str(path)))
    with serve_app(app) as url:
        yield url


@pytest.mark.parametrize("mode", [{}, {"top_k": 1}, {"label_only": True}])
def test_mlflow_scoring_server_behind_the_gateway(
    tmp_path: Path, victim: Victim, mlflow_server: str, mode: dict[str, Any]
) -> None:
    settings, keys = write_setup(
        tmp_path, victim, ["alice"], {"routes": ["/invocations"], "hardening": mode}
    )
    with serve_gateway(settings, keys, mlflow_server) as gw:
        headers = {"authorization": f"Bearer {keys['alice']}"}
        split = {"columns": COLUMNS, "data": victim.x_test[:3].tolist()}
        records = [dict(zip(COLUMNS, row, strict=True)) for row in victim.x_test[:3].tolist()]
        for body in ({"dataframe_split": split}, {"dataframe_records": records}):
            answer = httpx.post(gw.url + "/invocations", json=body, headers=headers, timeout=30)
            assert answer.status_code == 200, answer.text
            predictions = np.asarray(answer.json()["predictions"])
            if mode.get("label_only"):
                assert predictions.shape == (3,)
            elif mode.get("top_k"):
                assert ((predictions > 0).sum(axis=1) == 1).all()
            else:
                assert np.allclose(predictions.sum(axis=1), 1.0)
        bypass = {"dataframe_split": split, "inputs": victim.x_test[:1].tolist() * 300}
        refused = httpx.post(gw.url + "/invocations", json=bypass, headers=headers)
        assert refused.status_code == 400
        guard = gw.pipeline.models[0]
        assert "predictions" in str(guard.reader._said)
