"""Building ledgers for tests and tampering with them the way an attacker with SQL access would."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, text

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


def drop_guards(connection: Connection, is_sqlite: bool) -> None:
    """Drop every trigger on the ledger's tables, as a database owner can."""
    if is_sqlite:
        names = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name LIKE 'audit_%'"
        ).all()
        for (name,) in names:
            connection.exec_driver_sql(f'DROP TRIGGER "{name}"')
        return
    found = connection.exec_driver_sql(
        "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE NOT t.tgisinternal AND c.relname LIKE 'audit_%%' "
        "AND c.relnamespace = current_schema()::regnamespace"
    ).all()
    for name, table in found:
        connection.exec_driver_sql(f'DROP TRIGGER "{name}" ON "{table}"')


def tamper(db: Database, *statements: str) -> None:
    """Run SQL as a database owner would: drop the guards (triggers) first."""
    with db.engine.begin() as connection:
        drop_guards(connection, db.is_sqlite)
        for statement in statements:
            connection.exec_driver_sql(statement)


def row(db: Database, seq: int) -> tuple[str, str, str]:
    with db.engine.connect() as connection:
        found = connection.execute(
            text("SELECT prev_hash, hash, body FROM audit_ledger WHERE seq = :s"), {"s": seq}
        ).one()
    return str(found[0]), str(found[1]), str(found[2])
