"""The ledger's head anchored outside the database: cut tails, wiped ledgers, lost head rows.

Checkpoints are signed every N entries, T seconds after an uncovered entry and
at a clean shutdown, and go to the witnesses (a file, a URL, the SOC stream);
``donjon audit verify --witness`` finds a tail cut below the latest of them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from donjon.audit import Checkpoint, FileWitness, Ledger, Problem, UrlWitness, read_witness
from donjon.cli.main import main
from donjon.config import load_settings
from donjon.soc import read_events
from donjon.storage.ledger import SqlLedgerStore
from donjon.storage.ledger_keys import FileKeyProvider
from donjon.storage.sql import Database, open_database
from tests.audit.helpers import event, row, tamper
from tests.support.waiting import wait_for

N = 30


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


def witnessed_ledger(db: Database, keys: Path, witness: Path, **options: float) -> Ledger:
    """A ledger anchored as the server's is (``start_anchoring``)."""
    ledger = Ledger(
        SqlLedgerStore(db),
        keys=FileKeyProvider(keys),
        checkpoint_every=int(options.get("every", 10)),
        checkpoint_seconds=options.get("seconds", 0.0),
        witnesses=[FileWitness(witness)],
    )
    ledger.start_anchoring()
    return ledger


def test_a_clean_shutdown_signs_and_witnesses_the_whole_tail(
    database: Database, tmp_path: Path
) -> None:
    witness = tmp_path / "witness.jsonl"
    ledger = witnessed_ledger(database, tmp_path / "keys", witness)
    ledger.append_many(event("w", i) for i in range(N + 3))  # 33: the last 3 past a multiple
    ledger.close()
    seqs = [c.seq for c in read_witness(witness)]
    assert seqs == [10, 20, 30, 33]
    assert witness.stat().st_mode & 0o777 == 0o600
    assert ledger.verify(witnessed=read_witness(witness)).ok


def test_a_checkpoint_is_signed_within_t_seconds(database: Database, tmp_path: Path) -> None:
    """Whichever process appended: here another ledger object on the same database."""
    witness = tmp_path / "witness.jsonl"
    ledger = witnessed_ledger(database, tmp_path / "keys", witness, every=0, seconds=0.2)
    try:
        Ledger(SqlLedgerStore(database)).append_many(event("t", i) for i in range(3))
        # the file exists a moment before its line is written: wait for the line itself
        signed = wait_for(lambda: (witness.exists() and read_witness(witness)) or None)
        assert [c.seq for c in signed] == [3]
        assert ledger.verify().checkpoints == 1
    finally:
        ledger.close()
    assert [c.seq for c in read_witness(witness)] == [3], "nothing new to sign at shutdown"


def test_the_tail_cut_below_a_witnessed_checkpoint_is_tampered(
    database: Database, tmp_path: Path
) -> None:
    """Cut 3 entries after the last stored checkpoint, rewrite the head: only the witness knows."""
    witness = tmp_path / "witness.jsonl"
    ledger = witnessed_ledger(database, tmp_path / "keys", witness)
    ledger.append_many(event("w", i) for i in range(N + 3))
    ledger.close()  # witnessed at 33
    _prev, digest, _body = row(database, 30)
    tamper(
        database,
        "DELETE FROM audit_ledger WHERE seq > 30",
        "DELETE FROM audit_checkpoints WHERE seq > 30",
        f"UPDATE audit_ledger_head SET seq = 30, hash = '{digest}'",  # noqa: S608
    )
    assert ledger.verify().ok, "without the witness the cut is invisible (documented)"
    result = ledger.verify(witnessed=read_witness(witness))
    assert (result.ok, result.first_bad_seq) == (False, 31)
    assert result.issues[0].problem is Problem.TRUNCATED
    assert "entries 31..33 missing" in result.issues[0].message


def test_a_wiped_ledger_with_its_checkpoints_left_is_tampered(
    database: Database, tmp_path: Path
) -> None:
    ledger = witnessed_ledger(database, tmp_path / "keys", tmp_path / "w.jsonl")
    ledger.append_many(event("w", i) for i in range(N))
    tamper(
        database,
        "DELETE FROM audit_ledger",
        f"UPDATE audit_ledger_head SET seq = 0, hash = '{'0' * 64}'",  # noqa: S608
    )
    result = ledger.verify()
    assert result.first_bad_seq == 1
    assert result.issues[0].problem is Problem.TRUNCATED


