"""Shared fixtures: an isolated DONJON_HOME for every test."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# One BLAS / OpenMP thread, in this process and the servers and CLIs the tests start. The
# tests' matrices are small: on a 2-core machine that other work shares, OpenBLAS's
# spinning threads made the gateway's victim training 13-17 s of CPU instead of 0.7 s.
# Set before anything imports numpy (and inherited by subprocesses); a value already in
# the environment is kept.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
if "numpy" in sys.modules:  # a plugin imported it first: limit the loaded pools instead
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def donjon_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty Donjon home and no stray DONJON_* variables."""

    for name in list(os.environ):
        if name.startswith("DONJON_"):
            monkeypatch.delenv(name)
    home = tmp_path / "donjon-home"
    monkeypatch.setenv("DONJON_HOME", str(home))
    return home


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` as the current folder: commands run with the relative paths a reader
    types (``-o split``, ``./-dash.csv``)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a fresh schema, dropped afterwards.

    Uses the machine's real server (``.ci/services`` starts it when down);
    schemas keep parallel test runs from seeing each other's tables.
    """
    import psycopg

    schema = f"donjon_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each SQL adapter test runs on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+pysqlite:///{tmp_path / 'donjon.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
