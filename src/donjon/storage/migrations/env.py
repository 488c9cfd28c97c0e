"""Alembic environment: always run on the connection handed in by ``migrate``."""

from __future__ import annotations

from alembic import context

from donjon.storage.sql import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run Donjon migrations through donjon.storage.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
