"""A model version's verdict: what Donjon writes back as tags and publishes as an event."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from donjon.core.events import EventKind, Outcome, SecurityEvent, new_event_uid
from donjon.core.severity import Severity

SOURCE = "mlflow"
TAG_PREFIX = "donjon."


class Status(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"  # could not be checked: fails closed
    NOT_REQUIRED = "not-required"  # the policy does not ask for it

    @property
    def ok(self) -> bool:
        return self in (Status.PASSED, Status.NOT_REQUIRED)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Donjon's conclusion on a model (``models:/NAME/VERSION``); ``reasons`` say why it failed."""

    model: str
    scan: Status
    signature: Status
    provenance: Status
    reasons: tuple[str, ...] = ()
    findings: int = 0
    worst: Severity | None = None
    digest: str | None = None  # sha256 of the signed manifest, when a signature verified
    uid: str = field(default_factory=new_event_uid)  # the verdict event's uid and evidence id

    @property
    def passed(self) -> bool:
        return self.scan.ok and self.signature.ok and self.provenance.ok

    def tags(self, evidence_url: str) -> dict[str, str]:
        """The model-version tags: each check, the evidence link, then the overall verdict
        (written last, in this order: once ``donjon.verdict`` is there, so are the others)."""
        return {
            "donjon.scan": self.scan.value,
            "donjon.signature": self.signature.value,
            "donjon.provenance": self.provenance.value,
            "donjon.evidence": evidence_url,
            "donjon.verdict": "passed" if self.passed else "failed",
        }

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "passed": self.passed,
            "scan": self.scan.value,
            "signature": self.signature.value,
            "provenance": self.provenance.value,
            "reasons": list(self.reasons),
            "subject_digest": f"sha256:{self.digest}" if self.digest else None,
        }

    def summary(self) -> str:
        state = "passed" if self.passed else "failed"
        detail = "; ".join(self.reasons[:3])
        return f"{self.model} {state}" + (f": {detail}" if detail else "")

    def event(self, evidence_url: str) -> SecurityEvent:
        if self.passed:
            severity = Severity.INFO
        else:
            severity = max(self.worst or Severity.MEDIUM, Severity.MEDIUM)
        return SecurityEvent(
            kind=EventKind.ACTIVITY,
            source=SOURCE,
            action="mlflow.verdict",
            message=self.summary(),
            severity=severity,
            outcome=Outcome.SUCCESS if self.passed else Outcome.FAILURE,
            uid=self.uid,
            attributes={
                "model": self.model,
                "scan": self.scan.value,
                "signature": self.signature.value,
                "provenance": self.provenance.value,
                "findings": self.findings,
                "reasons": list(self.reasons),
                "subject_digest": f"sha256:{self.digest}" if self.digest else None,
                "evidence": evidence_url,
            },
        )


def activity(action: str, message: str, *, ok: bool, **attributes: object) -> SecurityEvent:
    """An operational fact of the integration: an alias removed, a tag restored."""
    return SecurityEvent(
        kind=EventKind.ACTIVITY,
        source=SOURCE,
        action=f"mlflow.{action}",
        message=message,
        severity=Severity.INFO if ok else Severity.MEDIUM,
        outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
        attributes=attributes,
    )
