from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import inspect, select

from donjon.storage.registry import SqlRegistryStore, transitions
from donjon.storage.sql import open_database

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def row(name: str = "fraud/tx", kind: str = "dataset", **extra: Any) -> dict[str, Any]:
    base = {
        "kind": kind,
        "name": name,
        "digest": "sha256:" + "ab" * 32,
        "size": 3,
        "media_type": "text/csv",
        "metadata": {"rows": 2},
        "stage": None,
        "status": "active",
        "status_reason": None,
        "status_by": None,
        "status_at": None,
        "created_by": "user:alice",
        "created_at": NOW,
        "lineage": [],
    }
    return {**base, **extra}


def test_migration_creates_the_registry_tables(database_url: str) -> None:
    db = open_database(database_url)
    try:
        tables = set(inspect(db.engine).get_table_names())
        assert {
            "registry_versions",
            "registry_lineage",
            "registry_gate_results",
            "registry_transitions",
            "metadata_documents",
        } <= tables
    finally:
        db.dispose()


def test_versions_round_trip_with_lineage_and_gates(database_url: str) -> None:
    db = open_database(database_url)
    try:
        store = SqlRegistryStore(db)
        first = store.add_version(row())
        assert first["number"] == 1
        assert first["created_at"] == NOW
        gate = {"gate": "scan", "passed": True, "target": "push", "reasons": ["clean"],
                "details": {"scanner": "x"}, "time": NOW}  # fmt: skip
        model = store.add_version(
            row("fraud-clf", "model", stage="dev", lineage=[["fraud/tx", 1]]), [gate]
        )
        assert (model["number"], model["lineage"]) == (1, [["fraud/tx", 1]])
        assert store.gate_results("model", "fraud-clf", 1) == [gate]
        assert store.add_version(row())["number"] == 2
        assert store.latest_version("dataset", "fraud/tx")["number"] == 2  # type: ignore[index]
        assert store.get_version("dataset", "fraud/tx", 3) is None
        assert store.latest_version("dataset", "nope") is None
        assert store.names("dataset") == ["fraud/tx"]
        assert store.names("model", "fraud") == ["fraud-clf"]
        assert store.names("dataset", "fraud_") == []  # LIKE wildcards are escaped
    finally:
        db.dispose()


def test_stage_and_status_changes_are_recorded_as_transitions(database_url: str) -> None:
    db = open_database(database_url)
    try:
        store = SqlRegistryStore(db)
        store.add_version(row("fraud-clf", "model", stage="dev"))
        moved = store.set_stage("model", "fraud-clf", 1, "prod", "user:alice", NOW)
        gone = store.set_status("model", "fraud-clf", 1, "tombstoned", "erasure", "user:bob", NOW)
        assert moved["stage"] == "prod"
        assert (gone["status"], gone["status_reason"], gone["status_by"]) == (
            "tombstoned", "erasure", "user:bob",
        )  # fmt: skip
        with db.engine.connect() as conn:
            history = conn.execute(
                select(
                    transitions.c.field, transitions.c.old, transitions.c.new, transitions.c.by
                ).order_by(transitions.c.id)
            ).all()
        assert [tuple(h) for h in history] == [
            ("stage", "dev", "prod", "user:alice"),
            ("status", "active", "tombstoned", "user:bob"),
        ]
    finally:
        db.dispose()


def test_two_stores_racing_never_share_a_number(database_url: str) -> None:
    """Two engines (two server processes) allocate numbers on the same database."""
    dbs = [open_database(database_url) for _ in range(2)]
    try:
        stores = [SqlRegistryStore(db) for db in dbs]
        numbers: list[int] = []
        lock = threading.Lock()

        def push(store: SqlRegistryStore) -> None:
            for _ in range(10):
                n = store.add_version(row("race"))["number"]
                with lock:
                    numbers.append(n)

        threads = [threading.Thread(target=push, args=(stores[i % 2],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(numbers) == list(range(1, 41))
        assert [v["number"] for v in stores[0].versions("dataset", "race")] == list(range(1, 41))
    finally:
        for db in dbs:
            db.dispose()


def test_attachments_arrive_by_migration_on_a_database_of_the_first_revision(
    database_url: str,
) -> None:
    import pytest

    from donjon.errors import Conflict
    from donjon.storage.sql import migrate

    db = open_database(database_url, upgrade=False)
    try:
        migrate(db, "registry_0001")  # a vault from before the referrers store
        store = SqlRegistryStore(db)
        store.add_version(row("fraud-clf", "model", stage="dev"))
        assert "registry_attachments" not in inspect(db.engine).get_table_names()
        migrate(db)  # what open_database does when the scripts changed
        assert "registry_attachments" in inspect(db.engine).get_table_names()
        attachment = {
            "kind": "signature",
            "digest": "sha256:" + "cd" * 32,
            "size": 10,
            "media_type": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "summary": {"signer": "abc"},
            "created_by": "user:alice",
            "created_at": NOW,
        }
        stored = store.add_attachment("model", "fraud-clf", 1, attachment)
        assert stored == attachment
        assert store.attachments("model", "fraud-clf", 1) == [attachment]
        assert store.attachments("model", "fraud-clf", 2) == []
        with pytest.raises(Conflict, match="already attached"):
            store.add_attachment("model", "fraud-clf", 1, attachment)
        assert store.get_version("model", "fraud-clf", 1) is not None  # old rows intact
    finally:
        db.dispose()


def test_listing_versions_reads_the_lineage_of_a_page_in_one_query(database_url: str) -> None:
    from sqlalchemy import event

    db = open_database(database_url)
    try:
        store = SqlRegistryStore(db)
        for _ in range(3):
            store.add_version(row("tx"))
            store.add_version(row("tx-other"))
        for n in range(12):
            refs = [["tx", 1 + n % 3], ["tx-other", 3 - n % 3]] if n % 2 else []
            store.add_version(row("clf", "model", stage="dev", lineage=refs))
        statements: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        listed = store.versions("model", "clf")
        assert len(statements) <= 2  # the versions, then the lineage of all of them
        assert [v["number"] for v in listed] == list(range(1, 13))
        assert listed[0]["lineage"] == []
        assert listed[1]["lineage"] == [["tx", 2], ["tx-other", 2]]
        assert listed[3]["lineage"] == [["tx", 1], ["tx-other", 3]]
        assert store.get_version("model", "clf", 4) == listed[3]
    finally:
        db.dispose()


def test_a_journal_that_fails_rolls_the_version_back(database_url: str) -> None:
    import pytest

    from donjon.errors import AuditError

    class BrokenJournal:
        def append_in(self, connection: Any, events: Any) -> Any:
            raise AuditError("the ledger is down")

    db = open_database(database_url)
    try:
        store = SqlRegistryStore(db, BrokenJournal())
        with pytest.raises(AuditError):
            store.add_version(row("tx"), events=lambda stored: [])
        assert store.versions("dataset", "tx") == []  # nothing visible without its evidence
        assert SqlRegistryStore(db).add_version(row("tx"))["number"] == 1
    finally:
        db.dispose()
