"""Failed authentications per source address on SQL, shared by every worker and replica.

Implements ``donjon.server.auth_failures.SharedFailures`` (migration
``limits_0001``): one row per source, the window it opened (Unix time, shared
by processes on several machines) and its count. :meth:`SqlAuthFailures.add`
counts a failure in one statement (an upsert that opens a new window when the
old one has run out) and returns the count, so N processes reach the limit
together instead of N times over; :meth:`SqlAuthFailures.over` lists the
sources at the limit for the processes that have not seen them fail.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, String, Table, text
from sqlalchemy.exc import SQLAlchemyError

from donjon.errors import StorageError
from donjon.storage.sql import Database, metadata

windows = Table(
    "auth_failure_windows",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("opened", Float, nullable=False, index=True),
    Column("failures", Integer, nullable=False),
)

_ADD = text(
    "INSERT INTO auth_failure_windows (source, opened, failures) VALUES (:source, :now, 1) "
    "ON CONFLICT (source) DO UPDATE SET "
    "failures = CASE WHEN auth_failure_windows.opened <= :expired THEN 1 "
    "ELSE auth_failure_windows.failures + 1 END, "
    "opened = CASE WHEN auth_failure_windows.opened <= :expired THEN :now "
    "ELSE auth_failure_windows.opened END "
    "RETURNING failures, opened"
)
_OVER = text(
    "SELECT source, opened FROM auth_failure_windows WHERE failures >= :limit AND opened > :expired"
)
_EXPIRE = text("DELETE FROM auth_failure_windows WHERE opened <= :expired")


class SqlAuthFailures:
    """Failure windows in the ``auth_failure_windows`` table of ``database``."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, source: str, now: float, window: float) -> tuple[int, float]:
        """Count one failure of ``source``: its failures in the current window, and when
        that window opened (a window older than ``window`` seconds starts again at 1)."""
        values = {"source": source[:64], "now": now, "expired": now - window}
        try:
            with self._db.engine.begin() as connection:
                failures, opened = connection.execute(_ADD, values).one()
        except SQLAlchemyError as e:
            raise StorageError(f"cannot count a failed authentication: {e}") from e
        return int(failures), float(opened)

    def over(self, limit: int, now: float, window: float) -> dict[str, float]:
        """The sources with ``limit`` failures or more in an open window: when it opened."""
        try:
            with self._db.reader() as connection:
                rows = connection.execute(_OVER, {"limit": limit, "expired": now - window})
                return {str(source): float(opened) for source, opened in rows}
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read the failed authentications: {e}") from e

    def expire(self, now: float, window: float) -> None:
        """Forget the windows that have run out."""
        try:
            with self._db.engine.begin() as connection:
                connection.execute(_EXPIRE, {"expired": now - window})
        except SQLAlchemyError as e:
            raise StorageError(f"cannot forget old failed authentications: {e}") from e
