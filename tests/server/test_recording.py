"""A request's events are journalled together, before its answer (donjon.server.recording)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from donjon.app import build, build_authenticator, build_authorizer, build_identity, build_vault
from donjon.app.journal import SqlJournal
from donjon.audit import Ledger
from donjon.config import load_settings
from donjon.core.bus import EventBus, MemorySink
from donjon.core.events import SecurityEvent
from donjon.errors import AuditError
from donjon.server import ServerLimits, create_app
from donjon.storage.sql import open_database
from tests.registry.harness import make_vault
from tests.server.conftest import MAX_UPLOAD, build_app, serve
from tests.server.stack import POLICY

pytestmark = pytest.mark.integration


class CountingJournal:
    """An ``EventJournal`` that keeps each batch it is handed (one per transaction), or
    refuses them all (a database that is down) when ``broken``."""

    def __init__(self, inner: SqlJournal | None = None) -> None:
        self.inner = inner
        self.batches: list[list[SecurityEvent]] = []
        self.broken = False

    def append(self, event: SecurityEvent) -> None:
        self.append_many([event])

    def append_many(self, events: Sequence[SecurityEvent]) -> None:
        if self.broken:
            raise AuditError("the ledger database is down")
        if self.inner is not None:
            self.inner.append_many(events)
        self.batches.append(list(events))


def test_a_read_is_journalled_in_one_transaction_before_its_answer(
    database_url: str, tmp_path: Path
) -> None:
    vault = make_vault(database_url, tmp_path / "blobs", max_blob_size=MAX_UPLOAD)
    journal = CountingJournal()
    vault.registry.bus = EventBus([vault.sink], journal=journal)
    for verb in ("read", "write", "list"):
        vault.authorizer.allow("alice", f"dataset.{verb}", "datasets/d")
    app, tokens = build_app(vault)
    alice = {"Authorization": f"Bearer {tokens['alice']}"}
    bob = {"Authorization": f"Bearer {tokens['bob']}"}
    try:
        with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            assert http.post("/v1/datasets/d/versions", content=b"rows", headers=alice).is_success
            journal.batches.clear()
            pulled = http.get("/v1/datasets/d/versions/1/blob", headers=alice)
            assert pulled.content == b"rows"
            # the decision and the "served" event: one batch, in order, before the bytes
            assert [[e.action for e in batch] for batch in journal.batches] == [
                ["dataset.read", "dataset.read"]
            ]
            assert [e.outcome.value for e in journal.batches[0]] == ["success", "success"]
            journal.batches.clear()
            assert http.get("/v1/datasets/d/versions", headers=bob).status_code == 403
            assert [[e.action for e in batch] for batch in journal.batches] == [["dataset.list"]]
            assert journal.batches[0][0].outcome.value == "failure"

            journal.broken = True  # nothing can be recorded: nothing is answered
            refused = http.get("/v1/datasets/d/versions/1/blob", headers=alice)
            assert refused.status_code == 503
            assert refused.json()["error"] == "unavailable"
            assert b"rows" not in refused.content
            listed = http.get("/v1/datasets/d/versions", headers=alice)
            assert listed.status_code == 503
            assert "digest" not in listed.text
            journal.broken = False
            assert http.get("/v1/datasets/d/versions/1/blob", headers=alice).content == b"rows"
    finally:
        vault.db.dispose()


def test_a_push_commits_its_decision_and_events_with_the_version(
    database_url: str, tmp_path: Path
) -> None:
    """As ``donjon server`` wires it: the push's authentication, decision, scan and "stored"
    events go into the version's own transaction; the bus's journal is not used."""
    settings = load_settings(home=tmp_path / "home", database_url=database_url)
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.policy_path.write_text(POLICY, encoding="utf-8")
    donjon = build(settings)
    assert donjon.ledger is not None
    database = open_database(settings.sql_url)
    services = None
    try:
        # the bus as build() wires it (the ledger and the outbox in one transaction), counted
        journal = CountingJournal(SqlJournal(database, donjon.ledger))
        bus = EventBus([MemorySink()], journal=journal)
        authenticator = build_authenticator(settings, bus)
        services = build_vault(
            settings, authenticator, build_authorizer(settings, bus), bus, app=donjon
        )
        token = build_identity(settings, bus, services.database)
        token.create_user("writer")
        secret = token.issue_token("writer").secret
        journal.batches.clear()
        app = create_app(
            services.registry,
            services.authenticator,
            bus,
            limits=ServerLimits(auth_failure_limit=0, auth_failure_window=0),
        )
        head = donjon.ledger.head()[0]
        with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            auth = {"Authorization": f"Bearer {secret}"}
            pushed = http.post("/v1/models/clf/versions", content=b"weights", headers=auth)
            assert pushed.status_code == 201
            assert journal.batches == []  # all of it went with the version row
            actions = [e.action for e in _entries(donjon.ledger, head)]
            assert actions == ["authenticate.token", "model.write", "registry.gate.scan",
                               "model.write"]  # fmt: skip
            head = donjon.ledger.head()[0]
            assert http.get("/v1/models/clf/versions/1", headers=auth).is_success
            assert [[e.action for e in b] for b in journal.batches] == [
                ["authenticate.token", "model.read"]
            ]
        assert donjon.ledger.verify().ok
    finally:
        if services is not None:
            services.close()
        database.dispose()
        donjon.close()


def _entries(ledger: Ledger, after: int) -> list[SecurityEvent]:
    out = io.StringIO()
    ledger.export(out, after + 1)
    return [
        SecurityEvent.from_dict(json.loads(line)["entry"]["event"])
        for line in out.getvalue().splitlines()
    ]
