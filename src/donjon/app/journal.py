"""The outbox pattern: a registry write and the events that record it, in one transaction.

The bus journals each event in the audit ledger, then the outbox, in transactions
of their own. A vault write (a version, its gate results, a stage or status
change) must not become visible without its evidence, nor leave evidence of a
write that rolled back: :class:`SqlTransactionJournal` writes those events into
the ledger and the outbox inside the registry's own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from donjon.core.events import SecurityEvent
from donjon.errors import DonjonError
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