def test_a_missing_head_row_is_tampered(database: Database, tmp_path: Path) -> None:
    ledger = witnessed_ledger(database, tmp_path / "keys", tmp_path / "w.jsonl")
    ledger.append_many(event("w", i) for i in range(5))
    tamper(database, "DELETE FROM audit_ledger_head")
    result = ledger.verify()
    assert result.issues[0].problem is Problem.HEAD_MISSING
    assert result.first_bad_seq == 6


def test_a_witness_signed_by_another_key_is_refused(database: Database, tmp_path: Path) -> None:
    ledger = witnessed_ledger(database, tmp_path / "keys", tmp_path / "w.jsonl")
    ledger.append_many(event("w", i) for i in range(5))
    forged = Checkpoint.from_dict(
        {**ledger.checkpoint().to_dict(), "seq": 99, "hash": "a" * 64}
    )  # the signature no longer matches the payload
    result = ledger.verify(witnessed=[forged])
    assert result.issues[0].problem is Problem.BAD_CHECKPOINT


def test_checkpoints_are_posted_to_a_witness_url(database: Database, tmp_path: Path) -> None:
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/checkpoints"
        ledger = Ledger(
            SqlLedgerStore(database),
            keys=FileKeyProvider(tmp_path / "keys"),
            checkpoint_every=0,
            witnesses=[UrlWitness(url)],
        )
        ledger.start_anchoring()
        ledger.append_many(event("u", i) for i in range(4))
        ledger.close()
    finally:
        server.shutdown()
        server.server_close()
    assert [r["seq"] for r in received] == [4]
    assert ledger.verify(witnessed=[Checkpoint.from_dict(received[0])]).ok


# -- through the CLI: every command's clean exit signs, the SOC stream and the file witness --


