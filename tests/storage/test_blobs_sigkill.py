"""A ``donjon server`` killed (SIGKILL) mid-upload: no version, a ledger that verifies,
no leftover part after the restart; and a SIGTERM that leaves the tail witnessed."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from donjon.audit import read_witness
from donjon.cli.main import main
from donjon.storage.ledger import SqlLedgerStore
from donjon.storage.sql import open_database
from tests.server.process import prepare_home, running_server, server_env

pytestmark = pytest.mark.integration


def _endless(started: threading.Event, stop: threading.Event) -> Iterator[bytes]:
    while not stop.is_set():
        yield b"\x00" * 65536
        started.set()
        time.sleep(0.02)


def test_a_killed_upload_leaves_nothing_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    url_db = f"sqlite+pysqlite:///{tmp_path / 'vault.db'}"
    token = prepare_home(home, url_db, monkeypatch, capsys)
    witness = tmp_path / "witness.jsonl"
    monkeypatch.setenv("DONJON_AUDIT__WITNESS_FILE", str(witness))
    env = server_env(home, url_db, DONJON_AUDIT__WITNESS_FILE=str(witness))
    headers = {"Authorization": f"Bearer {token}"}
    parts = home / "blobs" / "tmp"
    started, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def push(url: str) -> None:
        try:
            httpx.post(
                f"{url}/v1/datasets/killed/versions",
                content=_endless(started, stop),
                headers=headers,
                timeout=30,
            )
        except httpx.HTTPError as e:
            errors.append(e)

    with running_server(env) as (proc, url):
        pusher = threading.Thread(target=push, args=(url,))
        pusher.start()
        assert started.wait(10)
        deadline = time.monotonic() + 10
        while not any(p.stat().st_size for p in parts.glob("*.part")):
            assert time.monotonic() < deadline, "the upload never reached the blob store"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        stop.set()
        pusher.join(timeout=30)
    assert errors, "the client saw the connection die"
    assert list(parts.glob("*.part")), "the kill left the partial upload behind"

    with running_server(env) as (proc, url):
        assert list(parts.glob("*.part")) == [], "start-up removed the dead upload's part"
        versions = httpx.get(f"{url}/v1/datasets/killed/versions", headers=headers)
        assert versions.status_code == 404 or versions.json()["versions"] == []
        assert httpx.get(f"{url}/v1/whoami", headers=headers).status_code == 200
        proc.send_signal(signal.SIGTERM)  # a clean shutdown: the tail is signed and witnessed
        assert proc.wait(timeout=30) == 0

    db = open_database(url_db)
    try:
        last = read_witness(witness)[-1].seq
        after = [json.loads(b)["event"]["action"] for *_, b in SqlLedgerStore(db).rows(last + 1)]
    finally:
        db.dispose()
    assert set(after) <= {"audit.checkpoint"}, "nothing but announcements after the last one"
    assert main(["audit", "verify", "--witness", str(witness)]) == 0
    assert "witnessed checkpoints match" in capsys.readouterr().out
