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
