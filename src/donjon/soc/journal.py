"""The durable journal of the event bus: events committed before they are acknowledged.

:class:`Outbox` stores each event in the outbox store (SQLite or PostgreSQL,
``donjon.storage.outbox``) and returns only once it is committed, so an
acknowledged event survives a crash; concurrent appends share one commit (group
commit). :class:`donjon.soc.outbox.Dispatcher` delivers what it stored.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from donjon.core.events import SecurityEvent
from donjon.soc import jsonfast


class OutboxStore(Protocol):
    """What the outbox needs from storage (``donjon.storage.outbox.SqlOutboxStore``)."""

    def append_many(self, rows: Sequence[tuple[str, str, datetime, str]]) -> int: ...

    def read_after(self, position: int, limit: int) -> list[tuple[int, str, str]]: ...

    def position(self, sink: str) -> int: ...

    def advance(self, sink: str, position: int) -> None: ...

    def add_dead_letter(self, sink: str, seq: int, uid: str, attempts: int, error: str) -> None: ...

    def dead_letters(self, sink: str | None = None) -> list[dict[str, Any]]: ...

    def last_seq(self) -> int: ...

    def count_after(self, position: int) -> int: ...


def outbox_row(event: SecurityEvent) -> tuple[str, str, datetime, str]:
    """The stored form of ``event``: uid, kind, time and its JSON payload."""
    return (event.uid, event.kind.value, event.time, jsonfast.dumps(event.to_dict()))


_row = outbox_row


class _Pending:
    """One append waiting for its commit: a lock its writer releases, and the outcome."""

    __slots__ = ("done", "error", "row")

    def __init__(self, row: tuple[str, str, datetime, str]) -> None:
        self.row = row
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()


class Outbox:
    """The durable journal of the event bus (``EventBus(journal=Outbox(store))``).

    Appends from many threads are committed together by one writer thread
    (group commit): each caller blocks until the transaction holding its event
    has committed, and only then is the event acknowledged.
    """

    def __init__(self, store: OutboxStore, *, max_batch: int = 1000) -> None:
        self.store = store
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def append(self, event: SecurityEvent) -> None:
        """Return once ``event`` is committed; raise (and do not acknowledge) otherwise."""
        pending = _Pending(_row(event))
        self._ensure_writer()
        self._queue.put(pending)
        pending.done.acquire()
        if pending.error is not None:
            raise pending.error

    def append_many(self, events: Iterable[SecurityEvent]) -> int:
        """Store many events in one transaction; how many were new (duplicates by uid skip)."""
        return self.store.append_many([_row(e) for e in events])

    def close(self) -> None:
        """Stop the writer thread (appends after this start a new one)."""
        with self._start_lock:
            if self._writer is not None:
                self._queue.put(None)
                self._writer.join()
                self._writer = None

    def _ensure_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            with self._start_lock:
                if self._writer is None or not self._writer.is_alive():
                    self._writer = threading.Thread(
                        target=self._write_loop, name="donjon-outbox-writer", daemon=True
                    )
                    self._writer.start()

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                self.store.append_many([p.row for p in batch])
            except BaseException as e:  # noqa: BLE001 - re-raised in every waiting caller
                for p in batch:
                    p.error = e
            for p in batch:
                p.done.release()
