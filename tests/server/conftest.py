"""The vault served over real HTTP (uvicorn on 127.0.0.1, a free port) with port fakes."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from donjon.core.identity import Principal, PrincipalKind
from donjon.server import ServerLimits, create_app
from donjon.server.auth_failures import SharedFailures
from tests.registry.fakes import TokenAuthenticator
from tests.registry.harness import Vault, make_vault

MAX_UPLOAD = 256 * 1024
TOKEN_SEED = secrets.token_urlsafe(24)


@dataclass
class Served:
    vault: Vault
    app: FastAPI
    url: str
    tokens: dict[str, str]  # principal id -> token

    def token(self, who: str) -> str:
        return self.tokens[who]


def build_app(
    vault: Vault, limits: ServerLimits | None = None, shared_failures: SharedFailures | None = None
) -> tuple[FastAPI, dict[str, str]]:
    principals = {
        "alice": Principal("alice"),
        "bob": Principal("bob"),
        "ci": Principal("ci", PrincipalKind.SERVICE),
        "admin": Principal("admin"),
    }
    tokens = {who: f"djt_{who}_{TOKEN_SEED}" for who in principals}  # the same for every app
    authenticator = TokenAuthenticator({tokens[w]: p for w, p in principals.items()})
    app = create_app(
        vault.registry,
        authenticator,
        vault.registry.bus,
        # no 429 and no aggregation: these tests count each refusal (test_auth_failures does not)
        limits=limits
        or ServerLimits(
            max_upload_bytes=MAX_UPLOAD,
            max_json_bytes=64 * 1024,
            auth_failure_limit=0,
            auth_failure_window=0,
        ),
        shared_failures=shared_failures,
    )
    return app, tokens


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 and a free port; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="info", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Served]:
    vault = make_vault(database_url, tmp_path / "blobs", max_blob_size=MAX_UPLOAD)
    app, tokens = build_app(vault)
    try:
        with serve(app) as url:
            yield Served(vault, app, url, tokens)
    finally:
        vault.db.dispose()
