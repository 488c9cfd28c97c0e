"""The SOC outbox on SQL: events stored before they are acknowledged, per-sink cursors,
dead letters.

Sequence numbers are committed in order: on PostgreSQL each append takes a
transaction-scoped advisory lock (SQLite has one writer anyway), so a reader
never sees seq N+1 before seq N and a cursor can never skip an event. Appends
are idempotent by event uid.

The relay lease (``outbox_leases``) lets several processes share one outbox
while only one of them delivers: a holder renews its row before it expires, and
anyone may take over a row whose time has passed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from donjon.errors import StorageError
from donjon.storage.sql import Database, as_utc, metadata

_SEQ = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "outbox_events",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("uid", String(64), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("payload", Text(), nullable=False),
)
cursors = Table(
    "outbox_cursors",
    metadata,
    Column("sink", String(128), primary_key=True),
    Column("position", BigInteger(), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
dead_letters = Table(
    "outbox_dead_letters",
    metadata,
    Column("sink", String(128), primary_key=True),
    Column("seq", BigInteger(), primary_key=True),
    Column("uid", String(64), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("error", Text(), nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
)

leases = Table(
    "outbox_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

Row = tuple[str, str, datetime, str]  # uid, kind, time, payload (JSON)
_SQLITE_READ = "SELECT seq, uid, payload FROM outbox_events WHERE seq > ? ORDER BY seq LIMIT ?"
_SQLITE_INSERT = (
    "INSERT OR IGNORE INTO outbox_events (uid, kind, time, payload) VALUES (?, ?, ?, ?)"
)


def advisory_key(purpose: str, url: str) -> int:
    """A PostgreSQL advisory lock key (signed 64-bit) for ``purpose`` in the database and
    schema ``url`` names: advisory locks are database-wide, so two outboxes in two schemas
    (or two test runs) must not share a key."""
    digest = hashlib.blake2b(f"{purpose}\0{url}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _sqlite_time(t: datetime) -> str:
    """SQLAlchemy's own SQLite DateTime storage format, in UTC: ``2026-11-27 12:00:00.000000``."""
    if t.utcoffset():
        t = t.astimezone(UTC)
    return t.replace(tzinfo=None).isoformat(" ", "microseconds")


