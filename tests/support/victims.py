"""Small victim model servers on 127.0.0.1, shared by the tests and the benchmarks.

One server speaks three model servers' shapes, chosen by the request's path:

* ``/v2/models/NAME/infer``: KServe v2 tensors in, a ``probabilities`` tensor out;
* ``/invocations``: MLflow's ``{"dataframe_split": ...}`` in, ``{"predictions": ...}`` out;
* any other path: ``{"inputs": rows}`` in, ``{KEY: scores}`` out, ``KEY`` being
  ``plain_key`` (``"probabilities"`` unless told).

It echoes the request id and authorization it received (``x-seen-request-id``,
``x-seen-authorization``), so a test can see what a gateway forwarded.
:class:`Victim` is a model that can be swapped while served, with optional noise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from tests.support.threads import serving

Scores = Callable[[np.ndarray], np.ndarray]


@dataclass
class Victim:
    """What the server answers with; change ``scores`` to swap the deployed model.

    ``noise`` adds Gaussian noise of that scale to every probability (then
    renormalises), as a server with non-deterministic numerics would.
    """

    scores: Scores
    noise: float = 0.0
    seed: int = 0
    queries: int = 0
    _rng: np.random.Generator = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def answer(self, rows: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(self.scores(rows), dtype=np.float64)
        with self._lock:
            self.queries += len(rows)
            if self.noise:
                noisy = probabilities + self._rng.normal(0.0, self.noise, probabilities.shape)
                noisy = np.clip(noisy, 0.0, 1.0)
                probabilities = noisy / noisy.sum(axis=1, keepdims=True)
        return probabilities


def answer(path: str, doc: dict[str, Any], scores: Scores, plain_key: str) -> dict[str, Any]:
    """The answer of the server of ``path``'s kind to the request document ``doc``."""
    if path.startswith("/v2/"):
        tensor = doc["inputs"][0]
        rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        result = np.asarray(scores(rows), dtype=np.float64)
        name = path.split("/")[3] if path.count("/") >= 4 else "model"
        output = {"name": "probabilities", "shape": list(result.shape), "datatype": "FP64"}
        return {"model_name": name, "outputs": [{**output, "data": result.ravel().tolist()}]}
    if path.startswith("/invocations"):
        rows = np.asarray(doc["dataframe_split"]["data"], dtype=np.float64)
        return {"predictions": np.asarray(scores(rows)).tolist()}
    rows = np.asarray(doc["inputs"], dtype=np.float64)
    return {plain_key: np.asarray(scores(rows)).tolist()}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one response = headers + body, no 40 ms delayed-ACK stall
    scores: Scores
    plain_key: str

    def do_POST(self) -> None:
        doc = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        data = json.dumps(answer(self.path, doc, type(self).scores, self.plain_key)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-seen-request-id", self.headers.get("x-request-id", ""))
        self.send_header("x-seen-authorization", self.headers.get("authorization", ""))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the listen backlog: 64 concurrent clients must not be reset


def make_server(scores: Scores, port: int = 0, plain_key: str = "probabilities") -> _Server:
    """A threaded HTTP server on 127.0.0.1:``port`` (0: a free one), not yet serving."""
    handler = type("Handler", (_Handler,), {"scores": scores, "plain_key": plain_key})
    return _Server(("127.0.0.1", port), handler)


@contextmanager
def serve(scores: Scores, plain_key: str = "probabilities", route: str = "") -> Iterator[str]:
    """Serve ``scores`` on a free loopback port in a thread; yields its URL (+ ``route``)."""
    with serving(make_server(scores, plain_key=plain_key)) as url:
        yield f"{url}{route}"


def asgi_app(scores: Scores, plain_key: str = "probabilities") -> Any:
    """The same server as an ASGI app (for load tests: no thread-per-connection GIL convoy)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def predict(request: Request) -> Response:
        doc = json.loads(await request.body())
        data = json.dumps(answer(request.url.path, doc, scores, plain_key)).encode()
        return Response(data, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", predict, methods=["POST"])])
