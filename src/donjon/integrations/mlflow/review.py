"""Review a model version's downloaded artifacts: scan them, verify them against a policy.

The artifacts are what MLflow serves for the version (``models:/NAME/VERSION``).
Two reserved files ride along with them: ``model.sig``, the OMS signature bundle
of the folder (written by ``donjon sign FOLDER --signature FOLDER/model.sig``),
and ``model.provenance.json``, the signed training provenance, which is moved
beside the folder before checking (provenance is about the model files, not
about itself).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from donjon.core.severity import Severity
from donjon.errors import DonjonError
from donjon.integrations.mlflow.verdict import Status, Verdict
from donjon.provenance.attest import provenance_path
from donjon.provenance.policy import Policy, PolicyResult, ScanStatus, check_policy
from donjon.scan import DEFAULT_POLICY, ScanPolicy, ScanReport, scan_path

SIGNATURE_NAME = "model.sig"
PROVENANCE_NAME = "model.provenance.json"
_PROVENANCE_SECTIONS = {"provenance", "datasets", "metrics"}
# Written by MLflow's client into a ``models:/`` download (the name and version it was
# fetched as): scanned with the rest, but not part of what the publisher signed.
CLIENT_WRITTEN = "registered_model_meta"


@dataclass(frozen=True)
class ReviewPolicy:
    """When a version fails: a scan finding at or above ``fail_on``, or an unmet ``verify``.

    Without ``verify`` (a verification policy file) signature and provenance are
    ``not-required``; with one, the signature always is (and provenance when the
    policy asks for it).
    """

    fail_on: Severity = Severity.MEDIUM
    scan: ScanPolicy = field(default=DEFAULT_POLICY)
    verify: Policy | None = None


@dataclass(frozen=True)
class Review:
    verdict: Verdict
    report: ScanReport
    policy: PolicyResult | None = None

    def evidence(self, url: str) -> dict[str, Any]:
        """The evidence document the ``donjon.evidence`` tag links to."""
        return {
            "schema": "donjon.mlflow.verdict/v1",
            "uid": self.verdict.uid,
            **self.verdict.to_dict(),
            "evidence": url,
            "scan_report": self.report.to_dict(),
            "policy": None
            if self.policy is None
            else {
                "met": list(self.policy.met),
                "unmet": [{"section": r.section, "message": r.message} for r in self.policy.unmet],
            },
        }


class _ScanOf:
    """The policy's scan port, answered by the scan just run on the same files."""

    def __init__(self, report: ScanReport) -> None:
        self.report = report

    def scan_status(self, model: Path) -> ScanStatus:
        levels = [f.level for f in self.report.findings]
        levels += [Severity.HIGH for _ in self.report.errors]  # unreadable is not clean
        return ScanStatus(len(levels), max(levels, default=None), "mlflow review")


def _renamed(report: ScanReport, folder: Path, uri: str) -> ScanReport:
    """Paths and finding subjects named ``models:/NAME/VERSION/FILE``."""
    files = tuple(
        r.renamed(f"{uri}/{Path(r.path).relative_to(folder).as_posix()}") for r in report.files
    )
    return dataclasses.replace(report, roots=(uri,), files=files)


def _scan_reasons(report: ScanReport, fail_on: Severity) -> list[str]:
    bad = sorted(report.at_or_above(fail_on), key=lambda f: f.level, reverse=True)
    reasons = [
        f"{f.rule.id} [{f.level.label}] {f.subject.artifact.uri if f.subject.artifact else ''}: "
        f"{f.message}"
        for f in bad[:5]
    ]
    if len(bad) > 5:
        reasons.append(f"... and {len(bad) - 5} more findings")
    return reasons + [f"unreadable: {e}" for e in report.errors]


def review_folder(folder: Path, model: str, policy: ReviewPolicy) -> Review:
    """Scan every file of ``folder`` (never loading one) and verify it when asked.

    ``model`` names it (``models:/NAME/VERSION``): files are named ``{model}/FILE``.
    """
    report = _renamed(scan_path(folder, policy=policy.scan), folder, model)
    reasons = _scan_reasons(report, policy.fail_on)
    scan_failed = bool(reasons)
    scan = Status.FAILED if scan_failed else Status.PASSED
    signature = provenance = Status.NOT_REQUIRED
    result: PolicyResult | None = None
    digest: str | None = None
    if policy.verify is not None:
        inside = folder / PROVENANCE_NAME
        if inside.is_file() and not inside.is_symlink():
            inside.replace(provenance_path(folder))
        try:
            with _set_aside(folder / CLIENT_WRITTEN):
                result = check_policy(
                    folder, policy.verify, signature=folder / SIGNATURE_NAME, scan=_ScanOf(report)
                )
        except DonjonError as e:  # an unreadable bundle or policy: fail closed
            signature = Status.ERROR
            reasons.append(f"signature: {e}")
        else:
            signature, provenance, scan = _statuses(policy.verify, result, scan)
            # the policy's own scan requirement repeats the scan's reasons when those failed
            reasons += [str(r) for r in result.unmet if r.section != "scan" or not scan_failed]
            digest = result.subject_digest
    verdict = Verdict(
        model,
        scan=scan,
        signature=signature,
        provenance=provenance,
        reasons=tuple(reasons),
        findings=len(report.findings),
        worst=report.max_severity,
        digest=digest,
    )
    return Review(verdict, report, result)


@contextmanager
def _set_aside(path: Path) -> Iterator[None]:
    """Move ``path`` out of its folder for the block (when it is a plain file)."""
    if not path.is_file() or path.is_symlink():
        yield
        return
    aside = path.parent.with_name(f".{path.parent.name}.{path.name}")
    path.replace(aside)
    try:
        yield
    finally:
        aside.replace(path)


def _statuses(verify: Policy, result: PolicyResult, scan: Status) -> tuple[Status, Status, Status]:
    sections = {r.section for r in result.unmet}
    signature = Status.FAILED if "signature" in sections else Status.PASSED
    wanted = verify.provenance_required or bool(verify.metrics) or verify.datasets_need_manifest
    if not wanted:
        provenance = Status.NOT_REQUIRED
    elif sections & _PROVENANCE_SECTIONS:
        provenance = Status.FAILED
    else:
        provenance = Status.PASSED
    if "scan" in sections:
        scan = Status.FAILED
    return signature, provenance, scan


def failed_to_review(model: str, error: Exception) -> Verdict:
    """The verdict when the artifacts could not even be fetched or read: it fails closed."""
    return Verdict(
        model,
        scan=Status.ERROR,
        signature=Status.ERROR,
        provenance=Status.ERROR,
        reasons=(f"not reviewed: {error}",),
    )
