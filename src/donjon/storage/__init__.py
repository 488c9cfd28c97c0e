"""Adapters for the core's ports: SQL databases (SQLite, PostgreSQL), files, blobs.

Capabilities never import this package; ``donjon.app`` wires its adapters in.
"""

from donjon.storage.sql import Database, migrate, open_database
from donjon.storage.sql_metadata import SqlMetadataStore

__all__ = ["Database", "SqlMetadataStore", "migrate", "open_database"]
