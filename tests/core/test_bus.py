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
