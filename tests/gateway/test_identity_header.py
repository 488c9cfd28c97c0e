"""Identity from the deployment: a principal header believed only from trusted proxies;
request ids kept as the caller's correlation system wrote them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from donjon.core import PrincipalKind
from donjon.errors import AuthenticationError, ConfigError
from donjon.gateway import build_pipeline
from donjon.gateway.auth import TrustedHeaderAuthenticator
from tests.gateway.harness import Victim, serve_gateway, write_setup


def test_the_header_is_believed_only_from_trusted_addresses() -> None:
    auth = TrustedHeaderAuthenticator(
        "X-Client-Id", ["10.0.0.0/8", "fd00::/8"], groups_header="X-Client-Groups"
    )
    headers = {"x-client-id": "billing-svc", "x-client-groups": "scoring, batch"}
    principal = auth.principal(headers, "10.1.2.3")
    assert principal is not None
    assert (principal.id, principal.kind, principal.groups) == (
        "billing-svc",
        PrincipalKind.SERVICE,
        ("scoring", "batch"),
    )
    assert auth.principal(headers, "::ffff:10.9.9.9") is not None  # IPv4-mapped
    assert auth.principal(headers, "fd00::1") is not None
    assert auth.principal({}, "10.1.2.3") is None  # no header: other credentials decide
    for client in ("192.168.1.1", "127.0.0.1", None, "not-an-address"):
        with pytest.raises(AuthenticationError, match="only from trusted proxies"):
            auth.principal(headers, client)
    for bad in ("", "a b", "x" * 129, "caf\u00e9"):
        with pytest.raises(AuthenticationError, match="printable"):
            auth.principal({"x-client-id": bad}, "10.0.0.1")


def test_a_principal_header_needs_trusted_proxies() -> None:
    with pytest.raises(ConfigError, match="trusted_proxies"):
        TrustedHeaderAuthenticator("X-Client-Id", [])
    with pytest.raises(ConfigError, match="invalid trusted proxy"):
        TrustedHeaderAuthenticator("X-Client-Id", ["10.0.0.0/33"])


def gateway(tmp_path: Path, victim: Victim, upstream: str, trusted: list[str], **auth: Any) -> Any:
    settings, keys = write_setup(tmp_path, victim, ["alice"], {"allow": ["alice", "svc-a"]})
    update = {"principal_header": "X-Client-Id", "trusted_proxies": trusted, **auth}
    settings = settings.model_copy(update={"auth": settings.auth.model_copy(update=update)})
    build_pipeline(settings)  # the settings are valid
    return serve_gateway(settings, keys, upstream)


@pytest.mark.integration
def test_a_mesh_identity_is_served_from_a_trusted_proxy(
    tmp_path: Path, victim: Victim, upstream: str
) -> None:
    with gateway(tmp_path, victim, upstream, ["127.0.0.0/8"]) as gw:
        row = {"inputs": victim.x_test[:1].tolist()}
        answer = httpx.post(gw.url + "/predict", json=row, headers={"x-client-id": "svc-a"})
        assert answer.status_code == 200
        # the model's allow list applies to the header's principal as to any other
        denied = httpx.post(gw.url + "/predict", json=row, headers={"x-client-id": "svc-b"})
        assert denied.status_code == 403
        # without the header, API keys still work
        key = {"authorization": f"Bearer {gw.keys['alice']}"}
        assert httpx.post(gw.url + "/predict", json=row, headers=key).status_code == 200
        table = gw.pipeline.models[0].table  # the detectors keep the header's principal apart
        assert (table.get("svc-a").queries, table.get("alice").queries) == (1, 1)


@pytest.mark.integration
def test_the_header_from_an_untrusted_address_is_refused(
    tmp_path: Path, victim: Victim, upstream: str
) -> None:
    with gateway(tmp_path, victim, upstream, ["10.0.0.0/8"]) as gw:
        row = {"inputs": victim.x_test[:1].tolist()}
        key = {"authorization": f"Bearer {gw.keys['alice']}"}
        for headers in ({"x-client-id": "svc-a"}, {"x-client-id": "svc-a", **key}):
            answer = httpx.post(gw.url + "/predict", json=row, headers=headers)
            assert answer.status_code == 401
            assert answer.json()["error"]["message"] == "invalid credentials"
        findings = [e.finding for e in gw.findings()]
        assert [f.rule.id for f in findings] == ["DJ-GW-006", "DJ-GW-006"]
        assert all("trusted proxies" in f.message for f in findings)  # the reason stays inside


@pytest.mark.integration
@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("trace:4bf92f3577b34da6/00f067aa0ba902b7", True),
        ("a", True),
        ("ws://host/path?x=1;y=[2]", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("caf\u00e9", False),
    ],
)
def test_printable_request_ids_are_kept_and_forwarded(
    tmp_path: Path, victim: Victim, given: str, kept: bool
) -> None:
    settings, keys = write_setup(tmp_path, victim, ["alice"])
    with recording_upstream() as (url, seen), serve_gateway(settings, keys, url) as gw:
        answer = httpx.post(
            gw.url + "/predict",
            json={"inputs": victim.x_test[:1].tolist()},
            headers=[
                (b"authorization", f"Bearer {gw.keys['alice']}".encode()),
                (b"x-request-id", given.encode("utf-8")),
            ],
        )
    assert answer.status_code == 200
    returned = answer.headers["x-request-id"]
    assert (returned == given) is kept
    assert seen == [returned]  # the model got the same id


@contextmanager
def recording_upstream() -> Iterator[tuple[str, list[str]]]:
    """A model server that answers one score row and records the request ids it gets."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen.append(self.headers.get("x-request-id", ""))
            data = b'{"outputs": [[0.25, 0.75]]}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
