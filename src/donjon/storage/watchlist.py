"""The watch list on SQL, shared by every replica of the vault (migration ``watch_0001``).

Implements ``donjon.watch.watchlist.WatchRows``: one row per watched model
version in ``watch_entries`` (unique on model and version) and one row per
remembered check or probe in ``watch_results``. Every write is one short
transaction that touches only its own rows, so replicas enrolling or checking
at once lose nothing: adding a result is an insert (then the oldest beyond
``keep`` are deleted), never a read-modify-write of a shared document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from donjon.errors import StorageError
from donjon.storage.sql import Database, metadata

HISTORIES = ("checks", "probes")
ENTRY_FIELDS = ("model", "version", "endpoint", "fingerprint", "points", "enrolled_at")

entries = Table(
    "watch_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("endpoint", String(2000), nullable=False),
    Column("fingerprint", String(140), nullable=False),
    Column("points", Integer, nullable=False),
    Column("enrolled_at", String(64), nullable=False),
    UniqueConstraint("model", "version", name="uq_watch_entries_model"),
)
results = Table(
    "watch_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", Integer, ForeignKey("watch_entries.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("result", JSON(), nullable=False),
    Index("ix_watch_results_entry_id", "entry_id", "kind", "id"),
)


class SqlWatchRows:
    """Watch-list rows in the ``watch_entries`` and ``watch_results`` tables of ``database``."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def rows(self) -> list[dict[str, Any]]:
        """Every entry, in enrolment order, with its ``checks`` and ``probes`` (oldest first)."""
        try:
            with self._db.reader() as connection:
                found = connection.execute(select(entries).order_by(entries.c.id)).all()
                history = connection.execute(select(results).order_by(results.c.id)).all()
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read the watch list: {e}") from e
        by_id: dict[int, dict[str, Any]] = {}
        for row in found:
            by_id[row.id] = {f: getattr(row, f) for f in ENTRY_FIELDS} | {
                "checks": [],
                "probes": [],
            }
        for row in history:
            if row.entry_id in by_id and row.kind in HISTORIES:
                by_id[row.entry_id][row.kind].append(row.result)
        return list(by_id.values())

    def put(self, row: Mapping[str, Any]) -> None:
        """Add the watch of one model version, or replace it (its history starts afresh)."""
        values = {f: row[f] for f in ENTRY_FIELDS}
        where = (entries.c.model == values["model"]) & (entries.c.version == values["version"])
        for _attempt in range(3):  # another replica may insert the same version in between
            try:
                with self._db.engine.begin() as connection:
                    entry_id = connection.execute(select(entries.c.id).where(where)).scalar()
                    if entry_id is None:
                        connection.execute(insert(entries).values(**values))
                        return
                    connection.execute(
                        update(entries).where(entries.c.id == entry_id).values(**values)
                    )
                    connection.execute(delete(results).where(results.c.entry_id == entry_id))
                    return
            except IntegrityError:
                continue
            except SQLAlchemyError as e:
                raise StorageError(
                    f"cannot enrol {values['model']}@{values['version']}: {e}"
                ) from e
        raise StorageError(f"cannot enrol {values['model']}@{values['version']}: kept conflicting")

    def append(
        self, model: str, version: int, kind: str, result: Mapping[str, Any], keep: int
    ) -> bool:
        """Remember one result of a watched version, keeping its newest ``keep`` of ``kind``;
        False when the version is not watched (any more)."""
        if kind not in HISTORIES:
            raise ValueError(f"kind must be one of {HISTORIES}, not {kind!r}")
        where = (entries.c.model == model) & (entries.c.version == version)
        try:
            with self._db.engine.begin() as connection:
                entry_id = connection.execute(select(entries.c.id).where(where)).scalar()
                if entry_id is None:
                    return False
                connection.execute(
                    insert(results).values(entry_id=entry_id, kind=kind, result=dict(result))
                )
                _trim(connection, entry_id, kind, keep)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot remember a result of {model}@{version}: {e}") from e
        return True

    def add_missing(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert each entry (with its history) that is not there yet, each in its own
        transaction; entries already there are left as they are. Returns the indices added."""
        added = []
        for index, row in enumerate(rows):
            values = {f: row[f] for f in ENTRY_FIELDS}
            try:
                with self._db.engine.begin() as connection:
                    added_entry = insert(entries).values(**values).returning(entries.c.id)
                    entry_id = connection.execute(added_entry).scalar_one()
                    history = [
                        {"entry_id": entry_id, "kind": kind, "result": dict(result)}
                        for kind in HISTORIES
                        for result in row.get(kind, ())
                    ]
                    if history:
                        connection.execute(insert(results), history)
            except IntegrityError:  # there already (imported before, or enrolled since)
                continue
            except SQLAlchemyError as e:
                raise StorageError(
                    f"cannot import {values['model']}@{values['version']}: {e}"
                ) from e
            added.append(index)
        return added


def _trim(connection: Connection, entry_id: int, kind: str, keep: int) -> None:
    """Delete all but the newest ``keep`` results of one kind of one entry."""
    mine = (results.c.entry_id == entry_id) & (results.c.kind == kind)
    newest_dropped = connection.execute(
        select(results.c.id).where(mine).order_by(results.c.id.desc()).offset(keep).limit(1)
    ).scalar()
    if newest_dropped is not None:
        connection.execute(delete(results).where(mine & (results.c.id <= newest_dropped)))
