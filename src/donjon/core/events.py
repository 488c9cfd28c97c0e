"""SecurityEvent: the one event type every capability emits.

Exporters map it to OCSF, ECS, CEF or syslog; the core never knows those
formats. ``to_dict`` / ``from_dict`` give a lossless, self-contained JSON form
(the rule travels with its finding) used by the outbox and the JSON-lines sink.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from donjon.core.artifacts import ArtifactRef, Digest
from donjon.core.decision import Decision, Effect
from donjon.core.findings import Finding, Location, Subject, freeze
from donjon.core.identity import Principal, PrincipalKind
from donjon.core.rules import Rule
from donjon.core.severity import Severity

SCHEMA_VERSION = 1


class EventKind(enum.StrEnum):
    """What kind of fact an event records (each maps to one OCSF class)."""

    FINDING = "finding"  # a detection by a rule
    ACCESS = "access"  # an authorisation decision on an API call
    AUTHENTICATION = "authentication"  # a log-on attempt or token check
    ACCOUNT = "account"  # a user, group or token created, changed, revoked
    PERMISSION = "permission"  # a grant or policy change
    DATA_ACCESS = "data_access"  # a dataset or model read or written
    ALERT = "alert"  # a monitored metric left its healthy band
    AUDIT = "audit"  # ledger checkpoints and verifications
    ACTIVITY = "activity"  # other operational facts: a scan ran, a model was signed


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


def new_event_uid() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One security-relevant fact, ready for the bus."""

    kind: EventKind
    source: str
    action: str
    message: str
    severity: Severity = Severity.INFO
    outcome: Outcome = Outcome.UNKNOWN
    principal: Principal | None = None
    finding: Finding | None = None
    decision: Decision | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    uid: str = field(default_factory=new_event_uid)
    time: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("event time must be timezone-aware")
        object.__setattr__(self, "attributes", freeze(self.attributes))

    @classmethod
    def of_finding(
        cls,
        finding: Finding,
        source: str,
        *,
        principal: Principal | None = None,
        time: datetime | None = None,
        **attributes: Any,
    ) -> SecurityEvent:
        """The event for one finding; its severity is the finding's."""
        return cls(
            kind=EventKind.FINDING,
            source=source,
            action=f"{source}.finding",
            message=finding.message,
            severity=finding.level,
            outcome=Outcome.FAILURE,
            principal=principal,
            finding=finding,
            attributes=attributes,
            time=time or utc_now(),
        )

    @classmethod
    def of_decision(
        cls, decision: Decision, source: str, *, time: datetime | None = None, **attributes: Any
    ) -> SecurityEvent:
        """The event for an access decision: allows are informational, denies low."""
        allowed = decision.effect is Effect.ALLOW
        verb = "allowed" if allowed else "denied"
        return cls(
            kind=EventKind.ACCESS,
            source=source,
            action=decision.action,
            message=f"{decision.principal} {verb} {decision.action} on {decision.resource}",
            severity=Severity.INFO if allowed else Severity.LOW,
            outcome=Outcome.SUCCESS if allowed else Outcome.FAILURE,
            principal=decision.principal,
            decision=decision,
            attributes=attributes,
            time=time or utc_now(),
        )

    # -- JSON form ---------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "uid": self.uid,
            "time": self.time.isoformat(),
            "kind": self.kind.value,
            "source": self.source,
            "action": self.action,
            "message": self.message,
            "severity": self.severity.label,
            "outcome": self.outcome.value,
            "principal": _principal_to_dict(self.principal),
            "finding": _finding_to_dict(self.finding),
            "decision": _decision_to_dict(self.decision),
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SecurityEvent:
        """Rebuild an event from :meth:`to_dict`; ValueError on malformed input."""
        try:
            if data["schema"] != SCHEMA_VERSION:
                raise ValueError(f"unsupported event schema {data['schema']!r}")
            return cls(
                uid=str(data["uid"]),
                time=datetime.fromisoformat(data["time"]),
                kind=EventKind(data["kind"]),
                source=str(data["source"]),
                action=str(data["action"]),
                message=str(data["message"]),
                severity=Severity.parse(data["severity"]),
                outcome=Outcome(data["outcome"]),
                principal=_principal_from_dict(data.get("principal")),
                finding=_finding_from_dict(data.get("finding")),
                decision=_decision_from_dict(data.get("decision")),
                attributes=dict(data.get("attributes") or {}),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed event: {e!r}") from e


def _principal_to_dict(p: Principal | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "id": p.id,
        "kind": p.kind.value,
        "display_name": p.display_name,
        "groups": list(p.groups),
    }


def _principal_from_dict(d: Mapping[str, Any] | None) -> Principal | None:
    if d is None:
        return None
    return Principal(
        d["id"], PrincipalKind(d["kind"]), d.get("display_name"), tuple(d.get("groups") or ())
    )


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "title": rule.title,
        "description": rule.description,
        "remediation": rule.remediation,
        "severity": rule.severity.label,
        "atlas": list(rule.atlas),
        "owasp": list(rule.owasp),
        "mitigations": list(rule.mitigations),
    }


