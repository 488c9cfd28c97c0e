"""Migrations from several processes at once, ``donjon db upgrade`` and ``database_migrate``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from donjon.cli.main import main
from donjon.errors import StorageError
from donjon.storage.sql import migration_lock_key, open_database, schema_is_current

REPO = Path(__file__).resolve().parents[2]
MIGRATE = "import sys; from donjon.storage.sql import open_database; open_database(sys.argv[1])"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def test_several_processes_migrate_one_empty_schema_at_once(database_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, database_url],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read().decode() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes
    db = open_database(database_url, upgrade=False)
    try:
        assert schema_is_current(db)
        with db.engine.connect() as connection:
            heads = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
            assert len(set(heads)) == len(list(_heads()))
    finally:
        db.dispose()


def _heads() -> list[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from donjon.storage.sql import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return list(ScriptDirectory.from_config(config).get_heads())


def test_the_lock_key_differs_per_schema() -> None:
    assert migration_lock_key("test", "a") != migration_lock_key("test", "b")
    assert migration_lock_key("test", "a") == migration_lock_key("test", "a")
    assert -(2**63) <= migration_lock_key("x", "y") < 2**63


def test_db_upgrade_then_servers_that_do_not_migrate(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DONJON_DATABASE_URL", database_url)
    monkeypatch.setenv("DONJON_DATABASE_MIGRATE", "false")
    assert main(["db", "check"]) == 1  # an empty schema needs an upgrade
    from donjon.app.sql import open_sql
    from donjon.config import load_settings

    with pytest.raises(StorageError, match="donjon db upgrade"):
        open_sql(load_settings())
    assert main(["--format", "json", "db", "upgrade"]) == 0
    assert '"migrated": true' in capsys.readouterr().out
    assert main(["--format", "json", "db", "upgrade"]) == 0  # a second run changes nothing
    assert '"migrated": false' in capsys.readouterr().out
    assert main(["db", "check"]) == 0
    open_sql(load_settings()).dispose()
