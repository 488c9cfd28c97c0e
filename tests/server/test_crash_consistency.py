"""A real ``donjon server`` SIGKILLed at random points of pushes: every stored version still
has its evidence in the ledger (the outbox pattern), and the ledger verifies."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from donjon.cli.main import main
from donjon.storage.sql import open_database
from tests.server.process import prepare_home, running_server, server_env

pytestmark = pytest.mark.integration


def _pusher(url: str, token: str, stop: threading.Event, worker: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        while not stop.is_set():
            body = os.urandom(random.randint(1_000, 40_000))  # noqa: S311 - sizes, not secrets
            kind = "models" if worker % 2 else "datasets"
            try:
                client.post(f"/v1/{kind}/crash-{worker}/versions", content=body)
            except httpx.HTTPError:
                return  # the server died under us


def _ledger_events(database_url: str) -> list[dict[str, Any]]:
    db = open_database(database_url)
    try:
        with db.engine.connect() as connection:
            bodies = connection.execute(text("SELECT body FROM audit_ledger ORDER BY seq"))
            return [json.loads(body)["event"] for (body,) in bodies]
    finally:
        db.dispose()


def _versions(database_url: str) -> list[tuple[str, str, int, str]]:
    db = open_database(database_url)
    try:
        with db.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT kind, name, number, digest FROM registry_versions")
            )
            return [(str(k), str(n), int(v), str(d)) for k, n, v, d in rows]
    finally:
        db.dispose()


def test_sigkill_mid_push_never_leaves_a_version_without_its_events(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    token = prepare_home(home, database_url, monkeypatch, capsys)
    env = server_env(home, database_url)
    rng = random.Random(22)  # noqa: S311 - kill times, not secrets
    for _ in range(4):
        with running_server(env) as (proc, url):
            stop = threading.Event()
            pushers = [
                threading.Thread(target=_pusher, args=(url, token, stop, w)) for w in range(4)
            ]
            for t in pushers:
                t.start()
            time.sleep(rng.uniform(0.5, 1.5))
            proc.send_signal(signal.SIGKILL)  # mid-push: some requests are in flight
            proc.wait(timeout=30)
            stop.set()
            for t in pushers:
                t.join(timeout=30)
    versions = _versions(database_url)
    assert len(versions) >= 4  # the server did store things between the kills
    events = _ledger_events(database_url)
    stored = {
        (e["attributes"]["resource"], e["attributes"]["digest"])
        for e in events
        if e["action"].endswith(".write") and e["outcome"] == "success"
        and e["message"].endswith(": stored")
    }  # fmt: skip
    scanned = {e["attributes"]["resource"] for e in events if e["action"] == "registry.gate.scan"}
    for kind, name, number, digest in versions:
        where = f"{kind}s/{name}@{number}"
        assert (where, digest) in stored, f"{where} has no 'stored' event in the ledger"
        if kind == "model":
            assert where in scanned, f"{where} has no scan-gate event in the ledger"
    # and no evidence of a version that does not exist
    assert len(stored) == len(versions)
    assert main(["audit", "verify"]) == 0
