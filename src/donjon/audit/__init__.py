"""The tamper-evident ledger: a hash chain of events with signed checkpoints.

:class:`Ledger` implements the core ``EventJournal`` port (``append``); a
:class:`LedgerStore` adapter (``donjon.storage.ledger``) keeps the rows.
"""

from donjon.audit.chain import GENESIS, Checkpoint, canonical_json, entry_body, entry_hash
from donjon.audit.ledger import Issue, Ledger, LedgerStore, Problem, Verification

__all__ = [
    "GENESIS",
    "Checkpoint",
    "Issue",
    "Ledger",
    "LedgerStore",
    "Problem",
    "Verification",
    "canonical_json",
    "entry_body",
    "entry_hash",
]
