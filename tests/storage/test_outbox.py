"""The SQL outbox store and delivery through it, on SQLite and the real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import inspect

from donjon.core import EventBus, EventKind, SecurityEvent
from donjon.errors import ExportError
from donjon.soc.outbox import Dispatcher, Outbox, SinkUnavailable
from donjon.storage.outbox import SqlOutboxStore
from donjon.storage.sql import Database, open_database
from tests.soc.samples import every_kind


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.dispose()


def ev(i: int) -> SecurityEvent:
    return SecurityEvent(EventKind.ACTIVITY, "test", "test.ran", f"event {i}")


class Recorder:
    """A sink that records what it received and can be switched down or made to choke."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.events: list[SecurityEvent] = []
        self.down = False
        self.poison: set[str] = set()
        self.batches = 0

    def emit(self, event: SecurityEvent) -> None:
        self.emit_batch([event])

    def emit_batch(self, events: Sequence[SecurityEvent]) -> None:
        if self.down:
            raise SinkUnavailable("collector refused the connection")
        if any(e.message in self.poison for e in events):
            raise ExportError("collector rejected the event: mapping conflict")
        self.batches += 1
        self.events.extend(events)


def test_migration_creates_the_outbox_tables(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {"outbox_events", "outbox_cursors", "outbox_dead_letters"} <= tables


def test_events_are_stored_before_the_bus_acknowledges_and_duplicates_are_idempotent(
    db: Database,
) -> None:
    store = SqlOutboxStore(db)
    outbox = Outbox(store)
    events = every_kind()
    EventBus(journal=outbox).publish_all(events)
    assert store.last_seq() >= len(events)
    assert outbox.append_many(events) == 0  # same uids: nothing new
    outbox.append(events[0])  # a re-publish by uid is a no-op
    rows = store.read_after(0, 100)
    assert [uid for _, uid, _ in rows] == [e.uid for e in events]
    sink = Recorder()
    Dispatcher(store, [sink]).drain(5)
    assert sink.events == events  # lossless JSON round trip, in order, once


def test_each_sink_has_its_own_cursor_and_a_down_sink_catches_up_in_order(db: Database) -> None:
    store = SqlOutboxStore(db)
    outbox = Outbox(store)
    fast, slow = Recorder("fast"), Recorder("slow")
    slow.down = True
    dispatcher = Dispatcher(store, [fast, slow], batch_size=7, backoff_base=0.001)
    sent = [ev(i) for i in range(40)]
    for i, e in enumerate(sent):
        outbox.append(e)
        if i % 5 == 0:
            dispatcher.run_once()
    assert dispatcher.drain(0.2) is False  # slow is still down
    assert fast.events == sent
    assert slow.events == []
    assert dispatcher.lag() == {"fast": 0, "slow": 40}
    assert dispatcher.states["slow"].failures > 0
    slow.down = False
    assert dispatcher.drain(5) is True
    assert slow.events == sent
    assert store.dead_letters() == []
    # a new dispatcher (a restart) starts from the stored cursors: nothing is sent twice
    Dispatcher(store, [fast, slow]).drain(1)
    assert len(fast.events) == len(slow.events) == 40


def test_a_poison_event_is_retried_then_parked_and_the_rest_flows(db: Database) -> None:
    store = SqlOutboxStore(db)
    outbox = Outbox(store)
    sink = Recorder()
    sink.poison = {"event 3"}
    sent = [ev(i) for i in range(8)]
    outbox.append_many(sent)
    dispatcher = Dispatcher(store, [sink], max_attempts=3, backoff_base=0.001)
    assert dispatcher.drain(5) is True
    assert [e.message for e in sink.events] == [f"event {i}" for i in range(8) if i != 3]
    (dead,) = store.dead_letters("recorder")
    assert dead["uid"] == sent[3].uid
    assert dead["attempts"] == 3
    assert "mapping conflict" in dead["error"]


def test_a_corrupt_row_is_parked_not_retried_forever(db: Database) -> None:
    store = SqlOutboxStore(db)
    from datetime import UTC, datetime

    store.append_many([("bad-uid", "activity", datetime.now(UTC), '{"schema": 99}')])
    Outbox(store).append(good := ev(1))
    sink = Recorder()
    assert Dispatcher(store, [sink]).drain(5) is True
    assert sink.events == [good]
    assert [d["uid"] for d in store.dead_letters()] == ["bad-uid"]


def test_concurrent_publishers_share_commits_and_lose_nothing(db: Database) -> None:
    store = SqlOutboxStore(db)
    bus = EventBus(journal=Outbox(store))
    per_thread, threads = 150, 4
    workers = [
        threading.Thread(target=lambda: [bus.publish(ev(i)) for i in range(per_thread)])
        for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rows = store.read_after(0, 10_000)
    assert len(rows) == per_thread * threads
    seqs = [seq for seq, _, _ in rows]
    assert seqs == sorted(seqs)


def test_two_sinks_with_one_name_are_refused(db: Database) -> None:
    with pytest.raises(ExportError, match="share a name"):
        Dispatcher(SqlOutboxStore(db), [Recorder("x"), Recorder("x")])


def test_publish_all_stores_a_batch_in_one_transaction_before_fan_out(db: Database) -> None:
    store = SqlOutboxStore(db)
    seen: list[int] = []

    class Probe:
        name = "probe"

        def emit(self, event: SecurityEvent) -> None:
            seen.append(store.count_after(0))  # everything is stored before the first fan-out

    bus = EventBus([Probe()], journal=Outbox(store))
    deliveries = bus.publish_all([ev(i) for i in range(25)])
    assert [d.delivered for d in deliveries] == [("probe",)] * 25
    assert seen == [25] * 25


def test_draining_while_the_background_thread_delivers_sends_nothing_twice(db: Database) -> None:
    store = SqlOutboxStore(db)
    outbox = Outbox(store)
    sink = Recorder()
    dispatcher = Dispatcher(store, [sink], batch_size=3, idle_wait=0.001)
    dispatcher.start()
    try:
        sent = [ev(i) for i in range(60)]
        for e in sent:
            outbox.append(e)
        assert dispatcher.drain(10)
    finally:
        dispatcher.stop()
    assert [e.uid for e in sink.events] == [e.uid for e in sent]


def test_the_event_file_gets_stored_payloads_as_they_are_and_never_a_corrupt_row(
    db: Database, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from donjon.soc.jsonl import JsonLinesSink, read_events

    store = SqlOutboxStore(db)
    outbox = Outbox(store)
    outbox.append(first := ev(1))
    store.append_many([("bad-uid", "activity", datetime.now(UTC), '{"uid":"bad-uid"}')])
    outbox.append(second := ev(2))
    sink = JsonLinesSink(tmp_path / "events.jsonl")
    assert Dispatcher(store, [sink]).drain(5)
    sink.close()
    assert list(read_events(tmp_path / "events.jsonl")) == [first, second]
    assert [d["uid"] for d in store.dead_letters("jsonl")] == ["bad-uid"]
