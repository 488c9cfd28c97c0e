"""``donjon login``, ``datasets`` and ``models`` against a real server on loopback."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from donjon.cli.main import main
from tests.server.conftest import Served

pytestmark = pytest.mark.integration


def login(served: Served, who: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(served.token(who) + "\n"))
    return main(["login", "--server", served.url, "--token-stdin"])


def test_login_keeps_the_token_private(
    served: Served,
    donjon_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("stolen-or-wrong\n"))
    assert main(["login", "--server", served.url, "--token-stdin"]) == 2
    assert not (donjon_home / "credentials.json").exists()
    assert login(served, "alice", monkeypatch) == 0
    creds = donjon_home / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert json.loads(creds.read_text()) == {"server": served.url, "token": served.token("alice")}
    out = capsys.readouterr()
    assert "user:alice" in out.err
    assert served.token("alice") not in out.out + out.err


def test_datasets_and_models_from_the_command_line(
    served: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    auth = served.vault.authorizer
    for verb in ("read", "write", "list"):
        auth.allow("alice", f"dataset.{verb}", "datasets/fraud")
    for verb in ("read", "write", "list", "promote"):
        auth.allow("alice", f"model.{verb}", "models/fraud-clf")
    assert main(["datasets", "list"]) == 2  # not logged in yet
    assert "donjon login" in capsys.readouterr().err
    assert login(served, "alice", monkeypatch) == 0
    data = tmp_path / "tx.csv"
    data.write_bytes(b"amount,label\n1,0\n")
    assert main(["datasets", "push", "fraud/tx", str(data), "--metadata", '{"rows": 1}']) == 0
    assert main(["datasets", "push", "fraud/tx", str(data), "--metadata", "[1"]) == 2
    assert main(["datasets", "push", "../etc/passwd", str(data)]) == 2
    capsys.readouterr()
    assert main(["--format", "json", "datasets", "list", "fraud"]) == 0
    assert json.loads(capsys.readouterr().out) == ["fraud/tx"]
    assert main(["--format", "json", "datasets", "list", "fraud/tx", "--versions"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert (record["version"], record["metadata"]) == (1, {"rows": 1})
    copy = tmp_path / "copy.csv"
    assert main(["datasets", "pull", "fraud/tx", str(copy)]) == 0
    assert copy.read_bytes() == data.read_bytes()

    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    assert main(["models", "push", "fraud-clf", str(model), "-l", "fraud/tx@1"]) == 0
    orphan = tmp_path / "orphan.bin"
    orphan.write_bytes(b"other weights")
    assert main(["models", "push", "fraud-clf", str(orphan)]) == 0
    assert main(["models", "promote", "fraud-clf", "1", "prod"]) == 0
    assert main(["models", "promote", "fraud-clf", "2", "prod"]) == 1  # no lineage: gate fails
    assert "admitted-lineage" in capsys.readouterr().err
    assert main(["models", "promote", "fraud-clf", "2", "moon"]) == 2
    evil = tmp_path / "evil.bin"
    evil.write_bytes(b"EVIL")
    assert main(["models", "push", "fraud-clf", str(evil)]) == 1  # quarantined by the scan
    capsys.readouterr()
    assert main(["--format", "json", "models", "list", "fraud-clf", "--versions"]) == 0
    stages = [(r["stage"], r["status"]) for r in json.loads(capsys.readouterr().out)]
    assert stages == [("prod", "active"), ("dev", "active"), ("dev", "quarantined")]
    assert main(["models", "pull", "fraud-clf", str(tmp_path / "m.bin"), "--version", "1"]) == 0
    assert (tmp_path / "m.bin").read_bytes() == b"weights"
    # bob has no grant: the CLI reports the refusal and exits 2
    assert login(served, "bob", monkeypatch) == 0
    assert main(["models", "pull", "fraud-clf", str(tmp_path / "b.bin")]) == 2
    assert "403" in capsys.readouterr().err
    assert not (tmp_path / "b.bin").exists()


def test_the_server_refuses_to_start_without_access_control(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["server", "--port", "0"]) == 2
    assert "access control" in capsys.readouterr().err
