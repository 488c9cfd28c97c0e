"""What the quickstart must have caught, checked on the event file (never on printed text)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.severity import Severity
from donjon.quickstart.vault import MODEL, SCIENTIST

Predicate = Callable[[SecurityEvent], bool]
STEP_OF_SOURCE = {"data": 2, "scan": 3, "registry": 4, "authz": 4, "provenance": 4}
STEP_OF_SOURCE |= {"gateway": 5, "audit": 6}


@dataclass(frozen=True)
class Expected:
    step: int
    what: str
    matches: Predicate


def _rule(rule_id: str, principal: str | None = None) -> Predicate:
    def match(e: SecurityEvent) -> bool:
        if e.finding is None or e.finding.rule.id != rule_id:
            return False
        return principal is None or (e.principal is not None and e.principal.id == principal)

    return match


def _malicious_push(e: SecurityEvent) -> bool:
    return (
        e.finding is not None
        and e.source == "scan"
        and e.finding.level >= Severity.HIGH
        and e.attributes.get("model") == "vendor-digits-boost"
    )


def _denied_prod(e: SecurityEvent) -> bool:
    return (
        e.kind is EventKind.ACCESS
        and e.action == "model.promote"
        and e.outcome is Outcome.FAILURE
        and e.principal is not None
        and e.principal.id == SCIENTIST
        and _stage(e) == "prod"
    )


def _stage(e: SecurityEvent) -> object:
    context = e.attributes.get("context")
    if isinstance(context, dict):
        return context.get("stage")
    return e.attributes.get("stage")


def _signed_to_prod(e: SecurityEvent) -> bool:
    return (
        e.action == "registry.gate.signature"
        and e.outcome is Outcome.SUCCESS
        and e.attributes.get("target") == "prod"
        and str(e.attributes.get("resource", "")).startswith(f"models/{MODEL}")
    )


def expectations() -> list[Expected]:
    from donjon.audit.rules import LEDGER_TAMPERED
    from donjon.data.rules import BACKDOOR_TRIGGER, LABEL_ISSUE, UNTRUSTED_SOURCE
    from donjon.gateway.rules import EVASION_PROBING, EXTRACTION

    return [
        Expected(2, "records from an untrusted source quarantined", _rule(UNTRUSTED_SOURCE.id)),
        Expected(2, "flipped labels found", _rule(LABEL_ISSUE.id)),
        Expected(2, "backdoor trigger found", _rule(BACKDOOR_TRIGGER.id)),
        Expected(3, "malicious pickle blocked by the push-time scan", _malicious_push),
        Expected(4, "data scientist denied promotion to prod", _denied_prod),
        Expected(4, "signed model with provenance passed the prod gate", _signed_to_prod),
        Expected(5, "evasion walk blocked by the gateway", _rule(EVASION_PROBING.id, "mallory")),
        Expected(5, "extraction attempt blocked by the gateway", _rule(EXTRACTION.id, "eve")),
        Expected(6, "tampered ledger entry detected", _rule(LEDGER_TAMPERED.id)),
    ]


def missing(events: Iterable[SecurityEvent]) -> tuple[list[Expected], list[Expected]]:
    """The expectations met and those missed by ``events``."""
    seen = list(events)
    met: list[Expected] = []
    missed: list[Expected] = []
    for expected in expectations():
        (met if any(expected.matches(e) for e in seen) else missed).append(expected)
    return met, missed