def rule_from_dict(d: Mapping[str, Any]) -> Rule:
    return Rule(
        id=d["id"],
        title=d["title"],
        description=d["description"],
        remediation=d["remediation"],
        severity=Severity.parse(d["severity"]),
        atlas=tuple(d.get("atlas") or ()),
        owasp=tuple(d.get("owasp") or ()),
        mitigations=tuple(d.get("mitigations") or ()),
    )


def _artifact_to_dict(a: ArtifactRef | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {
        "uri": a.uri,
        "digest": str(a.digest) if a.digest else None,
        "kind": a.kind,
        "media_type": a.media_type,
        "version": a.version,
    }


def _artifact_from_dict(d: Mapping[str, Any] | None) -> ArtifactRef | None:
    if d is None:
        return None
    digest = Digest.parse(d["digest"]) if d.get("digest") else None
    return ArtifactRef(
        d["uri"], digest, d.get("kind", "file"), d.get("media_type"), d.get("version")
    )


def finding_to_dict(f: Finding) -> dict[str, Any]:
    s, loc = f.subject, f.location
    return {
        "fingerprint": f.fingerprint,
        "rule": rule_to_dict(f.rule),
        "severity": f.level.label,
        "message": f.message,
        "subject": {
            "artifact": _artifact_to_dict(s.artifact),
            "dataset": s.dataset,
            "model": s.model,
            "principal": s.principal,
            "endpoint": s.endpoint,
        },
        "location": {
            "member": loc.member,
            "offset": loc.offset,
            "opcode_index": loc.opcode_index,
            "record": loc.record,
            "line": loc.line,
        },
        "evidence": dict(f.evidence),
    }


def _finding_to_dict(f: Finding | None) -> dict[str, Any] | None:
    return None if f is None else finding_to_dict(f)


def _finding_from_dict(d: Mapping[str, Any] | None) -> Finding | None:
    if d is None:
        return None
    s = d["subject"]
    subject = Subject(
        _artifact_from_dict(s.get("artifact")),
        s.get("dataset"),
        s.get("model"),
        s.get("principal"),
        s.get("endpoint"),
    )
    return Finding(
        rule=rule_from_dict(d["rule"]),
        subject=subject,
        message=d["message"],
        location=Location(**d.get("location") or {}),
        severity=Severity.parse(d["severity"]),
        evidence=d.get("evidence") or {},
    )


def _decision_to_dict(dec: Decision | None) -> dict[str, Any] | None:
    if dec is None:
        return None
    return {
        "effect": dec.effect.value,
        "principal": _principal_to_dict(dec.principal),
        "action": dec.action,
        "resource": dec.resource,
        "reasons": list(dec.reasons),
        "policy_ids": list(dec.policy_ids),
    }


def _decision_from_dict(d: Mapping[str, Any] | None) -> Decision | None:
    if d is None:
        return None
    principal = _principal_from_dict(d["principal"])
    if principal is None:
        raise ValueError("a decision needs a principal")
    return Decision(
        Effect(d["effect"]),
        principal,
        d["action"],
        d["resource"],
        tuple(d.get("reasons") or ()),
        tuple(d.get("policy_ids") or ()),
    )
