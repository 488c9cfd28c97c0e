"""Rules of the audit ledger: what `donjon audit verify` reports."""

from __future__ import annotations

from donjon.core.rules import Rule
from donjon.core.severity import Severity

LEDGER_TAMPERED = Rule(
    id="DJ-LED-001",
    title="Audit ledger tampered",
    description=(
        "An entry of the hash-chained audit ledger was modified, deleted, inserted or "
        "reordered, entries were cut from its end, or a signed checkpoint does not verify. "
        "Someone with write access to the database tried to rewrite the record of who did "
        "what to datasets and models."
    ),
    remediation=(
        "Treat the database as compromised: keep a copy for forensics, compare it with the "
        "last exported ledger and head file, rotate the database credentials and the "
        "ledger's signing key, and review every access granted since the first bad entry."
    ),
    severity=Severity.CRITICAL,
    mitigations=("AML.M0024", "AML.M0005"),
)

RULES = (LEDGER_TAMPERED,)
