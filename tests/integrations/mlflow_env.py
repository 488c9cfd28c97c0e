"""A real ``mlflow server`` on SQLite and a real ``donjon mlflow serve``, as subprocesses.

MLflow delivers webhooks only to public HTTPS addresses unless told otherwise:
the test server allows http and loopback (``MLFLOW_WEBHOOK_ALLOWED_SCHEMES``,
``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS``), the two settings a private deployment sets.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-webhook-secret-4b1d"  # noqa: S105 - a throwaway secret for the test servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}: {log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer: {log.read_text()[-4000:]}")


@dataclass
class Started:
    """A spawned server: wait for it with :meth:`ready`; it is stopped when its block ends."""

    proc: subprocess.Popen[bytes]
    url: str
    health: str
    log: Path

    def ready(self, timeout: float = 300) -> str:
        _wait(self.proc, self.health, self.log, timeout)
        return self.url


@contextmanager
def _spawned(args: list[str], env: dict[str, str], url: str, log: Path) -> Iterator[Started]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield Started(proc, url, f"{url}/health", log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[Started]:
    """``mlflow server`` on SQLite with proxied artifacts (started, not yet ready)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_CACHE_TTL="1",
        # no job runner: its eight processes (each importing MLflow) serve no webhook
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    folder.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with _spawned(args, env, f"http://127.0.0.1:{port}", folder / "mlflow.log") as started:
        yield started


@contextmanager
def donjon_receiver(home: Path, tracking_uri: str, *extra: str) -> Iterator[Started]:
    """``donjon mlflow serve`` against ``tracking_uri`` (started, not yet ready)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    env.update(DONJON_HOME=str(home), DONJON_MLFLOW_WEBHOOK_SECRET=SECRET)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    home.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable, "-m", "donjon", "mlflow", "serve",
        "--tracking-uri", tracking_uri, "--host", "127.0.0.1", "--port", str(port), *extra,
    ]  # fmt: skip
    with _spawned(args, env, f"http://127.0.0.1:{port}", home / "receiver.log") as started:
        yield started


class Relay:
    """A TCP relay in front of a server: :meth:`cut` closes its port and every connection
    through it, so that the server is gone for whoever was told the relay's address."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._open: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(self._target)
            with self._lock:
                if self._cut:
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # cut, or the other side closed

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
