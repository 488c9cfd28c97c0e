"""Console sessions in the database: sealed, expiring, ended at logout, shared by servers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from donjon.core.clock import ManualClock
from donjon.server.ui.sessions import SessionStore
from donjon.storage.console_sessions import SqlSessionRows
from donjon.storage.sql import open_database
from tests.console.site import log_in
from tests.server.process import prepare_home, running_server, server_env

CONSOLE_POLICY = '\n@id("alice-console")\npermit (principal == User::"alice", action, resource);\n'


def test_sql_sessions_are_sealed_expire_and_end(database_url: str) -> None:
    database = open_database(database_url)
    try:
        clock = ManualClock(datetime(2026, 12, 6, tzinfo=UTC))
        store = SessionStore(clock, 60, SqlSessionRows(database))
        other = SessionStore(clock, 60, SqlSessionRows(database))  # another process's view
        session_id, opened = store.open("djt_secret-token")
        found = other.get(session_id)
        assert found is not None
        assert found.credential == "djt_secret-token"
        assert found.csrf == opened.csrf
        with database.engine.connect() as connection:
            raw = connection.exec_driver_sql("SELECT key, sealed FROM console_sessions").all()
        assert len(raw) == 1
        assert session_id not in raw[0][0]  # keyed by its hash, never the id itself
        assert b"secret-token" not in bytes(raw[0][1])  # the credential is sealed
        assert other.get(session_id[:-1] + ("A" if session_id[-1] != "A" else "B")) is None
        store.viewed(session_id, "posture")
        viewed = other.get(session_id)
        assert viewed is not None
        assert viewed.viewed == frozenset({"posture"})
        clock.advance(61)
        assert other.get(session_id) is None  # expired, and dropped
        second, _ = store.open("djt_other")
        store.close(second)
        assert other.get(second) is None  # logout deletes it everywhere
    finally:
        database.dispose()


@pytest.mark.integration
@pytest.mark.postgres
def test_a_session_opened_on_one_server_works_on_another_and_logout_ends_it(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    home = tmp_path / "home"
    token = prepare_home(home, postgres_url, monkeypatch, capsys)
    policy = home / "policies.cedar"
    policy.write_text(policy.read_text() + CONSOLE_POLICY)
    env = server_env(home, postgres_url)
    with running_server(env) as (_, first), running_server(env) as (_, second):
        with httpx.Client(base_url=first, timeout=30) as browser:
            log_in(browser, token)
            cookie = browser.cookies["donjon_session"]
            page = browser.get("/ui/events")
            assert page.status_code == 200
        jar = {"donjon_session": cookie}
        with httpx.Client(base_url=second, cookies=jar, timeout=30) as elsewhere:
            shown = elsewhere.get("/ui/events")
            assert shown.status_code == 200  # no sticky session needed
            assert ">alice<" in shown.text
            csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text)
            assert csrf is not None
            out = elsewhere.post("/ui/logout", data={"csrf": csrf.group(1)})
            assert out.status_code == 303
        with httpx.Client(base_url=first, cookies=jar, timeout=30) as after:
            ended = after.get("/ui/events")
            assert ended.status_code == 303  # ended on the first server too
            assert ended.headers["location"] == "/ui/login"
