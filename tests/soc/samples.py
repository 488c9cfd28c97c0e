"""Realistic events of every kind, built from core values only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from donjon.core import (
    ArtifactRef,
    Decision,
    Effect,
    EventKind,
    Finding,
    Location,
    Outcome,
    Principal,
    PrincipalKind,
    Rule,
    SecurityEvent,
    Severity,
    Subject,
)
from tests.factories import DIGEST, finding

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ALICE = Principal("alice", PrincipalKind.USER, "Alice Martin", ("ml-engineers",))
SCRAPER = Principal("k-42", PrincipalKind.SERVICE, None, ("partners",))

EXTRACTION_RULE = Rule(
    id="DJ-GWX-001",
    title="Model extraction suspected",
    description="A client's queries cover the input space like a replication attack.",
    remediation="Throttle or revoke the client; review its query log.",
    severity=Severity.HIGH,
    atlas=("AML.T0024.002", "AML.T0040"),
    owasp=("ML05",),
    mitigations=("AML.M0004",),
)


def extraction_finding(principal: str = "k-42") -> Finding:
    return Finding(
        rule=EXTRACTION_RULE,
        subject=Subject(model="fraud-clf", principal=principal, endpoint="/v1/models/fraud"),
        message=f"client {principal} issued 12000 high-entropy queries | x=1 \\ y",
        location=Location(record="window-2026-11-27T12"),
        evidence={"queries": 12000, "entropy": 0.97},
    )


def every_kind(start: datetime = T0) -> list[SecurityEvent]:
    """One or more events of each of the nine kinds, a second apart."""
    t = [start + timedelta(seconds=i) for i in range(12)]
    read = Decision(Effect.ALLOW, ALICE, "model.read", "models/fraud-clf@3", (), ("p-ml-read",))
    deny = Decision.deny(SCRAPER, "model.promote", "models/fraud-clf@3", "no grant for partners")
    return [
        SecurityEvent.of_finding(finding(), "scan", time=t[0]),
        SecurityEvent.of_finding(extraction_finding(), "gateway", principal=SCRAPER, time=t[1]),
        SecurityEvent.of_decision(read, "authz", time=t[2], src_ip="10.0.0.7"),
        SecurityEvent.of_decision(deny, "authz", time=t[3], src_ip="203.0.113.9"),
        SecurityEvent(
            EventKind.AUTHENTICATION, "authz", "token.authenticate", "token rejected: expired",
            Severity.LOW, Outcome.FAILURE, SCRAPER, time=t[4],
            attributes={"src_ip": "203.0.113.9", "service": "donjon-api"},
        ),
        SecurityEvent(
            EventKind.ACCOUNT, "authz", "account.create", "service account ci-bot created",
            Severity.INFO, Outcome.SUCCESS, ALICE, time=t[5],
            attributes={"target_user": "ci-bot"},
        ),
        SecurityEvent(
            EventKind.PERMISSION, "authz", "policy.grant", "ci-bot granted model.write",
            Severity.MEDIUM, Outcome.SUCCESS, ALICE, time=t[6],
            attributes={"target_user": "ci-bot", "privileges": ["model.write"],
                        "resource": "models/fraud-clf", "activity": "grant"},
        ),
        SecurityEvent(
            EventKind.DATA_ACCESS, "registry", "dataset.read", "alice read transactions v7",
            Severity.INFO, Outcome.SUCCESS, ALICE, time=t[7],
            attributes={"resource": "datasets/fraud/transactions@7", "rows": 120000},
        ),
        SecurityEvent(
            EventKind.ALERT, "monitor", "monitor.alert", "deny ratio trends out of its band",
            Severity.MEDIUM, Outcome.UNKNOWN, time=t[8],
            attributes={"metric": "deny_ratio", "value": 0.21, "low": 0.0, "high": 0.25,
                        "trend": "rising"},
        ),
        SecurityEvent(
            EventKind.AUDIT, "audit", "ledger.verify", "ledger verified: 812 entries",
            Severity.INFO, Outcome.SUCCESS, time=t[9], attributes={"entries": 812},
        ),
        SecurityEvent(
            EventKind.AUDIT, "audit", "ledger.verify", "ledger entry 77 was modified",
            Severity.CRITICAL, Outcome.FAILURE, time=t[10], attributes={"entry": 77},
        ),
        SecurityEvent(
            EventKind.ACTIVITY, "registry", "model.sign", "fraud-clf@3 signed",
            Severity.INFO, Outcome.SUCCESS, ALICE, time=t[11],
            attributes={"model": "fraud-clf@3",
                        "artifact": str(ArtifactRef("models/fraud-clf.pkl", DIGEST).digest)},
        ),
    ]  # fmt: skip
