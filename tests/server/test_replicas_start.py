"""Several ``donjon server`` replicas started at once on one PostgreSQL database and one home
folder, before any ledger key exists: all of them serve, on one registered key."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from donjon.cli.main import main
from donjon.storage.ledger import SqlLedgerStore
from donjon.storage.sql import open_database
from tests.server.process import free_port, prepare_home, server_env, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REPLICAS = 3


def test_replicas_starting_at_once_create_and_register_one_ledger_key(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    token = prepare_home(home, postgres_url, monkeypatch, capsys)
    assert not (home / "keys" / "ledger.key.pem").exists()  # nothing has signed yet
    env = server_env(home, postgres_url, DONJON_AUDIT__CHECKPOINT_EVERY="1")
    ports = [free_port() for _ in range(REPLICAS)]
    logs = [home / f"replica-{i}.log" for i in range(REPLICAS)]
    procs = []
    for port, log in zip(ports, logs, strict=True):
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "donjon", "server", "--host", "127.0.0.1",
                 "--port", str(port)],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append(proc)
    try:
        for proc, port, log in zip(procs, ports, logs, strict=True):
            wait_ready(proc, f"http://127.0.0.1:{port}", log)
        for i, port in enumerate(ports):  # each one writes, and signs a checkpoint
            pushed = httpx.post(
                f"http://127.0.0.1:{port}/v1/models/start/versions",
                content=f"replica {i}".encode(),
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert pushed.status_code == 201, pushed.text
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=60) for proc in procs] == [0] * REPLICAS
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    db = open_database(postgres_url)
    try:
        registered = SqlLedgerStore(db).public_keys()
    finally:
        db.dispose()
    assert len(registered) == 1
    assert sorted(p.name for p in (home / "keys").iterdir()) == ["ledger.key.pem", "ledger.pub.pem"]
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0, capsys.readouterr().out
