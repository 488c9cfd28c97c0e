"""Building ledgers for tests and tampering with them the way an attacker with SQL access would."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from donjon.audit import Ledger
from donjon.core import SecurityEvent
from donjon.core.events import EventKind
from donjon.storage.ledger import SqlLedgerStore
from donjon.storage.ledger_keys import FileKeyProvider
from donjon.storage.sql import Database


def event(writer: str, i: int) -> SecurityEvent:
    return SecurityEvent(
        kind=EventKind.ACTIVITY,
        source="test",
        action="test.write",
        message=f"{writer} wrote {i}",
        attributes={"writer": writer, "i": i},
    )


def make_ledger(db: Database, keys: Path, every: int = 10) -> Ledger:
    return Ledger(SqlLedgerStore(db), keys=FileKeyProvider(keys), checkpoint_every=every)


def tamper(db: Database, *statements: str) -> None:
    """Run SQL as a database owner would: drop the append-only guard first."""
    with db.engine.begin() as connection:
        if db.is_sqlite:
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_ledger_no_update")
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_ledger_no_delete")
        else:
            connection.exec_driver_sql(
                "DROP TRIGGER IF EXISTS audit_ledger_append_only ON audit_ledger"
            )
        for statement in statements:
            connection.exec_driver_sql(statement)


def row(db: Database, seq: int) -> tuple[str, str, str]:
    with db.engine.connect() as connection:
        found = connection.execute(
            text("SELECT prev_hash, hash, body FROM audit_ledger WHERE seq = :s"), {"s": seq}
        ).one()
    return str(found[0]), str(found[1]), str(found[2])
