"""Every way around the ledger's append-only guards is refused, on SQLite and PostgreSQL.

First as the database owner (the triggers: TRUNCATE, UPDATE, DELETE, head rewinds),
then on PostgreSQL as the least-privilege server role of docs/audit.md, which can
neither bypass nor remove the triggers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from donjon.audit import Ledger
from donjon.storage.ledger import SqlLedgerStore
from donjon.storage.sql import Database, open_database
from tests.audit.helpers import event, make_ledger, row
from tests.conftest import POSTGRES_ADMIN_URL, REPO_ROOT

GUARDED = ("audit_ledger", "audit_ledger_head", "audit_checkpoints", "audit_keys")


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def ledger(database: Database, tmp_path: Path) -> Ledger:
    ledger = make_ledger(database, tmp_path / "keys", every=5)
    ledger.append_many(event("g", i) for i in range(12))
    assert ledger.verify().checkpoints == 2
    return ledger


def _attempts(db: Database) -> list[str]:
    _prev, h5, _body = row(db, 5)
    _prev, h12, _body = row(db, 12)
    statements = [
        "UPDATE audit_checkpoints SET hash = 'x'",
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_keys SET public_key = 'x'",
        "DELETE FROM audit_keys",
        "DELETE FROM audit_ledger_head",
        f"INSERT INTO audit_ledger_head VALUES (2, 12, '{h12}')",  # noqa: S608
        f"UPDATE audit_ledger_head SET seq = 5, hash = '{h5}'",  # noqa: S608 - rewind
        f"UPDATE audit_ledger_head SET hash = '{'f' * 64}'",  # noqa: S608 - a forged head
        "UPDATE audit_ledger_head SET seq = 13",  # past the end
        "DELETE FROM audit_ledger",
    ]
    if not db.is_sqlite:
        statements += [f"TRUNCATE {table}" for table in GUARDED]
        statements.append("TRUNCATE audit_ledger, audit_ledger_head CASCADE")
    return statements


def test_every_bypass_of_the_guards_is_refused(ledger: Ledger, database: Database) -> None:
    for statement in _attempts(database):
        with pytest.raises(DatabaseError), database.engine.begin() as connection:
            connection.execute(text(statement))
    result = ledger.verify()
    assert (result.ok, result.entries, result.checkpoints) == (True, 12, 2)
    ledger.append(event("g", 12))  # the head still moves forward, as appends need
    assert ledger.verify().entries == 13


def test_the_guard_messages_say_what_was_refused(ledger: Ledger, database: Database) -> None:
    with pytest.raises(DatabaseError, match="append-only"), database.engine.begin() as c:
        c.execute(text("DELETE FROM audit_checkpoints"))
    with pytest.raises(DatabaseError, match="only moves forward"), database.engine.begin() as c:
        c.execute(text("UPDATE audit_ledger_head SET seq = 1"))


# -- PostgreSQL: the least-privilege server role -------------------------------------------


def _role_sql(schema: str, role: str) -> list[str]:
    """The grants docs/audit.md documents, for this test's schema and role."""
    doc = (REPO_ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    block = re.search(r"```sql\n-- the server's role\n(.*?)```", doc, re.S)
    assert block, "docs/audit.md documents the server's role in a ```sql block"
    sql = block.group(1).replace("donjon_server", role).replace("SCHEMA donjon", f"SCHEMA {schema}")
    lines = [line for line in sql.splitlines() if line and not line.startswith("--")]
    return [s.strip() for s in " ".join(lines).split(";") if s.strip()]


@pytest.fixture
def server_role(postgres_url: str) -> Iterator[tuple[str, str]]:
    """(the owner's URL, the server role's URL) on one migrated schema."""
    schema = unquote(postgres_url).rsplit("search_path=", 1)[1]
    open_database(postgres_url).dispose()  # the owner migrates
    role = f"donjon_server_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'SET search_path = "{schema}"')
        for statement in _role_sql(schema, role):
            admin.execute(statement)  # type: ignore[arg-type]
    try:
        yield postgres_url, postgres_url.replace("postgres@", f"{role}@", 1)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')


@pytest.mark.postgres
def test_the_server_role_appends_but_cannot_remove_the_guards(
    server_role: tuple[str, str], tmp_path: Path
) -> None:
    _owner_url, url = server_role
    db = open_database(url)
    try:
        ledger = make_ledger(db, tmp_path / "keys", every=5)
        ledger.append_many(event("r", i) for i in range(7))
        ledger.checkpoint()
        assert SqlLedgerStore(db).public_keys()
        refused = [
            *(f"TRUNCATE {table}" for table in GUARDED),
            "DELETE FROM audit_ledger WHERE seq = 7",
            "UPDATE audit_ledger SET body = 'x'",
            "DELETE FROM audit_checkpoints",
            "DELETE FROM audit_ledger_head",
            "ALTER TABLE audit_ledger DISABLE TRIGGER ALL",
            "ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only",
            "DROP TRIGGER audit_ledger_no_truncate ON audit_ledger",
            "DROP TRIGGER audit_ledger_head_forward ON audit_ledger_head",
            "DROP TABLE audit_keys",
            "SET session_replication_role = replica",  # would skip every trigger
        ]
        for statement in refused:
            with pytest.raises(DatabaseError), db.engine.begin() as connection:
                connection.execute(text(statement))
        result = ledger.verify()
        assert (result.ok, result.entries, result.checkpoints) == (True, 7, 2)
    finally:
        db.dispose()
