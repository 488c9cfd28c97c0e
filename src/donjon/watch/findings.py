"""Findings and events of the watch."""

from __future__ import annotations

from typing import Any

from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.findings import Finding, Subject
from donjon.core.severity import Severity
from donjon.watch.rules import CHECK_FAILED, LESS_ROBUST, MODEL_CHANGED
from donjon.watch.verdict import CheckResult

SOURCE = "watch"


def changed_finding(result: CheckResult) -> Finding:
    """DJ-WT-001: the deployed model is not the enrolled version."""
    return Finding(
        MODEL_CHANGED,
        Subject(model=f"{result.model}@{result.version}", endpoint=result.endpoint),
        f"the model at {result.endpoint} is not {result.model}@{result.version}: "
        f"{len(result.changed)} of {result.points} fingerprint points changed "
        f"({result.changed_boundary} next to the boundary), p = {result.p_value:.3g}",
        evidence=result.to_dict(),
    )


def failed_finding(model: str, version: int, endpoint: str, reason: str) -> Finding:
    """DJ-WT-002: the check could not run (fail closed: reported, never a pass)."""
    return Finding(
        CHECK_FAILED,
        Subject(model=f"{model}@{version}", endpoint=endpoint),
        f"the fingerprint check of {model}@{version} at {endpoint} could not run: {reason}",
        evidence={"model": model, "version": version, "endpoint": endpoint, "reason": reason},
    )


def less_robust_finding(outcome: dict[str, Any]) -> Finding:
    """DJ-WT-003: a probe found the version brittler than the one before, row by row."""
    model, version, endpoint = outcome["model"], outcome["version"], outcome["endpoint"]
    return Finding(
        LESS_ROBUST,
        Subject(model=f"{model}@{version}", endpoint=endpoint),
        f"{model}@{version} at {endpoint} needs less perturbation than version "
        f"{outcome['paired_version']}: {outcome['paired_brittler']} of "
        f"{outcome['paired_rows']} rows, median ratio {outcome['paired_ratio']:.2f}, "
        f"p = {outcome['paired_p_value']:.3g}",
        evidence={k: v for k, v in outcome.items() if k != "perturbations"},
    )


def activity(action: str, message: str, *, ok: bool = True, **attributes: Any) -> SecurityEvent:
    """An enrolment or a passed check, as one event."""
    return SecurityEvent(
        kind=EventKind.ACTIVITY,
        source=SOURCE,
        action=f"watch.{action}",
        message=message,
        severity=Severity.INFO if ok else Severity.MEDIUM,
        outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
        attributes=attributes,
    )


def finding_event(finding: Finding) -> SecurityEvent:
    return SecurityEvent.of_finding(finding, SOURCE)
