import contextvars
import logging
import threading
from collections.abc import Sequence

import pytest

from donjon.core import EventBus, EventKind, JournalChain, MemorySink, SecurityEvent


class BrokenSink:
    name = "broken"

    def emit(self, event: SecurityEvent) -> None:
        raise ConnectionError("collector is down")


class FailingJournal:
    def append(self, event: SecurityEvent) -> None:
        raise OSError("disk full")


def event() -> SecurityEvent:
    return SecurityEvent(EventKind.ACTIVITY, "test", "test.ran", "ran")


def test_a_failing_sink_neither_breaks_the_caller_nor_starves_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before, after = MemorySink("before"), MemorySink("after")
    bus = EventBus([before, BrokenSink(), after])
    with caplog.at_level(logging.ERROR):
        delivery = bus.publish(e := event())
    assert before.events == [e]
    assert after.events == [e]
    assert delivery.delivered == ("before", "after")
    assert delivery.failed == ("broken",)
    assert bus.failures["broken"] == 1
    assert "collector is down" in caplog.text


def test_an_event_the_journal_refuses_is_not_acknowledged_nor_fanned_out() -> None:
    sink = MemorySink()
    bus = EventBus([sink], journal=FailingJournal())
    with pytest.raises(OSError, match="disk full"):
        bus.publish(event())
    assert sink.events == []


def test_journal_sees_every_event_before_sinks() -> None:
    order: list[str] = []

    class Journal:
        def append(self, e: SecurityEvent) -> None:
            order.append("journal")

    class Sink:
        name = "sink"

        def emit(self, e: SecurityEvent) -> None:
            order.append("sink")

    EventBus([Sink()], journal=Journal()).publish(event())
    assert order == ["journal", "sink"]


def test_concurrent_publishers_lose_nothing() -> None:
    sink = MemorySink()
    bus = EventBus([sink, BrokenSink()])
    threads = [
        threading.Thread(target=lambda: [bus.publish(event()) for _ in range(200)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sink.events) == 800
    assert len({e.uid for e in sink.events}) == 800
    assert bus.failures["broken"] == 800


def test_subscribe_adds_a_sink() -> None:
    bus = EventBus()
    sink = MemorySink()
    bus.subscribe(sink)
    bus.publish_all([event(), event()])
    assert len(sink.events) == 2


def test_a_journal_chain_stores_in_order_and_stops_at_the_first_failure() -> None:
    order: list[str] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        def append(self, e: SecurityEvent) -> None:
            order.append(self.name)

    sink = MemorySink()
    EventBus([sink], journal=JournalChain(Named("ledger"), Named("outbox"))).publish(event())
    assert order == ["ledger", "outbox"]
    assert len(sink.events) == 1
    bus = EventBus([sink], journal=JournalChain(FailingJournal(), Named("never")))
    with pytest.raises(OSError, match="disk full"):
        bus.publish(event())
    assert order == ["ledger", "outbox"]
    assert len(sink.events) == 1


def test_publish_all_stores_a_batch_in_one_journal_call() -> None:
    calls: list[int] = []

    class Batching:
        def append(self, e: SecurityEvent) -> None:
            calls.append(1)

        def append_many(self, events: Sequence[SecurityEvent]) -> None:
            calls.append(len(events))

    sink = MemorySink()
    bus = EventBus([sink], journal=JournalChain(Batching(), Batching()))
    deliveries = bus.publish_all([event() for _ in range(5)])
    assert calls == [5, 5]
    assert len(sink.events) == 5
    assert [d.delivered for d in deliveries] == [("memory",)] * 5


class Batches:
    """A batching journal that keeps each batch, or refuses while ``down``."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = False

    def append(self, e: SecurityEvent) -> None:
        self.append_many([e])

    def append_many(self, events: Sequence[SecurityEvent]) -> None:
        if self.down:
            raise OSError("database down")
        self.batches.append([e.action for e in events])


def named(action: str) -> SecurityEvent:
    return SecurityEvent(EventKind.ACTIVITY, "test", action, action)


def test_a_deferring_scope_journals_its_events_in_one_batch_when_it_commits() -> None:
    journal, sink = Batches(), MemorySink()
    bus = EventBus([sink], journal=journal)
    with bus.deferring() as held:
        bus.publish(named("a"))
        done: list[None] = []
        context = contextvars.copy_context()  # as anyio.to_thread hands work to a thread
        worker = threading.Thread(
            target=context.run,
            args=(lambda: (bus.publish_all([named("b"), named("c")]), done.append(None)),),
        )
        worker.start()
        worker.join()
        assert done
        assert journal.batches == []
        assert sink.events == []
        assert [e.action for e in bus.pending()] == ["a", "b", "c"]  # the thread's too
        held.commit()
        assert journal.batches == [["a", "b", "c"]]
        assert [e.action for e in sink.events] == ["a", "b", "c"]
        bus.publish(named("late"))  # after the answer: published directly
    assert journal.batches == [["a", "b", "c"], ["late"]]
    bus.publish(named("outside"))
    assert journal.batches[-1] == ["outside"]


def test_a_failed_commit_keeps_the_events_and_raises() -> None:
    journal = Batches()
    bus = EventBus(journal=journal)
    with bus.deferring() as held:
        bus.publish(named("decision"))
        journal.down = True
        with pytest.raises(OSError, match="database down"):
            held.commit()
        assert held.open
        assert [e.action for e in held.pending()] == ["decision"]
        journal.down = False
        held.commit()
    assert journal.batches == [["decision"]]


def test_a_store_that_journals_the_held_events_settles_them() -> None:
    journal, sink = Batches(), MemorySink()
    bus = EventBus([sink], journal=journal)
    with bus.deferring() as held:
        bus.publish(named("decision"))
        earlier = bus.pending()
        bus.publish(named("after"))
        bus.settle(earlier)  # a store wrote them in its transaction
        bus.fan_out_journaled(earlier)
        assert [e.action for e in held.pending()] == ["after"]
        bus.flush()  # a barrier: stored now
        assert journal.batches == [["after"]]
        assert held.pending() == ()
        held.commit()
    assert journal.batches == [["after"]]
    assert [e.action for e in sink.events] == ["decision", "after"]
