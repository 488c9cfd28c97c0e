"""The failed-authentication limit counted across workers and replicas, in the database."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from donjon.core.events import SecurityEvent
from donjon.server import ServerLimits
from donjon.server.auth_failures import FailedAuthLimiter
from donjon.storage.auth_failures import SqlAuthFailures
from donjon.storage.sql import open_database
from tests.registry.harness import make_vault
from tests.server.conftest import MAX_UPLOAD, build_app, serve
from tests.server.test_auth_failures import Clock

pytestmark = pytest.mark.integration


def test_workers_reach_the_limit_together(database_url: str) -> None:
    db = open_database(database_url)
    wall = Clock()
    wall.now = 1_000_000.0
    published: list[SecurityEvent] = []

    def worker() -> FailedAuthLimiter:
        return FailedAuthLimiter(
            published.append, limit=4, window_seconds=60, shared=SqlAuthFailures(db),
            clock=wall, wall_clock=wall,
        )  # fmt: skip

    a, b = worker(), worker()
    try:
        a.failed("10.9.9.9", "r1", "unknown API token")
        b.failed("10.9.9.9", "r2", "unknown API token")
        a.failed("10.9.9.9", "r3", "unknown API token")
        assert b.retry_after("10.9.9.9", "r4") is None  # three of four, on two workers
        b.failed("10.9.9.9", "r5", "unknown API token")  # the fourth: b refuses at once
        assert b.retry_after("10.9.9.9", "r6") == pytest.approx(60.0)
        assert a.retry_after("10.9.9.9", "r7") is None  # a has counted only two itself...
        a.sync()  # ...until it reads the shared counts (once a second in the server)
        assert a.retry_after("10.9.9.9", "r8") == pytest.approx(60.0)
        assert a.retry_after("10.1.1.1", "r9") is None  # other sources are free
        wall.now += 61  # the shared window runs out
        a.sync()
        assert a.retry_after("10.9.9.9", "r10") is None
        a.failed("10.9.9.9", "r11", "unknown API token")  # a new window, counted from 1
        assert b.retry_after("10.9.9.9", "r12") is None  # its block ran out with the window
        assert SqlAuthFailures(db).over(1, wall.now, 60) == {"10.9.9.9": wall.now}
        firsts = [e for e in published if not e.attributes.get("aggregated")]
        assert [e.attributes["request_id"] for e in firsts] == ["r1", "r2", "r11"]
    finally:
        db.dispose()


def test_two_servers_on_one_database_share_the_limit(database_url: str, tmp_path: Path) -> None:
    limit = 4
    limits = ServerLimits(
        max_upload_bytes=MAX_UPLOAD, auth_failure_limit=limit, auth_failure_window=60
    )
    vaults = [make_vault(database_url, tmp_path / "blobs") for _ in range(2)]
    apps = [build_app(v, limits, SqlAuthFailures(v.db))[0] for v in vaults]
    bad = {"Authorization": "Bearer djt_not_a_real_token_xxxxxxxxxxxxxxxxxxxx"}
    try:
        with serve(apps[0]) as one, serve(apps[1]) as two:
            statuses = [
                httpx.get(f"{url}/v1/models/m/versions", headers=bad, timeout=30).status_code
                for _ in range(6)
                for url in (one, two)
            ]
    finally:
        for vault in vaults:
            vault.db.dispose()
    # the limit, plus one for the server that had not seen the count reach it; then 429
    assert statuses == [401] * (limit + 1) + [429] * (12 - limit - 1)
