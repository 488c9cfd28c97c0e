"""The audit ledger on SQL: an append-only chain table, its head row and checkpoints.

Appends are serialised on the single head row: ``BEGIN IMMEDIATE`` on SQLite
(the write lock is taken before the head is read) and ``SELECT ... FOR UPDATE``
on PostgreSQL, so concurrent writers, threads or processes, never fork the
chain, lose, duplicate or reorder an entry. Triggers installed by the
migration refuse ``UPDATE`` and ``DELETE`` on the chain table; verification
does not rely on them (a database owner can drop them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, String, Table, Text, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from donjon.errors import AuditError
from donjon.storage.sql import Database, metadata

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


class SqlLedgerStore:
    """Implements ``donjon.audit.LedgerStore``."""

    def __init__(self, database: Database, *, fetch_size: int = 10_000) -> None:
        self._db = database
        self._fetch = fetch_size

    def append(self, build: Callable[[int, str], Sequence[Row]]) -> Sequence[Row]:
        try:
            with self._db.engine.connect() as connection:
                if self._db.is_sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                current = connection.execute(
                    select(head.c.seq, head.c.hash).where(head.c.id == 1).with_for_update()
                ).one()
                rows = build(int(current.seq), str(current.hash))
                if rows:
                    connection.execute(
                        entries.insert(),
                        [{"seq": s, "prev_hash": p, "hash": h, "body": b} for s, p, h, b in rows],
                    )
                    last = rows[-1]
                    connection.execute(
                        head.update().where(head.c.id == 1).values(seq=last[0], hash=last[2])
                    )
                connection.commit()
                return rows
        except SQLAlchemyError as e:
            raise AuditError(f"cannot append to the ledger: {e}") from e

    def head(self) -> tuple[int, str]:
        try:
            with self._db.engine.connect() as connection:
                row = connection.execute(
                    select(head.c.seq, head.c.hash).where(head.c.id == 1)
                ).one()
        except SQLAlchemyError as e:
            raise AuditError(f"cannot read the ledger head: {e}") from e
        return int(row.seq), str(row.hash)

    def rows(self, start: int = 1) -> Iterator[Row]:
        query = (
            select(entries.c.seq, entries.c.prev_hash, entries.c.hash, entries.c.body)
            .where(entries.c.seq >= start)
            .order_by(entries.c.seq)
        )
        try:
            with self._db.engine.connect() as connection:
                result = connection.execution_options(stream_results=True, yield_per=self._fetch)
                for partition in result.execute(query).partitions():
                    for seq, prev, digest, body in partition:
                        yield int(seq), prev, digest, body
        except SQLAlchemyError as e:
            raise AuditError(f"cannot read the ledger: {e}") from e

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
            time = row["time"]
            if time.tzinfo is None:
                time = time.replace(tzinfo=UTC)
            row["time"] = time.isoformat()
        return list(rows)
