"""A wired vault on the real databases (SQLite and PostgreSQL), with port fakes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.harness import Vault, make_vault


@pytest.fixture
def vault(database_url: str, tmp_path: Path) -> Iterator[Vault]:
    v = make_vault(database_url, tmp_path / "blobs", max_blob_size=1 << 20)
    try:
        yield v
    finally:
        v.db.dispose()
