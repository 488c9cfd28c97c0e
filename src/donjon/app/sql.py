"""Opening the SQL database of the settings: migrate on open, or require a migrated schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.config import Settings

if TYPE_CHECKING:
    from donjon.storage.sql import Database


def open_sql(settings: Settings, url: str | None = None) -> Database:
    """Open ``url`` (default: the settings' database) and migrate it to head, unless
    ``database_migrate`` is off: then an older schema is a StorageError that says to run
    ``donjon db upgrade``."""
    from donjon.storage.sql import open_database, require_current

    database = open_database(url or settings.sql_url, upgrade=settings.database_migrate)
    if not settings.database_migrate:
        try:
            require_current(database)
        except Exception:
            database.dispose()
            raise
    return database
