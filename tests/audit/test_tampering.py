"""Each kind of tampering, done by editing the database directly, is detected and located."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from donjon.audit import Checkpoint, Ledger, Problem, entry_hash
from donjon.storage.sql import Database, open_database
from tests.audit.helpers import event, make_ledger, row, tamper

N = 30  # checkpoints at 10, 20 and 30


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def ledger(database: Database, tmp_path: Path) -> Ledger:
    ledger = make_ledger(database, tmp_path / "keys")
    for i in range(N):
        ledger.append(event("w", i))
    result = ledger.verify()
    assert result.ok, result.issues
    assert (result.entries, result.checkpoints) == (N, 3)
    return ledger


def _modify(db: Database) -> None:
    _prev, _hash, body = row(db, 15)
    forged = body.replace("w wrote 14", "w wrote 99")
    assert forged != body
    tamper(db, f"UPDATE audit_ledger SET body = '{forged}' WHERE seq = 15")  # noqa: S608


def _delete(db: Database) -> None:
    tamper(db, "DELETE FROM audit_ledger WHERE seq = 15")


def _insert_naive(db: Database) -> None:
    _prev, digest, body = row(db, 14)
    tamper(
        db,
        "UPDATE audit_ledger SET seq = seq + 1000 WHERE seq >= 15",
        "UPDATE audit_ledger SET seq = seq - 999 WHERE seq >= 1015",
        f"INSERT INTO audit_ledger VALUES (15, '{digest}', '{'f' * 64}', '{body}')",  # noqa: S608
    )


def _insert_forged(db: Database) -> None:
    """The attacker computes a valid hash for the entry they slip in after 14."""
    _prev, digest, _body = row(db, 14)
    forged = '{"event":{"forged":true},"seq":15}'
    tamper(
        db,
        "UPDATE audit_ledger SET seq = seq + 1000 WHERE seq >= 15",
        "UPDATE audit_ledger SET seq = seq - 999 WHERE seq >= 1015",
        f"INSERT INTO audit_ledger VALUES (15, '{digest}', '{entry_hash(digest, forged)}', "  # noqa: S608
        f"'{forged}')",
    )


def _reorder(db: Database) -> None:
    tamper(
        db,
        "UPDATE audit_ledger SET seq = 1000 WHERE seq = 15",
        "UPDATE audit_ledger SET seq = 15 WHERE seq = 16",
        "UPDATE audit_ledger SET seq = 16 WHERE seq = 1000",
    )


def _truncate(db: Database) -> None:
    _prev, digest, _body = row(db, 25)
    tamper(
        db,
        "DELETE FROM audit_ledger WHERE seq > 25",
        f"UPDATE audit_ledger_head SET seq = 25, hash = '{digest}'",  # noqa: S608
    )


def _cut_tail_only(db: Database) -> None:
    tamper(db, "DELETE FROM audit_ledger WHERE seq = 30")


def _rewrite_history(db: Database) -> None:
    """Change entry 15 and recompute every later hash and the head: only signatures catch it."""
    with db.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT seq, prev_hash, hash, body FROM audit_ledger ORDER BY seq")
        ).all()
    statements = []
    prev = rows[13][2]
    for seq, _old_prev, _old_hash, body in rows[14:]:
        if seq == 15:
            body = body.replace("w wrote 14", "w wrote 99")
        digest = entry_hash(prev, body)
        statements.append(
            f"UPDATE audit_ledger SET prev_hash = '{prev}', hash = '{digest}', "  # noqa: S608
            f"body = '{body}' WHERE seq = {seq}"
        )
        prev = digest
    statements.append(f"UPDATE audit_ledger_head SET hash = '{prev}'")  # noqa: S608
    tamper(db, *statements)


def _forge_checkpoint(db: Database) -> None:
    tamper(db, f"UPDATE audit_checkpoints SET hash = '{'a' * 64}' WHERE seq = 20")  # noqa: S608


CASES: list[tuple[str, Callable[[Database], None], Problem, int]] = [
    ("modified", _modify, Problem.MODIFIED, 15),
    ("deleted", _delete, Problem.MISSING, 15),
    ("inserted", _insert_naive, Problem.OUT_OF_ORDER, 15),
    ("inserted-with-valid-hash", _insert_forged, Problem.OUT_OF_ORDER, 16),
    ("reordered", _reorder, Problem.OUT_OF_ORDER, 15),
    ("truncated", _truncate, Problem.TRUNCATED, 26),
    ("tail-cut", _cut_tail_only, Problem.TRUNCATED, 30),
    ("history-rewritten", _rewrite_history, Problem.MODIFIED, 11),
    ("checkpoint-forged", _forge_checkpoint, Problem.BAD_CHECKPOINT, 20),
]


@pytest.mark.parametrize(
    ("name", "attack", "problem", "first_bad"), CASES, ids=[c[0] for c in CASES]
)
def test_tampering_is_detected(
    ledger: Ledger,
    database: Database,
    name: str,
    attack: Callable[[Database], None],
    problem: Problem,
    first_bad: int,
) -> None:
    attack(database)
    result = ledger.verify()
    assert not result.ok, name
    assert result.first_bad_seq == first_bad, result.issues
    assert result.issues[0].problem is problem, result.issues


def test_truncation_past_the_checkpoints_is_caught_by_the_head_file(
    ledger: Ledger, database: Database, tmp_path: Path
) -> None:
    head = ledger.checkpoint()
    (tmp_path / "head.json").write_text(json.dumps(head.to_dict()))
    _prev, digest, _body = row(database, 25)
    tamper(
        database,
        "DELETE FROM audit_ledger WHERE seq > 25",
        "DELETE FROM audit_checkpoints WHERE seq > 25",
        f"UPDATE audit_ledger_head SET seq = 25, hash = '{digest}'",  # noqa: S608
    )
    anchor = Checkpoint.from_dict(json.loads((tmp_path / "head.json").read_text()))
    result = ledger.verify(head=anchor)
    assert result.first_bad_seq == 26
    assert result.issues[0].problem is Problem.TRUNCATED
    assert "head file" in result.issues[0].message


def test_a_head_file_signed_by_another_key_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    other = make_ledger(open_database(f"sqlite+pysqlite:///{tmp_path / 'o.db'}"), tmp_path / "k2")
    other.append(event("x", 0))
    result = ledger.verify(head=other.checkpoint())
    assert result.issues[0].problem is Problem.BAD_CHECKPOINT


def test_the_ledger_table_is_append_only(ledger: Ledger, database: Database) -> None:
    from sqlalchemy.exc import DatabaseError

    for statement in (
        "UPDATE audit_ledger SET body = 'x' WHERE seq = 1",
        "DELETE FROM audit_ledger WHERE seq = 1",
    ):
        with pytest.raises(DatabaseError, match="append-only"), database.engine.begin() as c:
            c.execute(text(statement))
    assert ledger.verify().ok


class _BrokenStore:
    """A LedgerStore whose database is gone."""

    def append(self, build: object) -> list[tuple[int, str, str, str]]:
        from donjon.errors import AuditError

        raise AuditError("database is down")

    def head(self) -> tuple[int, str]:
        return 0, "0" * 64

    def rows(self, start: int = 1) -> Iterator[tuple[int, str, str, str]]:
        return iter(())

    def add_checkpoint(self, checkpoint: object) -> None:
        raise AssertionError("unreachable")

    def checkpoints(self) -> list[dict[str, object]]:
        return []


def test_a_failed_append_is_never_acknowledged() -> None:
    from donjon.core import EventBus, MemorySink
    from donjon.errors import AuditError

    sink = MemorySink()
    bus = EventBus([sink], journal=Ledger(_BrokenStore()))
    with pytest.raises(AuditError, match="database is down"):
        bus.publish(event("w", 0))
    assert sink.events == [], "a sink never sees an event the journal did not store"


def test_small_pages_read_the_whole_chain(
    ledger: Ledger, database: Database, tmp_path: Path
) -> None:
    from donjon.storage.ledger import SqlLedgerStore
    from donjon.storage.ledger_keys import FileKeyProvider

    paged = Ledger(SqlLedgerStore(database, fetch_size=7), keys=FileKeyProvider(tmp_path / "keys"))
    assert [row[0] for row in SqlLedgerStore(database, fetch_size=7).rows(5)] == list(range(5, 31))
    result = paged.verify()
    assert (result.ok, result.entries) == (True, N)
    _delete(database)
    assert paged.verify().first_bad_seq == 15
