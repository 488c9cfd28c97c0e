from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from donjon.errors import StorageError
from donjon.storage import SqlMetadataStore, migrate, open_database
from donjon.storage.sql import normalise_url


def test_migrations_create_the_schema_and_are_idempotent(database_url: str) -> None:
    db = open_database(database_url)
    try:
        assert "metadata_documents" in inspect(db.engine).get_table_names()
        migrate(db)  # a second upgrade is a no-op
        with db.engine.connect() as connection:
            versions = connection.execute(text("select version_num from alembic_version"))
            assert versions.scalars().all()  # one row per migration branch head
    finally:
        db.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = open_database(f"sqlite+pysqlite:///{tmp_path / 'sub' / 'x.db'}")
    try:
        with db.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    finally:
        db.dispose()


def test_metadata_store_round_trip(database_url: str) -> None:
    db = open_database(database_url)
    try:
        store = SqlMetadataStore(db)
        assert store.get("models", "fraud") is None
        store.put("models", "fraud", {"stage": "dev"})
        store.put("models", "fraud", {"stage": "prod"})
        store.put("models", "fraud_%x", {"stage": "dev"})
        store.put("datasets", "fraud", {"rows": 3})
        assert store.get("models", "fraud") == {"stage": "prod"}
        assert list(store.keys("models")) == ["fraud", "fraud_%x"]
        assert list(store.keys("models", "fraud_%")) == ["fraud_%x"]
    finally:
        db.dispose()


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://x/y"])
def test_bad_urls_are_storage_errors(url: str) -> None:
    with pytest.raises(StorageError):
        open_database(url)


def test_postgres_url_spellings_use_psycopg() -> None:
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_a_migrated_database_is_recognised_without_loading_alembic(database_url: str) -> None:
    from donjon.storage.sql import schema_is_current

    db = open_database(database_url)
    try:
        assert schema_is_current(db)
        with db.engine.begin() as connection:
            connection.execute(text("DELETE FROM metadata_documents WHERE namespace = 'donjon'"))
        assert not schema_is_current(db)
    finally:
        db.dispose()
    again = open_database(database_url)  # migrates again and records the fingerprint
    try:
        assert schema_is_current(again)
    finally:
        again.dispose()
