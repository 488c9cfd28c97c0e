"""Console sessions on SQL, shared by every worker and replica (migration ``console_0001``).

Implements ``donjon.server.ui.sessions.SessionRows``: one row per live session,
keyed by the SHA-256 of its id, holding the credential sealed under a key only
the session id opens, the session's CSRF token, when it expires and the pages
whose view it has ledgered. Logout deletes the row; expired rows are deleted
when the next session opens.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, LargeBinary, String, Table, delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from donjon.errors import StorageError
from donjon.storage.sql import Database, as_utc, metadata

Row = tuple[bytes, str, datetime, tuple[str, ...]]  # sealed credential, csrf, expiry, viewed

sessions = Table(
    "console_sessions",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False, index=True),
    Column("viewed", JSON(), nullable=False),
)


class SqlSessionRows:
    """Session rows in the ``console_sessions`` table of ``database``."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def insert(self, key: str, row: Row) -> None:
        sealed, csrf, expires, viewed = row
        values = {
            "key": key,
            "sealed": sealed,
            "csrf": csrf,
            "expires": expires,
            "viewed": list(viewed),
        }
        try:
            with self._db.engine.begin() as connection:
                connection.execute(sessions.insert().values(**values))
        except SQLAlchemyError as e:
            raise StorageError(f"cannot open a console session: {e}") from e

    def get(self, key: str) -> Row | None:
        try:
            with self._db.reader() as connection:
                found = connection.execute(select(sessions).where(sessions.c.key == key)).first()
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read a console session: {e}") from e
        if found is None:
            return None
        viewed = tuple(str(p) for p in found.viewed or ())
        return bytes(found.sealed), found.csrf, as_utc(found.expires), viewed

    def delete(self, key: str) -> None:
        self._write(delete(sessions).where(sessions.c.key == key), "end")

    def add_view(self, key: str, page: str) -> None:
        found = self.get(key)
        if found is None or page in found[3]:
            return
        viewed = sorted({*found[3], page})
        self._write(update(sessions).where(sessions.c.key == key).values(viewed=viewed), "mark")

    def expire(self, now: datetime) -> None:
        self._write(delete(sessions).where(sessions.c.expires <= now), "expire")

    def _write(self, statement: object, what: str) -> None:
        try:
            with self._db.engine.begin() as connection:
                connection.execute(statement)  # type: ignore[call-overload]
        except SQLAlchemyError as e:
            raise StorageError(f"cannot {what} a console session: {e}") from e
