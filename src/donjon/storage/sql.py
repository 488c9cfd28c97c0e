"""SQL engines and schema migrations, shared by every SQL-backed adapter.

SQLite (WAL, the embedded default) and PostgreSQL (psycopg 3) are supported.
Tables are declared on the one :data:`metadata` below, each adapter in its own
module; the schema is created and upgraded by Alembic migrations in
``migrations/versions`` (never by ``create_all``), so an existing database is
upgraded in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event, make_url
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
    """Open ``url`` (creating a SQLite file's folder) and, by default, migrate it to head."""
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError as e:
        raise StorageError(f"not a database URL: {url!r}") from e
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, **engine_options)
    except (ArgumentError, ImportError) as e:
        raise StorageError(f"cannot open database {parsed!r}: {e}") from e
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    database = Database(engine)
    if upgrade:
        migrate(database)
    return database


def migrate(database: Database, revision: str = "heads") -> None:
    """Upgrade the schema with Alembic; a StorageError says why it could not.

    ``heads``: each adapter's migrations may form their own branch from ``0001``.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except SQLAlchemyError as e:
        raise StorageError(f"cannot migrate {database.url}: {e}") from e
