"""The proxy's upstream clients against a scripted HTTP/1.1 server on loopback.

The scripted server answers each request by its path: a plain keep-alive answer,
a chunked one, one delimited by closing the connection, one that closes a kept-alive
connection without answering, a slow one and an oversized one. The gateway in front
is the real proxy (uvicorn on loopback) with both upstream clients.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from donjon.gateway import build_pipeline, create_proxy
from donjon.gateway.upstream import UpstreamPool
from tests.gateway.harness import Victim, serve_app, write_setup

pytestmark = pytest.mark.integration

ANSWER = json.dumps({"outputs": [[0.9] + [0.1 / 9] * 9]}).encode()


class Scripted(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.drop_next_kept = False  # close a kept-alive connection instead of answering
        self.lock = threading.Lock()


class _Handler(socketserver.StreamRequestHandler):
    server: Scripted

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        served = 0
        while True:
            line = self.rfile.readline()
            if not line:
                return
            method, target, _ = line.decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (header := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", "0")))
            self.server.seen.append((f"{method} {target}", headers, body))
            if served and self.server.drop_next_kept:
                self.server.drop_next_kept = False
                return  # the connection closes: the proxy must retry on a fresh one
            served += 1
            if not self._answer(target):
                return

    def _answer(self, target: str) -> bool:
        w = self.wfile
        if target.startswith("/chunked"):
            half = len(ANSWER) // 2
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip
            for part in (ANSWER[:half], ANSWER[half:]):
                w.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            w.write(b"0\r\n\r\n")
            return True
        if target.startswith("/close"):
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\n\r\n" + ANSWER)  # fmt: skip
            return False
        if target.startswith("/hints"):
            w.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n")
        if target.startswith("/twice"):  # a second, unasked-for answer on the same connection
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(ANSWER) + ANSWER
                    + b"HTTP/1.1 200 OK\r\ncontent-length: 9999\r\n\r\n{")  # fmt: skip
            return True
        if target.startswith("/slow"):
            threading.Event().wait(2.0)
        if target.startswith("/huge"):
            big = b'{"outputs": [[' + b"0.1," * 300_000 + b"0.1]]}"
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big)
            return True
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n" % len(ANSWER) + ANSWER)  # fmt: skip
        return True


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _gateway(tmp_path: Path, victim: Victim, upstream: str, **options: Any) -> Any:
    routes = ["/predict", "/chunked", "/close", "/slow", "/huge", "/hints", "/twice"]
    settings, keys = write_setup(tmp_path, victim, ["alice"], {"routes": routes})
    proxy = create_proxy(build_pipeline(settings), upstream, **options)
    return serve_app(proxy), {"authorization": f"Bearer {keys['alice']}"}


def _post(url: str, headers: dict[str, str], path: str = "/predict", **kw: Any) -> httpx.Response:
    return httpx.post(url + path, json={"inputs": [[0] * 64]}, headers=headers, timeout=10, **kw)


@pytest.mark.parametrize("client", ["pool", "httpx"])
def test_answers_are_read_whatever_their_framing(
    tmp_path: Path, victim: Victim, scripted: Scripted, client: str
) -> None:
    upstream = f"http://127.0.0.1:{scripted.server_address[1]}"
    served, auth = _gateway(tmp_path, victim, upstream, client=client)
    with served as url:
        paths = ["/predict", "/chunked", "/close", "/hints", "/twice", "/predict"]
        if client == "httpx":  # httpcore reads a second, unasked answer as the next one's
            paths.remove("/twice")
        for path in paths:
            response = _post(url, {**auth, "x-trace": "t1"}, path, params={"v": "1"})
            assert response.status_code == 200, (path, response.text)
            assert response.json() == json.loads(ANSWER)
            assert response.headers["content-type"] == "application/json"
    request_line, headers, body = scripted.seen[0]
    assert request_line == "POST /predict?v=1"
    assert "authorization" not in headers  # the caller's credentials stay at the gateway
    assert headers["x-trace"] == "t1"
    assert len(headers["x-request-id"]) == 32
    assert json.loads(body) == {"inputs": [[0] * 64]}


def test_the_pool_keeps_connections_alive_and_retries_one_closed_while_idle(
    tmp_path: Path, victim: Victim, scripted: Scripted
) -> None:
    upstream = f"http://127.0.0.1:{scripted.server_address[1]}"
    served, auth = _gateway(tmp_path, victim, upstream, client="pool")
    with served as url:
        codes = [
            httpx.post(url + "/predict", json={"inputs": [row.tolist()]}, headers=auth).status_code
            for row in victim.x_test[:20]
        ]
        assert codes == [200] * 20
        assert scripted.connections == 1  # one kept-alive connection served them all
        scripted.drop_next_kept = True
        again = httpx.post(url + "/predict", json={"inputs": [victim.x_test[30].tolist()]},
                           headers=auth)  # fmt: skip
        assert again.status_code == 200  # retried on a fresh connection
        assert scripted.connections == 2


@pytest.mark.parametrize("client", ["pool", "httpx"])
def test_a_slow_or_oversized_answer_is_refused(
    tmp_path: Path, victim: Victim, scripted: Scripted, client: str
) -> None:
    upstream = f"http://127.0.0.1:{scripted.server_address[1]}"
    # 1.5 s: under the 2 s of /slow, and room for the ordinary answer on a loaded machine
    served, auth = _gateway(tmp_path, victim, upstream, client=client, timeout=1.5)
    with served as url:
        slow = _post(url, auth, "/slow")
        assert slow.status_code == 504
        assert slow.json()["error"]["code"] == "upstream_unavailable"
        assert _post(url, auth).status_code == 200  # the pool recovers


def test_an_oversized_answer_is_a_502(tmp_path: Path, victim: Victim, scripted: Scripted) -> None:
    upstream = f"http://127.0.0.1:{scripted.server_address[1]}"
    settings, keys = write_setup(tmp_path, victim, ["alice"], {"routes": ["/huge"]})
    proxy = create_proxy(build_pipeline(settings), upstream)
    with serve_app(proxy) as url:
        assert isinstance(proxy._upstream, UpstreamPool)
        proxy._upstream.max_body = 100_000
        auth = {"authorization": f"Bearer {keys['alice']}"}
        response = _post(url, auth, "/huge")
    assert response.status_code == 502


@pytest.mark.parametrize(
    "raw_path", [b"/predict/../admin", b"/predict/%2e%2e/admin", b"/predict/./x", b"/predict\\x"]
)
def test_paths_that_could_be_read_two_ways_are_not_forwarded(
    tmp_path: Path, victim: Victim, scripted: Scripted, raw_path: bytes
) -> None:
    upstream = f"http://127.0.0.1:{scripted.server_address[1]}"
    served, auth = _gateway(tmp_path, victim, upstream)
    with served as url:
        port = int(url.rsplit(":", 1)[1])
        body = json.dumps({"inputs": [[0] * 64]}).encode()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(
                b"POST "
                + raw_path
                + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                + f"authorization: {auth['authorization']}\r\n".encode()
                + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                + body
            )
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 404") or answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert scripted.seen == []  # nothing reached the model


def test_health_metrics_and_methods_that_are_not_proxied(
    tmp_path: Path, victim: Victim, scripted: Scripted
) -> None:
    upstream = f"http://127.0.0.1:{scripted.server_address[1]}"
    served, auth = _gateway(tmp_path, victim, upstream)
    with served as url:
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}
        assert httpx.head(url + "/healthz").status_code == 200
        assert httpx.post(url + "/healthz").status_code == 405
        assert "donjon_gateway_requests" in httpx.get(url + "/metrics").text
        options = httpx.options(url + "/predict", headers=auth)
        assert options.status_code == 405
        assert options.json()["error"]["code"] == "method_not_allowed"
        assert httpx.get(url + "/elsewhere", headers=auth).status_code == 404
    assert scripted.seen == []
