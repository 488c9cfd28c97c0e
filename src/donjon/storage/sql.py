"""SQL engines and schema migrations, shared by every SQL-backed adapter.

SQLite (WAL, the embedded default) and PostgreSQL (psycopg 3) are supported.
Tables are declared on the one :data:`metadata` below, each adapter in its own
module; the schema is created and upgraded by Alembic migrations in
``migrations/versions`` (never by ``create_all``), so an existing database is
upgraded in place.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    MetaData,
    bindparam,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from donjon.errors import StorageError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


@dataclass(frozen=True)
class Database:
    """An engine plus what adapters need to know about its dialect."""

    engine: Engine

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def dispose(self) -> None:
        self.engine.dispose()

    def reader(self) -> Connection:
        """A connection for reads, in autocommit: each statement sees what is committed,
        with no BEGIN / ROLLBACK round trips around it (two of three on PostgreSQL)."""
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def as_utc(value: datetime) -> datetime:
    """A time read back from the database, in UTC: SQLite hands back naive datetimes of the
    UTC times that were stored."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def sqlite_url(path: Path) -> str:
    return f"sqlite+pysqlite:///{path}"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_database(url: str, *, upgrade: bool = True, **engine_options: Any) -> Database:
    """Open ``url`` (creating a SQLite file's folder) and, by default, migrate it to head.

    ``upgrade=False`` never migrates: the database is only opened (``donjon db
    upgrade`` or :func:`require_current` deal with an old schema).
    """
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError as e:
        raise StorageError(f"not a database URL: {url!r}") from e
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # private like the keys (SQLite gives its -wal/-shm the same mode)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    try:
        engine = create_engine(parsed, **engine_options)
    except (ArgumentError, ImportError) as e:
        raise StorageError(f"cannot open database {parsed!r}: {e}") from e
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    database = Database(engine)
    if upgrade and not schema_is_current(database):
        migrate(database)
    return database


def migrations_fingerprint() -> str:
    """A digest of every migration script: it changes whenever the schema may."""
    digest = hashlib.sha256()
    for script in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        digest.update(script.name.encode() + b"\0" + script.read_bytes() + b"\0")
    return digest.hexdigest()


def schema_is_current(database: Database) -> bool:
    """True when the last migration run recorded today's fingerprint.

    Loading Alembic and its scripts costs far more than one query, and every
    command opens the database: this keeps start-up fast once migrated.
    """
    query = text(
        "SELECT value FROM metadata_documents WHERE namespace = 'donjon' AND key = 'schema'"
    )
    try:
        with database.engine.connect() as connection:
            value = connection.execute(query).scalar_one_or_none()
    except SQLAlchemyError:  # a fresh database: no table yet
        return False
    if isinstance(value, str):  # SQLite hands JSON back as text through text()
        value = json.loads(value)
    return isinstance(value, dict) and value.get("migrations") == migrations_fingerprint()


def require_current(database: Database) -> None:
    """Raise a StorageError unless the schema is migrated to this version's head."""
    if not schema_is_current(database):
        raise StorageError(
            f"the database schema of {database.url} is not current: run `donjon db upgrade` "
            "(or let one server migrate it on start)"
        )


def migrate(database: Database, revision: str = "heads") -> None:
    """Upgrade the schema with Alembic; a StorageError says why it could not.

    ``heads``: each adapter's migrations may form their own branch from ``0001``.
    Concurrent migrations of one schema (replicas starting at once) are serialised:
    on PostgreSQL by an advisory lock derived from the database and ``search_path``
    (so other schemas of the same database migrate in parallel), on SQLite by taking
    the write lock first. The second one finds the schema at head and does nothing.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with database.engine.begin() as connection:
            _lock_schema(connection)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            if revision == "heads":
                _record_fingerprint(connection)
    except SQLAlchemyError as e:
        raise StorageError(f"cannot migrate {database.url}: {e}") from e


def migration_lock_key(database_name: str, search_path: str) -> int:
    """The advisory lock of one schema's migrations: a signed 64-bit hash of where it is."""
    seed = f"donjon-migrate\0{database_name}\0{search_path}".encode()
    return int.from_bytes(hashlib.sha256(seed).digest()[:8], "big", signed=True)


def _lock_schema(connection: Connection) -> None:
    """Hold the schema's migration lock until this transaction ends."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # the one writer, from the first statement
        return
    if connection.dialect.name != "postgresql":
        return
    where = connection.execute(
        text("SELECT current_database(), current_setting('search_path')")
    ).one()
    key = migration_lock_key(str(where[0]), str(where[1]))
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _record_fingerprint(connection: Connection) -> None:
    value = json.dumps({"migrations": migrations_fingerprint()})
    where = "WHERE namespace = 'donjon' AND key = 'schema'"
    connection.execute(text(f"DELETE FROM metadata_documents {where}"))  # noqa: S608
    connection.execute(
        text(
            "INSERT INTO metadata_documents (namespace, key, value, updated_at) "
            "VALUES ('donjon', 'schema', :value, :now)"
        ).bindparams(bindparam("value", type_=JSON), now=datetime.now(UTC)),
        {"value": json.loads(value)},
    )
