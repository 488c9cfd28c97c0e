"""The registry's attachments table: signed documents referring to a version.

Migration ``registry_0002``. Rows are only ever inserted: an attachment is
immutable, and the same document (digest) is attached to a version once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    Row,
    String,
    Table,
    UniqueConstraint,
    select,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from donjon.errors import Conflict, NotFound, StorageError
from donjon.storage.sql import Database, as_utc, metadata

attachments = Table(
    "registry_attachments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("registry_versions.id"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("digest", String(140), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(200), nullable=False),
    Column("summary", JSON(), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("version_id", "digest", name="uq_registry_attachments_version_id"),
)


class SqlAttachments:
    """The attachment half of ``SqlRegistryStore`` (a mixin)."""

    _db: Database
    _row: Callable[[Connection, str, str, int], Row[Any] | None]
    _read: Callable[[Callable[[Connection], Any]], Any]

    def add_attachment(
        self, kind: str, name: str, number: int, row: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            with self._db.engine.begin() as conn:
                version = self._row(conn, kind, name, number)
                if version is None:
                    raise NotFound(f"no {kind} version {name}@{number}")
                values = {
                    "version_id": version.id,
                    "kind": str(row["kind"]),
                    "digest": str(row["digest"]),
                    "size": int(row["size"]),
                    "media_type": str(row["media_type"]),
                    "summary": dict(row.get("summary") or {}),
                    "created_by": str(row["created_by"]),
                    "created_at": row["created_at"],
                }
                conn.execute(attachments.insert().values(**values))
                return _out(values)
        except IntegrityError as e:
            raise Conflict(f"{row['digest']} is already attached to {kind} {name}@{number}") from e
        except SQLAlchemyError as e:
            raise StorageError(f"cannot attach to {name}@{number}: {e}") from e

    def attachments(self, kind: str, name: str, number: int) -> list[dict[str, Any]]:
        def query(conn: Connection) -> list[dict[str, Any]]:
            version = self._row(conn, kind, name, number)
            if version is None:
                return []
            rows = conn.execute(
                select(attachments)
                .where(attachments.c.version_id == version.id)
                .order_by(attachments.c.id)
            ).all()
            return [_out(r._asdict()) for r in rows]

        found: list[dict[str, Any]] = self._read(query)
        return found

    def kind_attachments(self, kind: str) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """The attachments of every version of ``kind``, by ``(name, number)``, oldest first
        (one query: the console's overview pages)."""
        found: dict[tuple[str, int], list[dict[str, Any]]] = self._read(
            lambda conn: by_version(conn, kind, attachments, lambda r: _out(r._asdict()))
        )
        return found


def by_version(
    conn: Connection, kind: str, table: Table, convert: Callable[[Row[Any]], dict[str, Any]]
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The rows of ``table`` (keyed by ``version_id``) of every version of ``kind``, by
    ``(name, number)``, in insertion order: one query for a whole kind."""
    versions = metadata.tables["registry_versions"]
    rows = conn.execute(
        select(versions.c.name, versions.c.number, table)
        .join(table, table.c.version_id == versions.c.id)
        .where(versions.c.kind == kind)
        .order_by(table.c.id)
    ).all()
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        found.setdefault((str(r.name), int(r.number)), []).append(convert(r))
    return found


def _out(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": values["kind"],
        "digest": values["digest"],
        "size": int(values["size"]),
        "media_type": values["media_type"],
        "summary": dict(values["summary"] or {}),
        "created_by": values["created_by"],
        "created_at": as_utc(values["created_at"]),
    }
