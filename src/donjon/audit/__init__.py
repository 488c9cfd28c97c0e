"""The tamper-evident ledger: a hash chain of events with signed, witnessed checkpoints.

:class:`Ledger` implements the core ``EventJournal`` port (``append``); a
:class:`LedgerStore` adapter (``donjon.storage.ledger``) keeps the rows;
witnesses (:mod:`donjon.audit.witness`) keep copies of the checkpoints outside.
"""

from donjon.audit.chain import GENESIS, Checkpoint, canonical_json, entry_body, entry_hash
from donjon.audit.ledger import Ledger, LedgerStore
from donjon.audit.verify import Issue, Problem, Verification
from donjon.audit.witness import (
    EventWitness,
    FileWitness,
    UrlWitness,
    Witness,
    read_witness,
)

__all__ = [
    "GENESIS",
    "Checkpoint",
    "EventWitness",
    "FileWitness",
    "Issue",
    "Ledger",
    "LedgerStore",
    "Problem",
    "UrlWitness",
    "Verification",
    "Witness",
    "canonical_json",
    "entry_body",
    "entry_hash",
    "read_witness",
]
