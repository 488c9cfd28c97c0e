"""The in-process event bus.

``publish`` first hands the event to the journal, when there is one (the
durable outbox): if that fails the event is not acknowledged and the error
propagates. Then it fans the event out to every sink. A sink that raises is
logged and counted; it never breaks the caller or keeps the event from the
other sinks (a durable outbox re-delivers to it later).

Inside :meth:`EventBus.deferring` (one HTTP request: the server opens it) events
are held instead, and journalled together, in one transaction, when the unit
of work answers (:meth:`Deferred.commit`) or by a store that writes them in the
transaction of the change they precede (:meth:`EventBus.pending` and
:meth:`EventBus.settle`). The one who answers commits first: nothing is
acknowledged before it is stored.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
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


class Deferred:
    """The events of one unit of work (an HTTP request), held until it answers.

    Thread-safe: a request's handler may run in worker threads (they share this
    object through a copy of the request's context).
    """

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.open = True
        self._events: list[SecurityEvent] = []
        self._lock = threading.Lock()

    def add(self, events: Iterable[SecurityEvent]) -> bool:
        """Hold ``events``; False once the scope has committed (publish them directly)."""
        with self._lock:
            if not self.open:
                return False
            self._events.extend(events)
            return True

    def pending(self) -> tuple[SecurityEvent, ...]:
        with self._lock:
            return tuple(self._events)

    def settle(self, journalled: Sequence[SecurityEvent]) -> None:
        """Drop ``journalled`` (a prefix :meth:`pending` returned): a store committed them."""
        with self._lock:
            if tuple(self._events[: len(journalled)]) == tuple(journalled):
                del self._events[: len(journalled)]

    def flush(self) -> list[Delivery]:
        """Journal what is held now, in one transaction, and fan it out (a barrier)."""
        with self._lock:
            batch, self._events = self._events, []
        try:
            return self.bus.publish_now(batch)
        except BaseException:
            with self._lock:  # not stored: keep them for the next attempt
                self._events[:0] = batch
            raise

    def commit(self) -> list[Delivery]:
        """Journal what is held and close the scope: later events are published directly."""
        deliveries = self.flush()
        with self._lock:
            self.open = False
            late, self._events = self._events, []
        return deliveries + (self.bus.publish_now(late) if late else [])


_DEFERRED: ContextVar[Deferred | None] = ContextVar("donjon_deferred_events", default=None)


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
        scope = self._scope()
        if scope is not None and scope.add((event,)):
            return Delivery(event, (), ())  # delivered when the scope commits
        if self._journal is not None:
            self._journal.append(event)
        return self._fan_out(event)

    def publish_all(self, events: Iterable[SecurityEvent]) -> list[Delivery]:
        """Publish a batch: one journal transaction for all of it when the journal can."""
        batch = list(events)
        scope = self._scope()
        if scope is not None and scope.add(batch):
            return [Delivery(event, (), ()) for event in batch]
        return self.publish_now(batch)

    def publish_now(self, events: Sequence[SecurityEvent]) -> list[Delivery]:
        """Journal ``events`` (one transaction when the journal can) and fan them out,
        outside any deferring scope."""
        if self._journal is not None and events:
            append_batch(self._journal, events)
        return [self._fan_out(event) for event in events]

    # -- deferring: one journal transaction per unit of work -------------------

    @contextmanager
    def deferring(self) -> Iterator[Deferred]:
        """Hold the events published in this context (and the threads it hands work to)
        until the caller commits the scope it gets; see the module docstring."""
        scope = Deferred(self)
        token = _DEFERRED.set(scope)
        try:
            yield scope
        finally:
            _DEFERRED.reset(token)

    def _scope(self) -> Deferred | None:
        scope = _DEFERRED.get()
        return scope if scope is not None and scope.bus is self and scope.open else None

    def pending(self) -> tuple[SecurityEvent, ...]:
        """The events held for the current unit of work (none outside one): a store that
        journals a change's events in its transaction writes these first, then
        :meth:`settle` s them once it has committed."""
        scope = self._scope()
        return () if scope is None else scope.pending()

    def settle(self, journalled: Sequence[SecurityEvent]) -> None:
        """``journalled`` (from :meth:`pending`) are stored: stop holding them."""
        scope = self._scope()
        if scope is not None and journalled:
            scope.settle(journalled)

    def flush(self) -> None:
        """Journal the events held for the current unit of work now (a barrier before a
        change that cannot take them into its own transaction)."""
        scope = self._scope()
        if scope is not None:
            scope.flush()

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


def flush_deferred() -> None:
    """Journal the events held for the current unit of work, of whichever bus, now: a
    handler running in a worker thread does so before it returns, which spares the
    server a thread hop to commit them when the answer starts."""
    scope = _DEFERRED.get()
    if scope is not None and scope.open:
        scope.flush()


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
