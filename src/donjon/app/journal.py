"""The ledger and the outbox written together: per group of events, and with a registry write.

:class:`SqlJournal` is the bus's journal when the ledger and the outbox share the
database: one transaction (shared by concurrent callers) stores each event in both.

The outbox pattern: a vault write (a version, its gate results, a stage or status
change) must not become visible without its evidence, nor leave evidence of a
write that rolled back: :class:`SqlTransactionJournal` writes those events into
the ledger and the outbox inside the registry's own transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from donjon.core.events import SecurityEvent
from donjon.errors import AuditError, DonjonError
from donjon.soc.outbox import Outbox, outbox_row

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from donjon.audit import Ledger
    from donjon.storage.ledger import SqlLedgerStore
    from donjon.storage.outbox import SqlOutboxStore
    from donjon.storage.sql import Database


class SqlTransactionJournal:
    """Implements ``donjon.storage.registry.TransactionJournal``.

    ``ledger``: the app's ledger (it builds the chained rows and signs checkpoints
    once they commit). ``outbox``: the outbox when it lives in the same database,
    written in the transaction; ``late_outbox``: one in another database, written
    right after the commit (that gap is the price of a separate outbox database).
    """

    def __init__(
        self,
        database: Database,
        ledger: Ledger | None,
        *,
        outbox: bool = False,
        late_outbox: Outbox | None = None,
    ) -> None:
        from donjon.storage.ledger import SqlLedgerStore
        from donjon.storage.outbox import SqlOutboxStore

        self._ledger = ledger
        self._ledger_store: SqlLedgerStore = SqlLedgerStore(database)
        self._outbox: SqlOutboxStore | None = SqlOutboxStore(database) if outbox else None
        self._late_outbox = late_outbox

    @property
    def active(self) -> bool:
        return self._ledger is not None or self._outbox is not None

    def append_in(
        self, connection: Connection, events: Sequence[SecurityEvent]
    ) -> Callable[[], None]:
        batch = list(events)
        rows: Sequence[tuple[int, str, str, str]] = ()
        if self._ledger is not None and batch:
            rows = self._ledger_store.append_in(connection, self._ledger.builder(batch))
        if self._outbox is not None and batch:
            self._outbox.append_in(connection, [outbox_row(e) for e in batch])
        ledger, late = self._ledger, self._late_outbox

        def committed() -> None:
            if ledger is not None and rows:
                ledger.committed(rows)
            if late is not None and batch:
                try:
                    late.append_many(batch)
                except DonjonError:  # committed and ledgered: say so, do not fail the write
                    log.exception("events of a committed write did not reach the outbox")

        return committed


class _Waiting:
    """One caller's events waiting for a group commit."""

    __slots__ = ("done", "error", "events")

    def __init__(self, events: list[SecurityEvent]) -> None:
        self.events = events
        self.done = False
        self.error: BaseException | None = None


class SqlJournal:
    """The bus's journal when the ledger and the outbox share one database: each group of
    events is appended to both in ONE transaction (instead of a ledger transaction, then
    an outbox one), and concurrent callers share it (group commit).

    A caller returns only once the transaction holding its events has committed, and gets
    the error otherwise: no event is acknowledged before it is stored in both.
    """

    def __init__(self, database: Database, ledger: Ledger) -> None:
        from donjon.storage.ledger import SqlLedgerStore
        from donjon.storage.outbox import SqlOutboxStore

        self._db = database
        self._ledger = ledger
        self._ledger_store = SqlLedgerStore(database)
        self._outbox = SqlOutboxStore(database)
        self._turn = threading.Condition()
        self._queue: list[_Waiting] = []
        self._writing = False

    def append(self, event: SecurityEvent) -> None:
        self.append_many([event])

    def append_many(self, events: Sequence[SecurityEvent]) -> None:
        mine = _Waiting(list(events))
        if not mine.events:
            return
        with self._turn:
            self._queue.append(mine)
            while self._writing and not mine.done:
                self._turn.wait()
            if not mine.done:  # the writer's turn is ours: take everyone waiting
                self._writing = True
                group, self._queue = self._queue, []
            else:
                group = []
        if group:
            try:
                self._write(group)
            finally:
                with self._turn:
                    self._writing = False
                    for waiting in group:
                        waiting.done = True
                    self._turn.notify_all()
        if mine.error is not None:
            raise mine.error

    def _write(self, group: list[_Waiting]) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        batch = [event for waiting in group for event in waiting.events]
        try:
            with self._db.engine.connect() as connection:
                if self._db.is_sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                rows = self._ledger_store.append_in(connection, self._ledger.builder(batch))
                self._outbox.append_in(connection, [outbox_row(e) for e in batch])
                connection.commit()
        except (DonjonError, SQLAlchemyError) as e:
            error = AuditError(f"cannot journal {len(batch)} events: {e}")
            for waiting in group:
                waiting.error = error
            return
        self._ledger.committed(rows)
