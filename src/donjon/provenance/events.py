"""SecurityEvents for signing, verification and policy outcomes (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from donjon.core.artifacts import ArtifactRef, Digest
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.findings import Finding, Location, Subject
from donjon.core.severity import Severity
from donjon.provenance.errors import Problem
from donjon.provenance.rules import MODEL_ALTERED, SIGNATURE_INVALID

SOURCE = "provenance"
_CONTENT = {"changed", "missing", "extra"}


def _artifact(model: Path | str, digest: str | None = None) -> ArtifactRef:
    return ArtifactRef(str(model), Digest("sha256", digest) if digest else None, kind="model")


def signed(model: Path, subject_digest: str, signature: Path, key_hint: str) -> SecurityEvent:
    return SecurityEvent(
        kind=EventKind.ACTIVITY,
        source=SOURCE,
        action="provenance.sign",
        message=f"signed {model} (sha256:{subject_digest[:16]}...) into {signature}",
        outcome=Outcome.SUCCESS,
        attributes={
            "model": str(model),
            "subject_digest": f"sha256:{subject_digest}",
            "signature": str(signature),
            "key_hint": key_hint,
        },
    )


def verified(model: Path | str, subject_digest: str, signer: str) -> SecurityEvent:
    return SecurityEvent(
        kind=EventKind.ACTIVITY,
        source=SOURCE,
        action="provenance.verify",
        message=f"signature of {model} verified (signer {signer})",
        outcome=Outcome.SUCCESS,
        attributes={"model": str(model), "subject_digest": f"sha256:{subject_digest}"},
    )


def problem_findings(model: Path | str, problems: Iterable[Problem]) -> list[Finding]:
    """One finding per problem: file-level problems name the file as the location."""
    findings = []
    for problem in problems:
        content = problem.code in _CONTENT
        findings.append(
            Finding(
                rule=MODEL_ALTERED if content else SIGNATURE_INVALID,
                subject=Subject(artifact=_artifact(model)),
                message=problem.message,
                location=Location(member=problem.path) if problem.path else Location(),
                evidence={"reason": problem.code},
            )
        )
    return findings


def verification_failed(model: Path | str, problems: Iterable[Problem]) -> list[SecurityEvent]:
    return [
        SecurityEvent.of_finding(f, SOURCE, model=str(model))
        for f in problem_findings(model, problems)
    ]


def activity(action: str, message: str, *, ok: bool, **attributes: object) -> SecurityEvent:
    return SecurityEvent(
        kind=EventKind.ACTIVITY,
        source=SOURCE,
        action=f"provenance.{action}",
        message=message,
        severity=Severity.INFO if ok else Severity.MEDIUM,
        outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
        attributes=attributes,
    )