class SqlOutboxStore:
    """Implements ``donjon.soc.outbox.OutboxStore`` on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database
        dialect = sqlite if database.is_sqlite else postgresql
        self._lock_key = advisory_key("outbox", database.url)
        self._insert = dialect.insert(events).on_conflict_do_nothing(index_elements=["uid"])
        self._insert_cursor = dialect.insert(cursors).on_conflict_do_nothing(
            index_elements=["sink"]
        )
        self._insert_lease = dialect.insert(leases).on_conflict_do_nothing(index_elements=["name"])

    @property
    def database(self) -> Database:
        return self._db

    def append_many(self, rows: Sequence[Row]) -> int:
        """Store ``rows`` in one transaction; return how many were new (by uid)."""
        if not rows:
            return 0
        try:
            with self._db.engine.begin() as connection:
                return self._append(connection, rows)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot store events in the outbox: {e}") from e

    def append_in(self, connection: Connection, rows: Sequence[Row]) -> int:
        """Store ``rows`` inside the caller's open transaction (committed with it)."""
        if not rows:
            return 0
        try:
            return self._append(connection, rows)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot store events in the outbox: {e}") from e

    def _append(self, connection: Connection, rows: Sequence[Row]) -> int:
        if self._db.is_sqlite:  # the hot path: one driver-level executemany
            values = [(u, k, _sqlite_time(t), p) for u, k, t, p in rows]
            result = connection.exec_driver_sql(_SQLITE_INSERT, values)
        else:
            lock = text("SELECT pg_advisory_xact_lock(:k)")
            connection.execute(lock, {"k": self._lock_key})
            params = [{"uid": u, "kind": k, "time": t, "payload": p} for u, k, t, p in rows]
            result = connection.execute(self._insert, params)
        return max(result.rowcount, 0)

    def read_after(self, position: int, limit: int) -> list[tuple[int, str, str]]:
        """Up to ``limit`` (seq, uid, payload) after ``position``, in order."""
        if self._db.is_sqlite:  # the hot path: rows straight from the driver
            try:
                with self._db.engine.connect() as connection:
                    found = connection.exec_driver_sql(_SQLITE_READ, (position, limit)).fetchall()
            except SQLAlchemyError as e:
                raise StorageError(f"cannot read the outbox: {e}") from e
            return [(int(s), str(u), str(p)) for s, u, p in found]
        query = (
            select(events.c.seq, events.c.uid, events.c.payload)
            .where(events.c.seq > position)
            .order_by(events.c.seq)
            .limit(limit)
        )
        return [(int(s), str(u), str(p)) for s, u, p in self._fetch(query)]

    def position(self, sink: str) -> int:
        query = select(cursors.c.position).where(cursors.c.sink == sink)
        rows = self._fetch(query)
        return int(rows[0][0]) if rows else 0

    def advance(self, sink: str, position: int) -> None:
        now = datetime.now(UTC)
        try:
            with self._db.engine.begin() as connection:
                updated = connection.execute(
                    cursors.update()
                    .where(cursors.c.sink == sink, cursors.c.position < position)
                    .values(position=position, updated_at=now)
                ).rowcount
                if not updated:
                    exists = connection.execute(
                        select(cursors.c.sink).where(cursors.c.sink == sink)
                    ).first()
                    if exists is None:  # a racing first advance loses quietly
                        connection.execute(
                            self._insert_cursor.values(sink=sink, position=position, updated_at=now)
                        )
        except SQLAlchemyError as e:
            raise StorageError(f"cannot move the outbox cursor of {sink}: {e}") from e

    def add_dead_letter(self, sink: str, seq: int, uid: str, attempts: int, error: str) -> None:
        row = {"sink": sink, "seq": seq, "uid": uid, "attempts": attempts, "error": error[:4000]}
        row["failed_at"] = datetime.now(UTC)
        try:
            with self._db.engine.begin() as connection:
                connection.execute(
                    dead_letters.delete().where(
                        dead_letters.c.sink == sink, dead_letters.c.seq == seq
                    )
                )
                connection.execute(dead_letters.insert().values(**row))
        except SQLAlchemyError as e:
            raise StorageError(f"cannot park event {uid} for {sink}: {e}") from e

    def dead_letters(self, sink: str | None = None) -> list[dict[str, Any]]:
        query = select(dead_letters).order_by(dead_letters.c.sink, dead_letters.c.seq)
        if sink is not None:
            query = query.where(dead_letters.c.sink == sink)
        return [dict(row._mapping) for row in self._rows(query)]

    def payload(self, seq: int) -> str | None:
        rows = self._fetch(select(events.c.payload).where(events.c.seq == seq))
        return str(rows[0][0]) if rows else None

    def last_seq(self) -> int:
        rows = self._fetch(select(func.max(events.c.seq)))
        return int(rows[0][0] or 0)

    def count_after(self, position: int) -> int:
        rows = self._fetch(select(func.count()).select_from(events).where(events.c.seq > position))
        return int(rows[0][0])

    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``ttl`` seconds; False while another holds it.

        One conditional UPDATE (or an INSERT of a missing row) decides, so two
        processes racing for an expired lease cannot both win it.
        """
        now = datetime.now(UTC)
        until = now + timedelta(seconds=ttl)
        try:
            with self._db.engine.begin() as connection:
                taken = connection.execute(
                    leases.update()
                    .where(
                        leases.c.name == name,
                        (leases.c.holder == holder) | (leases.c.expires_at < now),
                    )
                    .values(holder=holder, expires_at=until)
                    .returning(leases.c.name)
                ).first()
                if taken is None:  # no row yet, or another holder's unexpired one
                    taken = connection.execute(
                        self._insert_lease.values(
                            name=name, holder=holder, expires_at=until
                        ).returning(leases.c.name)
                    ).first()
                return taken is not None
        except SQLAlchemyError as e:
            raise StorageError(f"cannot take the outbox lease {name}: {e}") from e

    def release_lease(self, name: str, holder: str) -> None:
        """Give lease ``name`` up now (if ``holder`` still holds it)."""
        try:
            with self._db.engine.begin() as connection:
                connection.execute(
                    leases.delete().where(leases.c.name == name, leases.c.holder == holder)
                )
        except SQLAlchemyError as e:
            raise StorageError(f"cannot release the outbox lease {name}: {e}") from e

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        """Who holds lease ``name`` and until when (expired rows included), or None."""
        rows = self._fetch(
            select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
        )
        if not rows:
            return None
        holder, until = rows[0]
        return str(holder), as_utc(until)

    def _fetch(self, query: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._rows(query)]

    def _rows(self, query: Any) -> list[Any]:
        try:
            with self._db.engine.connect() as connection:
                return list(connection.execute(query))
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read the outbox: {e}") from e
