"""The registry's catalogue (``RegistryStore``) on SQL: SQLite or PostgreSQL.

Tables (migration ``registry_0001``): ``registry_versions`` (one row per
immutable version; only stage and status ever change), ``registry_lineage``
(model version <- dataset versions), ``registry_gate_results``,
``registry_attachments`` (signed documents, ``registry_0002``) and
``registry_transitions`` (every stage and status change, append-only).
Version numbers come from ``max + 1`` under a unique constraint; a writer that
loses the race retries, so concurrent pushes never share or skip a number.

With a :class:`TransactionJournal` (the ledger and the outbox, wired by
``donjon.app``), the events that record a write are journalled in the write's
own transaction (the outbox pattern): no version, stage or status becomes
visible without its evidence, and no evidence exists for a write that did not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from donjon.core.events import SecurityEvent
from donjon.errors import NotFound, StorageError
from donjon.storage.registry_attachments import SqlAttachments, by_version
from donjon.storage.sql import Database, as_utc, metadata

versions = Table(
    "registry_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("number", Integer, nullable=False),
    Column("digest", String(140), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(200), nullable=False),
    Column("metadata", JSON(), nullable=False),
    Column("stage", String(16), nullable=True),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("status_by", String(256), nullable=True),
    Column("status_at", DateTime(timezone=True), nullable=True),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("kind", "name", "number", name="uq_registry_versions_kind_name_number"),
)

lineage = Table(
    "registry_lineage",
    metadata,
    Column("version_id", Integer, ForeignKey("registry_versions.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("dataset_version", Integer, nullable=False),
)

gate_results = Table(
    "registry_gate_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("registry_versions.id"), nullable=False, index=True),
    Column("gate", String(100), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("target", String(16), nullable=False),
    Column("reasons", JSON(), nullable=False),
    Column("details", JSON(), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

transitions = Table(
    "registry_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("registry_versions.id"), nullable=False, index=True),
    Column("field", String(16), nullable=False),  # "stage" or "status"
    Column("old", String(16), nullable=True),
    Column("new", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("by", String(256), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

_RETRIES = 50
EventsOf = Callable[[dict[str, Any]], Sequence[SecurityEvent]]


class TransactionJournal(Protocol):
    """Journals events inside a caller's transaction (the ledger and the outbox)."""

    def append_in(
        self, connection: Connection, events: Sequence[SecurityEvent]
    ) -> Callable[[], None]:
        """Write ``events`` in ``connection``'s open transaction; return what to run once
        it has committed."""
        ...


def _nothing() -> None:
    return None


_VERSION_FIELDS = (
    "kind", "name", "digest", "size", "media_type", "metadata", "stage", "status",
    "status_reason", "status_by", "status_at", "created_by", "created_at",
)  # fmt: skip
T = TypeVar("T")
# One version row with its lineage (one row per dataset it names, or one with NULLs),
# built once: SQLAlchemy caches its compiled form.
_VERSION_WITH_LINEAGE = (
    select(
        versions,
        lineage.c.dataset.label("lineage_dataset"),
        lineage.c.dataset_version.label("lineage_version"),
    )
    .select_from(versions.outerjoin(lineage, lineage.c.version_id == versions.c.id))
    .where(
        versions.c.kind == bindparam("kind"),
        versions.c.name == bindparam("name"),
        versions.c.number == bindparam("number"),
    )
    .order_by(lineage.c.position)
)


