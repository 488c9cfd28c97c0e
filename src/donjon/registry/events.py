"""The registry's security events: one per action and one per gate result.

Decisions are published by :meth:`donjon.registry.service.Registry.authorize`
with :meth:`SecurityEvent.of_decision`; these are the facts that follow.
"""

from __future__ import annotations

from typing import Any

from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.identity import Principal
from donjon.core.severity import Severity
from donjon.registry.model import GateResult, Stage, Version

SOURCE = "registry"


def action_event(
    principal: Principal,
    act: str,
    res: str,
    outcome: Outcome,
    detail: str,
    *,
    version: Version | None = None,
    stage: Stage | None = None,
) -> SecurityEvent:
    """A ``data_access`` event: a dataset or model read, written, promoted or deleted."""
    attributes: dict[str, Any] = {"resource": res}
    if version is not None:
        attributes.update(
            digest=str(version.digest), version=version.number, size=version.size,
            status=version.status.value,
        )  # fmt: skip
        if version.stage is not None:
            attributes["stage"] = version.stage.value
    if stage is not None:
        attributes["target_stage"] = stage.value
    failed = outcome is Outcome.FAILURE
    return SecurityEvent(
        kind=EventKind.DATA_ACCESS,
        source=SOURCE,
        action=act,
        message=f"{principal} {act} {res}: {detail}",
        severity=Severity.LOW if failed else Severity.INFO,
        outcome=outcome,
        principal=principal,
        attributes=attributes,
    )


def gate_event(principal: Principal, version: Version, result: GateResult) -> SecurityEvent:
    """An ``activity`` event ``registry.gate.<gate>`` for one gate result."""
    verdict = "passed" if result.passed else "failed"
    return SecurityEvent(
        kind=EventKind.ACTIVITY,
        source=SOURCE,
        action=f"registry.gate.{result.gate}",
        message=f"gate {result.gate} {verdict} for {version.resource} "
        f"({result.target}): {'; '.join(result.reasons)}",
        severity=Severity.INFO if result.passed else Severity.MEDIUM,
        outcome=Outcome.SUCCESS if result.passed else Outcome.FAILURE,
        principal=principal,
        attributes={"resource": version.resource, **result.to_dict()},
    )
