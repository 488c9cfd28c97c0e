"""The composition root wires the bus: ledger, then outbox, then the sinks."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.app import build
from donjon.app.access import build_ledger
from donjon.config import Settings, load_settings
from donjon.core import EventKind, SecurityEvent
from donjon.soc import read_events
from donjon.storage.sql import open_database


def activity(n: int) -> SecurityEvent:
    return SecurityEvent(EventKind.ACTIVITY, "test", "test.ran", f"ran {n}")


def ledger_entries(settings: Settings) -> int:
    database = open_database(settings.sql_url)
    try:
        verification = build_ledger(settings, database).verify()
    finally:
        database.dispose()
    assert verification.ok
    return verification.entries


def test_every_published_event_is_ledgered_then_delivered(
    donjon_home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DONJON_DATABASE_URL", database_url)
    settings = load_settings()
    with build(settings) as app:
        app.bus.publish(activity(0))
        app.bus.publish_all([activity(n) for n in range(1, 5)])
        assert app.deliver(timeout=30)
    delivered = [e.message for e in read_events(settings.events_path)]
    assert delivered == [f"ran {n}" for n in range(5)]
    assert ledger_entries(settings) == 5


def test_the_ledger_can_be_left_out_of_the_journal(
    donjon_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DONJON_AUDIT__LEDGER", "false")
    settings = load_settings()
    with build(settings) as app:
        app.bus.publish(activity(0))
        assert app.deliver(timeout=30)
    assert ledger_entries(settings) == 0
    assert [e.message for e in read_events(settings.events_path)] == ["ran 0"]


def test_concurrent_publishers_share_one_transaction_for_ledger_and_outbox(
    donjon_home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from sqlalchemy import text

    from donjon.app.journal import SqlJournal

    monkeypatch.setenv("DONJON_DATABASE_URL", database_url)
    settings = load_settings()
    with build(settings) as app:
        assert isinstance(app.bus._journal, SqlJournal)  # both on one database: one journal

        def publish(worker: int) -> None:
            for n in range(10):
                app.bus.publish(activity(100 * worker + n))

        threads = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert app.deliver(timeout=30)
    assert ledger_entries(settings) == 40
    database = open_database(settings.sql_url)
    try:
        with database.engine.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM outbox_events")).scalar_one()
    finally:
        database.dispose()
    assert stored == 40
    delivered = sorted(e.message for e in read_events(settings.events_path))
    assert delivered == sorted(f"ran {100 * w + n}" for w in range(4) for n in range(10))


def test_an_event_the_joint_journal_cannot_store_is_not_acknowledged(
    donjon_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from donjon.errors import AuditError

    settings = load_settings()

    def rename(old: str, new: str) -> None:
        database = open_database(settings.sql_url)
        try:
            with database.engine.begin() as connection:
                connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
        finally:
            database.dispose()

    with build(settings) as app:
        app.bus.publish(activity(0))
        rename("outbox_events", "outbox_events_away")  # the outbox half will fail
        try:
            with pytest.raises(AuditError):
                app.bus.publish(activity(1))
        finally:
            rename("outbox_events_away", "outbox_events")
    assert ledger_entries(settings) == 1  # the ledger half rolled back with the outbox half
