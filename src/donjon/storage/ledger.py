"""The audit ledger on SQL: an append-only chain table, its head row and checkpoints.

Appends are serialised on the single head row: ``BEGIN IMMEDIATE`` on SQLite
(the write lock is taken before the head is read) and ``SELECT ... FOR UPDATE``
on PostgreSQL, so concurrent writers, threads or processes, never fork the
chain, lose, duplicate or reorder an entry. Triggers installed by the
migrations refuse ``UPDATE``, ``DELETE`` and ``TRUNCATE`` on the chain, the
checkpoints and the registered keys, and let the head row only move forward
to an entry that exists; verification does not rely on them (a database
owner can drop them).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
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
    select,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from donjon.errors import AuditError
from donjon.storage.sql import Database, as_utc, metadata

Row = tuple[int, str, str, str]

entries = Table(
    "audit_ledger",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("body", Text, nullable=False),
)
head = Table(
    "audit_ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)
checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("signature", Text, nullable=False),
    Column("ledger", String(128), nullable=False),
)
keys = Table(
    "audit_keys",
    metadata,
    Column("key_id", String(128), primary_key=True, autoincrement=False),
    Column("public_key", Text, nullable=False),
    Column("registered", DateTime(timezone=True), nullable=False),
)


class SqlLedgerStore:
    """Implements ``donjon.audit.LedgerStore``."""

    def __init__(self, database: Database, *, fetch_size: int = 20_000) -> None:
        self._db = database
        self._fetch = fetch_size

    def append(self, build: Callable[[int, str], Sequence[Row]]) -> Sequence[Row]:
        try:
            with self._db.engine.connect() as connection:
                if self._db.is_sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                rows = self._append(connection, build)
                connection.commit()
                return rows
        except SQLAlchemyError as e:
            raise AuditError(f"cannot append to the ledger: {e}") from e

    def append_in(
        self, connection: Connection, build: Callable[[int, str], Sequence[Row]]
    ) -> Sequence[Row]:
        """Append inside the caller's open transaction (committed, or not, with it).

        The head stays locked until that transaction ends. On SQLite the caller's
        transaction must already hold the write lock (it has written).
        """
        try:
            return self._append(connection, build)
        except SQLAlchemyError as e:
            raise AuditError(f"cannot append to the ledger: {e}") from e

    def _append(
        self, connection: Connection, build: Callable[[int, str], Sequence[Row]]
    ) -> Sequence[Row]:
        current = connection.execute(
            select(head.c.seq, head.c.hash).where(head.c.id == 1).with_for_update()
        ).one()
        rows = build(int(current.seq), str(current.hash))
        self._insert(connection, rows)
        if rows:
            last = rows[-1]
            connection.execute(
                head.update().where(head.c.id == 1).values(seq=last[0], hash=last[2])
            )
        return rows

    def _insert(self, connection: Connection, rows: Sequence[Row]) -> None:
        """Bulk insert on the driver: COPY on PostgreSQL, executemany on SQLite."""
        if not rows:
            return
        if self._db.is_sqlite:
            connection.exec_driver_sql(
                "INSERT INTO audit_ledger (seq, prev_hash, hash, body) VALUES (?, ?, ?, ?)",
                list(rows),
            )
            return
        raw: Any = connection.connection.driver_connection
        with (
            raw.cursor() as cursor,
            cursor.copy("COPY audit_ledger (seq, prev_hash, hash, body) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def head(self) -> tuple[int, str] | None:
        try:
            with self._db.engine.connect() as connection:
                row = connection.execute(
                    select(head.c.seq, head.c.hash).where(head.c.id == 1)
                ).one_or_none()
        except SQLAlchemyError as e:
            raise AuditError(f"cannot read the ledger head: {e}") from e
        return None if row is None else (int(row.seq), str(row.hash))

    def rows(self, start: int = 1) -> Iterator[Row]:
        """Entries in ``seq`` order.

        SQLite: one cursor stepped lazily in this thread (the fastest path; WAL
        keeps writers going meanwhile). PostgreSQL: keyset pages fetched by a
        thread while the caller hashes the previous page, so verification costs
        about max(network, hashing) rather than their sum.
        """
        if self._db.is_sqlite:
            return self._sqlite_rows(start)
        return self._prefetched_rows(start)

    def _sqlite_rows(self, start: int) -> Iterator[Row]:
        try:
            with self._db.engine.connect() as connection:
                raw: Any = connection.connection.driver_connection
                cursor = raw.execute(
                    "SELECT seq, prev_hash, hash, body FROM audit_ledger WHERE seq >= ? "
                    "ORDER BY seq",
                    (start,),
                )
                try:
                    yield from cursor
                finally:
                    cursor.close()
                    connection.rollback()
        except Exception as e:  # SQLAlchemy's and sqlite3's own errors
            raise AuditError(f"cannot read the ledger: {e}") from e

    def _prefetched_rows(self, start: int) -> Iterator[Row]:
        pages: queue.Queue[list[Row] | BaseException | None] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def fetch() -> None:
            after = start - 1
            try:
                while not stop.is_set():
                    page = self._page(after)
                    if page:
                        pages.put(page)
                    if len(page) < self._fetch:
                        break
                    after = page[-1][0]
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                pages.put(e)
                return
            pages.put(None)

        worker = threading.Thread(target=fetch, name="ledger-rows", daemon=True)
        worker.start()
        try:
            while (page := pages.get()) is not None:
                if isinstance(page, BaseException):
                    raise page
                yield from page
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    pages.get(timeout=0.05)
            worker.join()

    def _page(self, after: int) -> list[Row]:
        # The driver's own cursor: plain tuples, no Row objects (half the cost per entry).
        marker = "?" if self._db.is_sqlite else "%s"
        sql = (
            "SELECT seq, prev_hash, hash, body FROM audit_ledger "  # noqa: S608 - constants only
            f"WHERE seq > {marker} ORDER BY seq LIMIT {int(self._fetch)}"
        )
        try:
            with self._db.engine.connect() as connection:
                raw: Any = connection.connection.driver_connection
                cursor = raw.cursor()
                try:
                    cursor.execute(sql, (after,))
                    page: list[Row] = cursor.fetchall()
                finally:
                    cursor.close()
                connection.rollback()
        except Exception as e:  # SQLAlchemy's and the driver's own (sqlite3, psycopg) errors
            raise AuditError(f"cannot read the ledger: {e}") from e
        return page

    def add_checkpoint(self, checkpoint: Mapping[str, Any]) -> None:
        row = dict(checkpoint)
        row["time"] = datetime.fromisoformat(str(row["time"]))
        try:
            with self._db.engine.begin() as connection:
                connection.execute(checkpoints.insert().values(**row))
        except IntegrityError:
            return  # this entry is checkpointed already
        except SQLAlchemyError as e:
            raise AuditError(f"cannot store a ledger checkpoint: {e}") from e

    def checkpoints(self) -> list[Mapping[str, Any]]:
        try:
            with self._db.engine.connect() as connection:
                found = connection.execute(select(checkpoints).order_by(checkpoints.c.seq))
                rows: list[dict[str, Any]] = [dict(r._mapping) for r in found]
        except SQLAlchemyError as e:
            raise AuditError(f"cannot read the ledger checkpoints: {e}") from e
        for row in rows:
            row["time"] = as_utc(row["time"]).isoformat()
        return list(rows)

    def public_keys(self) -> dict[str, bytes]:
        try:
            with self._db.engine.connect() as connection:
                found = connection.execute(
                    select(keys.c.key_id, keys.c.public_key).order_by(keys.c.registered)
                ).all()
        except SQLAlchemyError as e:
            raise AuditError(f"cannot read the ledger's registered keys: {e}") from e
        return {str(r.key_id): str(r.public_key).encode("ascii") for r in found}

    def register_key(self, key_id: str, public_key_pem: bytes, *, first: bool = False) -> bool:
        """Register a checkpoint key; True when it is (now or already) registered.

        ``first``: register it only if the database registers no key yet,
        deciding under the head row's lock, so that of several replicas
        starting at once on an empty database exactly one key wins.
        """
        pem = public_key_pem.decode("ascii")
        try:
            with self._db.engine.connect() as connection:
                if self._db.is_sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                connection.execute(select(head.c.id).where(head.c.id == 1).with_for_update())
                registered = {
                    str(r.key_id): str(r.public_key)
                    for r in connection.execute(select(keys.c.key_id, keys.c.public_key))
                }
                if key_id in registered:
                    connection.rollback()
                    return registered[key_id] == pem
                if first and registered:
                    connection.rollback()
                    return False
                connection.execute(
                    keys.insert().values(
                        key_id=key_id, public_key=pem, registered=datetime.now(UTC)
                    )
                )
                connection.commit()
                return True
        except SQLAlchemyError as e:
            raise AuditError(f"cannot register the ledger key: {e}") from e
