"""Victim models served over plain HTTP on 127.0.0.1, swappable while served.

``{"inputs": rows}`` in, ``{"probabilities": [[...], ...]}`` out; ``noise``
adds Gaussian noise of that scale to every probability (then renormalises), as
a server with non-deterministic numerics would. Shared by the tests and
``benchmarks/watch_bench.py``.
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

Scores = Callable[[np.ndarray], np.ndarray]


@dataclass
class Victim:
    """What the server answers with; change ``scores`` to swap the deployed model."""

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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    victim: Victim

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        rows = np.asarray(json.loads(body)["inputs"], dtype=np.float64)
        data = json.dumps({"probabilities": self.victim.answer(rows).tolist()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(victim: Victim) -> Iterator[str]:
    """Serve ``victim`` on a free loopback port; yields the URL of its predict route."""
    handler = type("Handler", (_Handler,), {"victim": victim})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
