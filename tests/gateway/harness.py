"""Attack and benign-traffic harness for the gateway, shared by tests and the benchmark.

A victim (scikit-learn MLP on scikit-learn's digits) served by a plain
``http.server`` on 127.0.0.1, the gateway served by uvicorn on 127.0.0.1, and
HTTP clients that speak to either. Attack clients wrap ART's black-box attacks
around :class:`HttpModel`; benign streams are generated from held-out digits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from donjon.core import EventBus, MemorySink
from donjon.gateway import build_pipeline, build_profile, create_proxy, new_api_key
from donjon.gateway.pipeline import Pipeline
from donjon.gateway.settings import GatewaySettings
from tests.support import victims

FEATURES = 64
CLASSES = 10


@dataclass
class Victim:
    model: MLPClassifier
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def train_victim(seed: int = 0) -> Victim:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.4, random_state=seed, stratify=y
    )
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=seed)
    model.fit(x_train / 16.0, y_train)
    return Victim(model, x_train, x_test, y_train, y_test)


def victim_scores(model: MLPClassifier, rows: np.ndarray) -> np.ndarray:
    result: np.ndarray = model.predict_proba(np.asarray(rows, dtype=np.float64) / 16.0)
    return result


@contextmanager
def serve_victim(model: MLPClassifier) -> Iterator[str]:
    """The victim on a threaded HTTP server on 127.0.0.1 (any of its shapes); yields its URL."""
    with victims.serve(functools.partial(victim_scores, model), plain_key="outputs") as url:
        yield url


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


@dataclass
class Gateway:
    url: str
    pipeline: Pipeline
    sink: MemorySink
    keys: dict[str, str] = field(default_factory=dict)  # principal -> API key
    clients: list[HttpModel] = field(default_factory=list)

    def client(self, principal: str, path: str = "/predict") -> HttpModel:
        """An HTTP client for ``principal``, closed with the gateway."""
        model = HttpModel(self.url, self.keys[principal], path)
        self.clients.append(model)
        return model

    def findings(self, principal: str | None = None) -> list[Any]:
        return [
            e for e in self.sink.events
            if e.finding is not None
            and (principal is None or e.finding.subject.principal == principal)
        ]  # fmt: skip


_PROFILES: dict[bytes, bytes] = {}  # the rows' digest -> the saved profile


def write_profile(rows: np.ndarray, path: Path) -> None:
    """The profile of ``rows`` saved at ``path``. Building is deterministic and costs about a
    second of CPU; most tests guard the same victim: each set of rows is profiled once."""
    key = hashlib.sha256(f"{rows.dtype}{rows.shape}".encode() + rows.tobytes()).digest()
    if key not in _PROFILES:
        build_profile(rows).save(path)
        _PROFILES[key] = path.read_bytes()
    else:
        path.write_bytes(_PROFILES[key])


def write_setup(
    folder: Path, victim: Victim, principals: list[str], model_extra: dict[str, Any] | None = None
) -> tuple[GatewaySettings, dict[str, str]]:
    """Key file, profile and settings for a gateway guarding the digits victim."""
    keys, entries = {}, []
    for principal in principals:
        token, entry = new_api_key(principal, principal)
        keys[principal] = token
        entries.append(entry)
    (folder / "keys.json").write_text(json.dumps({"keys": entries}))
    write_profile(victim.x_train, folder / "profile.json")
    model: dict[str, Any] = {
        "name": "digits",
        "routes": ["/predict", "/v2/models/digits/infer", "/invocations"],
        "allow": ["*"],
        "features": FEATURES,
        "min_value": 0,
        "max_value": 16,
        "profile": str(folder / "profile.json"),
    }
    model.update(model_extra or {})
    settings = GatewaySettings.model_validate(
        {
            "auth": {"api_keys_file": str(folder / "keys.json")},
            "quotas": {"principal_rate": 1e6, "principal_burst": 1e6},
            "event_interval_seconds": 0,
            "log_sample_rate": 0,
            "models": [model],
        }
    )
    return settings, keys


@contextmanager
def serve_gateway(
    settings: GatewaySettings, keys: dict[str, str], upstream: str
) -> Iterator[Gateway]:
    sink = MemorySink()
    pipeline = build_pipeline(settings, bus=EventBus([sink]))
    with serve_app(create_proxy(pipeline, upstream)) as url:
        gateway = Gateway(url, pipeline, sink, keys)
        try:
            yield gateway
        finally:
            for client in gateway.clients:
                client.close()


class Blocked(Exception):
    """The gateway refused a query."""

    def __init__(self, status: int, queries: int, body: dict[str, Any]) -> None:
        super().__init__(f"refused with {status} after {queries} queries")
        self.status = status
        self.queries = queries
        self.body = body


class HttpModel:
    """An attacker's or user's view of the model: rows in, scores out, over HTTP."""

    def __init__(self, url: str, token: str | None, path: str = "/predict") -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=url, headers=headers, timeout=30)
        self.path = path
        self.queries = 0  # rows answered
        self.log: list[np.ndarray] = []  # every row sent, in order

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64)).reshape(-1, FEATURES)
        response = self.client.post(self.path, json={"inputs": rows.tolist()})
        if response.status_code != 200:
            raise Blocked(response.status_code, self.queries, response.json())
        self.queries += len(rows)
        self.log.extend(rows)
        scores = np.asarray(response.json()["outputs"], dtype=np.float64)
        if scores.ndim == 1:  # label-only answers: one-hot them for ART
            scores = np.eye(CLASSES)[scores.astype(int)]
        return scores

    def close(self) -> None:
        self.client.close()


def victim_app(model: MLPClassifier) -> Any:
    """The same victim as an ASGI app (for load tests: no thread-per-connection GIL convoy)."""
    return victims.asgi_app(functools.partial(victim_scores, model), plain_key="outputs")


def main() -> None:
    """``python -m tests.gateway.harness PORT [--asgi]``: train the victim, serve it."""
    import sys

    victim = train_victim()
    if "--asgi" in sys.argv:
        import socket

        # an IPPROTO_TCP socket, so that asyncio turns Nagle off on its connections
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", int(sys.argv[1])))
        print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        config = uvicorn.Config(victim_app(victim.model), log_level="error", backlog=512)
        uvicorn.Server(config).run(sockets=[sock])
        return
    scores = functools.partial(victim_scores, victim.model)
    server = victims.make_server(scores, int(sys.argv[1]), plain_key="outputs")
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
