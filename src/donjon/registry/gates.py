"""Promotion gates the registry can check by itself, from what it has stored.

The scanner and the signature / provenance verifiers live in other packages
and reach the registry through the :class:`~donjon.registry.ports.ScanGate`
and :class:`~donjon.registry.ports.PromotionGate` ports; the gates here only
read the version's recorded history and lineage.
"""

from __future__ import annotations

from donjon.registry.model import GateResult, Stage, Status, Version
from donjon.registry.ports import BlobReader, GateContext

SCAN_GATE = "scan"


def scan_clean(history: tuple[GateResult, ...]) -> bool:
    """True when the most recent scan of the version passed."""
    scans = [result for result in history if result.gate == SCAN_GATE]
    return bool(scans) and scans[-1].passed


def passed(history: tuple[GateResult, ...], gate: str) -> bool:
    """True when the most recent result of ``gate`` passed."""
    results = [result for result in history if result.gate == gate]
    return bool(results) and results[-1].passed


class RequireCleanScan:
    """The version's push-time scan ran and found nothing (no scan = not clean)."""

    name = "clean-scan"

    def check(
        self, version: Version, target: Stage, open_blob: BlobReader, context: GateContext
    ) -> GateResult:
        if scan_clean(context.history):
            return GateResult(self.name, True, target.value, ("the last scan was clean",))
        scans = [r for r in context.history if r.gate == SCAN_GATE]
        reason = scans[-1].reasons if scans else ("the version was never scanned",)
        return GateResult(self.name, False, target.value, tuple(reason) or ("scan not clean",))


class RequireAdmittedLineage:
    """Every dataset version the model names in its lineage exists and is active.

    With ``required`` (the default) a model without lineage fails too: a model
    whose training data is unknown is not admitted.
    """

    name = "admitted-lineage"

    def __init__(self, *, required: bool = True) -> None:
        self.required = required

    def check(
        self, version: Version, target: Stage, open_blob: BlobReader, context: GateContext
    ) -> GateResult:
        if not version.lineage:
            if self.required:
                return GateResult(self.name, False, target.value, ("the model names no datasets",))
            return GateResult(self.name, True, target.value, ("no lineage required",))
        problems: list[str] = []
        for ref, dataset in zip(version.lineage, context.lineage, strict=True):
            if dataset is None:
                problems.append(f"dataset {ref} does not exist")
            elif dataset.status is not Status.ACTIVE:
                problems.append(f"dataset {ref} is {dataset.status.value}")
        if problems:
            return GateResult(self.name, False, target.value, tuple(problems))
        names = ", ".join(str(ref) for ref in version.lineage)
        return GateResult(self.name, True, target.value, (f"datasets admitted: {names}",))
