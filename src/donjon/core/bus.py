"""The in-process event bus.

``publish`` first hands the event to the journal, when there is one (the
durable outbox): if that fails the event is not acknowledged and the error
propagates. Then it fans the event out to every sink. A sink that raises is
logged and counted; it never breaks the caller or keeps the event from the
other sinks (a durable outbox re-delivers to it later).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from donjon.core.events import SecurityEvent
from donjon.core.ports import BatchJournal, EventJournal, EventSink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one published event."""

    event: SecurityEvent
    delivered: tuple[str, ...]
    failed: tuple[str, ...]


class EventBus:
    def __init__(
        self, sinks: Iterable[EventSink] = (), journal: EventJournal | None = None
    ) -> None:
        self._sinks: tuple[EventSink, ...] = tuple(sinks)
        self._journal = journal
        self._lock = threading.Lock()
        self.failures: Counter[str] = Counter()

    @property
    def sinks(self) -> tuple[EventSink, ...]:
        return self._sinks

    def subscribe(self, sink: EventSink) -> None:
        with self._lock:
            self._sinks = (*self._sinks, sink)

    def publish(self, event: SecurityEvent) -> Delivery:
        if self._journal is not None:
            self._journal.append(event)
        return self._fan_out(event)

    def publish_all(self, events: Iterable[SecurityEvent]) -> list[Delivery]:
        """Publish a batch: one journal transaction for all of it when the journal can."""
        batch = list(events)
        if self._journal is not None and batch:
            append_batch(self._journal, batch)
        return [self._fan_out(event) for event in batch]

    def fan_out_journaled(self, events: Iterable[SecurityEvent]) -> list[Delivery]:
        """Hand events to the sinks that a store already journalled, in the transaction of
        the change they record (the outbox pattern): they skip the journal."""
        return [self._fan_out(event) for event in events]

    def _fan_out(self, event: SecurityEvent) -> Delivery:
        delivered: list[str] = []
        failed: list[str] = []
        for sink in self._sinks:
            try:
                sink.emit(event)
            except Exception:
                log.exception("event sink %r failed on event %s", sink.name, event.uid)
                failed.append(sink.name)
                with self._lock:
                    self.failures[sink.name] += 1
            else:
                delivered.append(sink.name)
        return Delivery(event, tuple(delivered), tuple(failed))


def append_batch(journal: EventJournal, events: Sequence[SecurityEvent]) -> None:
    if isinstance(journal, BatchJournal):
        journal.append_many(events)
    else:
        for event in events:
            journal.append(event)


class JournalChain:
    """Several journals as one (the audit ledger, then the outbox).

    Each must store the event before it is acknowledged; the first that fails
    stops the chain and the error reaches the publisher.
    """

    def __init__(self, *journals: EventJournal) -> None:
        self.journals = journals

    def append(self, event: SecurityEvent) -> None:
        for journal in self.journals:
            journal.append(event)

    def append_many(self, events: Sequence[SecurityEvent]) -> None:
        for journal in self.journals:
            append_batch(journal, events)


class MemorySink:
    """Keeps events in a list: for tests, the dashboard's recent view and the CLI."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.events: list[SecurityEvent] = []

    def emit(self, event: SecurityEvent) -> None:
        self.events.append(event)