@pytest.fixture
def home(donjon_home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DONJON_DATABASE_URL", database_url)
    monkeypatch.setenv("DONJON_AUDIT__CHECKPOINT_EVERY", "10")
    monkeypatch.setenv("DONJON_AUDIT__WITNESS_FILE", str(donjon_home / "witness.jsonl"))
    return donjon_home


def _append_through_the_app(count: int) -> None:
    from donjon.app import build

    with build(load_settings()) as app:
        assert app.ledger is not None
        app.ledger.start_anchoring()  # as `donjon server` does
        app.bus.publish_all(event("cli", i) for i in range(count))


def test_cli_cut_tail_wiped_ledger_and_missing_head_are_tampered(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _append_through_the_app(23)  # checkpoints at 10 and 20 and at close (the head)
    # the auditor's own commands append nothing, so that the counts below stay fixed
    monkeypatch.setenv("DONJON_AUDIT__LEDGER", "false")
    witness = home / "witness.jsonl"
    last = read_witness(witness)[-1].seq  # 23 events, and the build's own
    assert [c.seq for c in read_witness(witness)] == [10, 20, last]
    assert 23 <= last < 30
    db = open_database(load_settings().sql_url)
    # only announcements of checkpoints (audit.checkpoint events) follow the last one
    head_seq = SqlLedgerStore(db).head()[0]  # type: ignore[index]
    after = [
        json.loads(body)["event"]["action"]
        for seq, _p, _h, body in SqlLedgerStore(db).rows(last + 1)
    ]
    assert after == ["audit.checkpoint"] * (head_seq - last)
    assert 1 <= len(after) <= 3
    events = read_events(home / "events.jsonl")
    announced = [e.attributes["checkpoint"] for e in events if e.action == "audit.checkpoint"]
    assert [c["seq"] for c in announced] == [10, 20, last], "each checkpoint reaches the SOC"
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "3 witnessed checkpoints match" in out
    # a ledger export names no checkpoint: it confirms nothing, and says so
    assert main(["audit", "export", "-o", str(export := home / "ledger.jsonl")]) == 0
    assert main(["audit", "verify", "--witness", str(export)]) == 2
    assert "holds none of the ledger's 3 signed checkpoints" in capsys.readouterr().err

    try:
        _prev, digest, _body = row(db, 20)
        tamper(
            db,
            "DELETE FROM audit_ledger WHERE seq > 20",
            "DELETE FROM audit_checkpoints WHERE seq > 20",
            f"UPDATE audit_ledger_head SET seq = 20, hash = '{digest}'",  # noqa: S608
        )
        assert main(["audit", "verify"]) == 1  # audit.witness_file is read by default
        out = capsys.readouterr().out
        assert "ledger TAMPERED: first bad entry 21" in out
        assert f"entries 21..{last} missing" in out
        # the SOC event file is a witness too
        assert main(["audit", "verify", "--witness", str(home / "events.jsonl")]) == 1
        assert "first bad entry 21" in capsys.readouterr().out

        tamper(db, "DELETE FROM audit_ledger_head")
        assert main(["audit", "verify", "--witness", str(witness)]) == 1
        out = capsys.readouterr().out
        assert "[head-missing] the chain head row is missing" in out

        tamper(
            db,
            "DELETE FROM audit_ledger",
            "DELETE FROM audit_checkpoints",
            f"INSERT INTO audit_ledger_head VALUES (1, 0, '{'0' * 64}')",  # noqa: S608
        )
        assert main(["audit", "verify", "--witness", str(tmp := home / "none.jsonl")]) == 2
        assert "cannot read witness file" in capsys.readouterr().err
        assert not tmp.exists()
        assert main(["-f", "json", "audit", "verify"]) == 1
        result = json.loads(capsys.readouterr().out)
        assert result["first_bad_seq"] == 1
        assert result["issues"][0]["problem"] == "truncated"
        assert [i["problem"] for i in result["issues"]] == ["truncated"]  # the furthest anchor
        assert f"(entries 1..{last} missing)" in result["issues"][0]["message"]
    finally:
        db.dispose()


def test_cli_checkpoint_goes_to_every_witness(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_settings().audit.witness_file == home / "witness.jsonl"
    _append_through_the_app(3)
    assert main(["-f", "json", "audit", "checkpoint"]) == 0
    signed = json.loads(capsys.readouterr().out)
    assert read_witness(home / "witness.jsonl")[-1].seq == signed["seq"]
    announced = [e for e in read_events(home / "events.jsonl") if e.action == "audit.checkpoint"]
    assert announced[-1].attributes["checkpoint"]["seq"] == signed["seq"]


def test_a_malformed_witness_file_is_a_usage_error(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "witness.jsonl"
    bad.write_text('{"seq": 1, "signature": "x"}\n')
    assert main(["audit", "verify", "--witness", str(bad)]) == 2
    assert "witness.jsonl:1: malformed checkpoint" in capsys.readouterr().err


def test_a_one_shot_process_signs_only_at_multiples(database: Database, tmp_path: Path) -> None:
    """A command that never called start_anchoring adds no checkpoint at exit."""
    witness = tmp_path / "witness.jsonl"
    ledger = Ledger(
        SqlLedgerStore(database),
        keys=FileKeyProvider(tmp_path / "keys"),
        checkpoint_every=10,
        checkpoint_seconds=0.1,
        witnesses=[FileWitness(witness)],
    )
    ledger.append_many(event("c", i) for i in range(12))
    ledger.close()
    assert [c.seq for c in read_witness(witness)] == [10]


def test_a_failing_witness_never_breaks_the_ledger(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.server.process import free_port

    witness = tmp_path / "witness.jsonl"
    ledger = Ledger(
        SqlLedgerStore(database),
        keys=FileKeyProvider(tmp_path / "keys"),
        checkpoint_every=5,
        witnesses=[UrlWitness(f"http://127.0.0.1:{free_port()}/", timeout=2), FileWitness(witness)],
    )
    ledger.start_anchoring()
    ledger.append_many(event("f", i) for i in range(7))
    ledger.close()
    assert [c.seq for c in read_witness(witness)] == [5, 7], "the other witnesses still get them"
    assert "witness url missed the checkpoint at entry 5" in caplog.text
    assert ledger.verify().ok
