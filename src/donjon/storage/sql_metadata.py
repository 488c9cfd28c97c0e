"""The MetadataStore port on SQL: JSON documents keyed by namespace and key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import JSON, Column, DateTime, String, Table, select
from sqlalchemy.exc import SQLAlchemyError

from donjon.errors import StorageError
from donjon.storage.sql import Database, metadata

documents = Table(
    "metadata_documents",
    metadata,
    Column("namespace", String(128), primary_key=True),
    Column("key", String(512), primary_key=True),
    Column("value", JSON(), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class SqlMetadataStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def get(self, namespace: str, key: str) -> dict[str, object] | None:
        query = select(documents.c.value).where(
            documents.c.namespace == namespace, documents.c.key == key
        )
        try:
            with self._db.engine.connect() as connection:
                value = connection.execute(query).scalar_one_or_none()
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read {namespace}/{key}: {e}") from e
        return dict(value) if value is not None else None

    def put(self, namespace: str, key: str, value: dict[str, object]) -> None:
        row = {"namespace": namespace, "key": key, "value": value, "updated_at": datetime.now(UTC)}
        try:
            with self._db.engine.begin() as connection:
                updated = connection.execute(
                    documents.update()
                    .where(documents.c.namespace == namespace, documents.c.key == key)
                    .values(value=value, updated_at=row["updated_at"])
                ).rowcount
                if not updated:
                    connection.execute(documents.insert().values(**row))
        except SQLAlchemyError as e:
            raise StorageError(f"cannot write {namespace}/{key}: {e}") from e

    def keys(self, namespace: str, prefix: str = "") -> Iterator[str]:
        query = (
            select(documents.c.key)
            .where(
                documents.c.namespace == namespace,
                documents.c.key.startswith(prefix, autoescape=True),
            )
            .order_by(documents.c.key)
        )
        try:
            with self._db.engine.connect() as connection:
                found = list(connection.execute(query).scalars())
        except SQLAlchemyError as e:
            raise StorageError(f"cannot list {namespace}: {e}") from e
        return iter(found)
