"""``donjon audit verify|export|checkpoint`` end to end through ``main([...])``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.config import load_settings
from donjon.soc import read_events
from donjon.storage.sql import open_database
from tests.audit.helpers import event, make_ledger, tamper


@pytest.fixture
def home(donjon_home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DONJON_DATABASE_URL", database_url)
    monkeypatch.setenv("DONJON_AUDIT__CHECKPOINT_EVERY", "10")
    # these tests count the entries they made: keep the commands' own events out
    monkeypatch.setenv("DONJON_AUDIT__LEDGER", "false")
    settings = load_settings()
    db = open_database(settings.sql_url)
    make_ledger(db, settings.keys_dir).append_many(event("cli", i) for i in range(25))
    db.dispose()
    return donjon_home


def test_verify_export_checkpoint(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["audit", "verify"]) == 0
    assert "ledger OK: 25 entries, 2 signed checkpoints" in capsys.readouterr().out
    head = tmp_path / "head.json"
    assert main(["-f", "json", "audit", "checkpoint", "--head", str(head)]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 25
    assert json.loads(head.read_text())["seq"] == 25
    out = tmp_path / "ledger.jsonl"
    assert main(["audit", "export", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 26))
    assert main(["-f", "json", "audit", "verify", "--head", str(head)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    public = home / "keys" / "ledger.pub.pem"
    assert main(["audit", "verify", "--public-key", str(public)]) == 0


def test_verify_names_the_first_bad_entry_and_raises_a_finding(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = load_settings()
    db = open_database(settings.sql_url)
    tamper(db, "DELETE FROM audit_ledger WHERE seq = 7")
    db.dispose()
    assert main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert "ledger TAMPERED: first bad entry 7" in out
    assert "[missing] entry 7 is missing (deleted)" in out
    findings = [e for e in read_events(home / "events.jsonl") if e.finding is not None]
    assert findings[-1].finding is not None
    assert findings[-1].finding.rule.id == "DJ-LED-001"
    assert findings[-1].finding.location.record == "7"
    assert main(["-f", "json", "audit", "verify"]) == 1
    assert json.loads(capsys.readouterr().out)["first_bad_seq"] == 7


def test_bad_head_file_is_a_usage_error(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "head.json"
    bad.write_text("[1, 2]")
    assert main(["audit", "verify", "--head", str(bad)]) == 2
    assert "not a JSON object" in capsys.readouterr().err
    bad.write_text('{"seq": "x"}')
    assert main(["audit", "verify", "--head", str(bad)]) == 2
    assert "malformed checkpoint" in capsys.readouterr().err