class SqlRegistryStore(SqlAttachments):
    """RegistryStore on a :class:`~donjon.storage.sql.Database`."""

    def __init__(self, database: Database, journal: TransactionJournal | None = None) -> None:
        self._db = database
        self._journal = journal

    # -- writes ----------------------------------------------------------------

    def add_version(
        self,
        row: Mapping[str, Any],
        gates: Sequence[Mapping[str, Any]] = (),
        events: EventsOf | None = None,
    ) -> dict[str, Any]:
        """Record the next version; with a journal, ``events(stored row)`` commit with it."""
        for attempt in range(_RETRIES):
            try:
                with self._db.engine.begin() as conn:
                    found = self._insert(conn, row, gates)
                    after = self._journal_in(conn, events, found)
                after()
                return found
            except IntegrityError:
                time.sleep(0.002 * (attempt + 1))  # another writer took the number: retry
            except SQLAlchemyError as e:
                raise StorageError(f"cannot record {row['kind']} {row['name']}: {e}") from e
        raise StorageError(f"cannot allocate a version number for {row['name']}: contention")

    def _insert(
        self, conn: Connection, row: Mapping[str, Any], gates: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        kind, name = str(row["kind"]), str(row["name"])
        current = conn.execute(
            select(func.max(versions.c.number)).where(
                versions.c.kind == kind, versions.c.name == name
            )
        ).scalar_one()
        number = int(current or 0) + 1
        values = {field: row.get(field) for field in _VERSION_FIELDS}
        values.update(kind=kind, number=number, metadata=dict(row.get("metadata") or {}))
        # RETURNING: the row as stored, without reading it back (nor its lineage, written here)
        stored = conn.execute(versions.insert().values(**values).returning(*versions.c)).one()
        refs = [[str(d), int(v)] for d, v in row.get("lineage") or ()]
        for position, (dataset, dataset_version) in enumerate(refs):
            conn.execute(
                lineage.insert().values(
                    version_id=stored.id,
                    position=position,
                    dataset=dataset,
                    dataset_version=dataset_version,
                )
            )
        self._insert_gates(conn, stored.id, gates)
        return self._as_dict(stored, refs)

    def _journal_in(
        self, conn: Connection, events: EventsOf | None, found: dict[str, Any]
    ) -> Callable[[], None]:
        if events is None or self._journal is None:
            return _nothing
        return self._journal.append_in(conn, events(found))

    def _insert_gates(
        self, conn: Connection, version_id: int, gates: Sequence[Mapping[str, Any]]
    ) -> None:
        for gate in gates:
            conn.execute(
                gate_results.insert().values(
                    version_id=version_id,
                    gate=gate["gate"],
                    passed=bool(gate["passed"]),
                    target=gate["target"],
                    reasons=list(gate.get("reasons") or ()),
                    details=dict(gate.get("details") or {}),
                    at=gate.get("time") or datetime.now(UTC),
                )
            )

    def set_stage(
        self,
        kind: str,
        name: str,
        number: int,
        stage: str,
        by: str,
        at: datetime,
        events: EventsOf | None = None,
    ) -> dict[str, Any]:
        return self._change(kind, name, number, "stage", stage, None, by, at, events)

    def set_status(
        self,
        kind: str,
        name: str,
        number: int,
        status: str,
        reason: str,
        by: str,
        at: datetime,
        events: EventsOf | None = None,
    ) -> dict[str, Any]:
        return self._change(kind, name, number, "status", status, reason, by, at, events)

    def _change(
        self,
        kind: str,
        name: str,
        number: int,
        field: str,
        value: str,
        reason: str | None,
        by: str,
        at: datetime,
        events: EventsOf | None = None,
    ) -> dict[str, Any]:
        try:
            with self._db.engine.begin() as conn:
                row = self._row(conn, kind, name, number)
                if row is None:
                    raise NotFound(f"no {kind} version {name}@{number}")
                changes: dict[str, Any] = {field: value}
                if field == "status":
                    changes.update(status_reason=reason, status_by=by, status_at=at)
                conn.execute(versions.update().where(versions.c.id == row.id).values(**changes))
                conn.execute(
                    transitions.insert().values(
                        version_id=row.id,
                        field=field,
                        old=getattr(row, field),
                        new=value,
                        reason=reason,
                        by=by,
                        at=at,
                    )
                )
                found = self._must_get(conn, kind, name, number)
                after = self._journal_in(conn, events, found)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot change {name}@{number}: {e}") from e
        after()
        return found

    def add_gate_results(
        self,
        kind: str,
        name: str,
        number: int,
        results: Sequence[Mapping[str, Any]],
        events: EventsOf | None = None,
    ) -> None:
        try:
            with self._db.engine.begin() as conn:
                row = self._row(conn, kind, name, number)
                if row is None:
                    raise NotFound(f"no {kind} version {name}@{number}")
                self._insert_gates(conn, row.id, results)
                after = self._journal_in(conn, events, self._version(conn, row))
        except SQLAlchemyError as e:
            raise StorageError(f"cannot record gate results of {name}@{number}: {e}") from e
        after()

    # -- reads -----------------------------------------------------------------

    def get_version(self, kind: str, name: str, number: int) -> dict[str, Any] | None:
        return self._read(lambda conn: self._get(conn, kind, name, number))

    def latest_version(self, kind: str, name: str) -> dict[str, Any] | None:
        def query(conn: Connection) -> dict[str, Any] | None:
            number = conn.execute(
                select(func.max(versions.c.number)).where(
                    versions.c.kind == kind, versions.c.name == name
                )
            ).scalar_one()
            return None if number is None else self._get(conn, kind, name, int(number))

        return self._read(query)

    def versions(self, kind: str, name: str) -> list[dict[str, Any]]:
        def query(conn: Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                select(versions)
                .where(versions.c.kind == kind, versions.c.name == name)
                .order_by(versions.c.number)
            ).all()
            return self._versions(conn, rows)

        return self._read(query)

    def names(self, kind: str, prefix: str = "") -> list[str]:
        query = (
            select(versions.c.name)
            .where(versions.c.kind == kind, versions.c.name.startswith(prefix, autoescape=True))
            .distinct()
            .order_by(versions.c.name)
        )
        return self._read(lambda conn: [str(n) for n in conn.execute(query).scalars()])

    def gate_results(self, kind: str, name: str, number: int) -> list[dict[str, Any]]:
        def query(conn: Connection) -> list[dict[str, Any]]:
            row = self._row(conn, kind, name, number)
            if row is None:
                return []
            rows = conn.execute(
                select(gate_results)
                .where(gate_results.c.version_id == row.id)
                .order_by(gate_results.c.id)
            ).all()
            return [_gate_row(r) for r in rows]

        return self._read(query)

    # -- whole-kind reads (the console's overview pages: one query, not one per name) --

    def kind_versions(self, kind: str) -> list[dict[str, Any]]:
        """Every version of ``kind``, ordered by name then number."""

        def query(conn: Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                select(versions)
                .where(versions.c.kind == kind)
                .order_by(versions.c.name, versions.c.number)
            ).all()
            return self._versions(conn, rows)

        return self._read(query)

    def kind_gate_results(self, kind: str) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """The gate results of every version of ``kind``, by ``(name, number)``, oldest first."""

        return self._read(lambda conn: by_version(conn, kind, gate_results, _gate_row))

    def _read(self, query: Callable[[Connection], T]) -> T:
        try:
            with self._db.reader() as conn:
                return query(conn)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read the registry: {e}") from e

    def _row(self, conn: Connection, kind: str, name: str, number: int) -> Row[Any] | None:
        return conn.execute(
            select(versions).where(
                versions.c.kind == kind,
                versions.c.name == name,
                versions.c.number == number,
            )
        ).first()

    def _get(self, conn: Connection, kind: str, name: str, number: int) -> dict[str, Any] | None:
        """One version and its lineage, in one query (every read, pull and promotion asks)."""
        rows = conn.execute(_VERSION_WITH_LINEAGE, {"kind": kind, "name": name, "number": number})
        found = rows.all()
        if not found:
            return None
        refs = [
            [r.lineage_dataset, r.lineage_version] for r in found if r.lineage_dataset is not None
        ]
        return self._as_dict(found[0], refs)

    def _must_get(self, conn: Connection, kind: str, name: str, number: int) -> dict[str, Any]:
        found = self._get(conn, kind, name, number)
        if found is None:  # pragma: no cover - written in this same transaction
            raise StorageError(f"{kind} {name}@{number} vanished")
        return found

    def _version(self, conn: Connection, row: Row[Any]) -> dict[str, Any]:
        return self._versions(conn, [row])[0]

    def _versions(self, conn: Connection, rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
        """The rows as version dicts, with the lineage of all of them read in one query."""
        refs: dict[int, list[list[Any]]] = {row.id: [] for row in rows}
        if refs:
            found = conn.execute(
                select(lineage.c.version_id, lineage.c.dataset, lineage.c.dataset_version)
                .where(lineage.c.version_id.in_(list(refs)))
                .order_by(lineage.c.version_id, lineage.c.position)
            )
            for version_id, dataset, dataset_version in found:
                refs[version_id].append([dataset, dataset_version])
        return [self._as_dict(row, refs[row.id]) for row in rows]

    @staticmethod
    def _as_dict(row: Row[Any], refs: list[list[Any]]) -> dict[str, Any]:
        found = {field: getattr(row, field) for field in _VERSION_FIELDS}
        found.update(
            number=row.number,
            metadata=dict(row.metadata),
            created_at=as_utc(row.created_at),
            status_at=as_utc(row.status_at) if row.status_at else None,
            lineage=refs,
        )
        return found


def _gate_row(r: Row[Any]) -> dict[str, Any]:
    return {
        "gate": r.gate,
        "passed": bool(r.passed),
        "target": r.target,
        "reasons": list(r.reasons),
        "details": dict(r.details),
        "time": as_utc(r.at),
    }
