"""Scan results: per-file reports, the whole report and its stable JSON form."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from donjon.core.findings import Finding
from donjon.core.severity import Severity

REPORT_SCHEMA = "donjon.scan/v1"


@dataclass(frozen=True, slots=True)
class FileReport:
    path: str
    format: str
    size: int
    findings: tuple[Finding, ...]
    error: str | None
    seconds: float

    @property
    def max_severity(self) -> Severity | None:
        return max((f.level for f in self.findings), default=None)

    def renamed(self, name: str) -> FileReport:
        """The same report with the file, and its findings' artifact, named ``name``
        (``hf://ORG/NAME@COMMIT/FILE``, ``models:/NAME/VERSION/FILE``)."""

        def moved(finding: Finding) -> Finding:
            artifact = finding.subject.artifact
            if artifact is None:
                return finding
            subject = replace(finding.subject, artifact=replace(artifact, uri=name))
            return replace(finding, subject=subject)

        return replace(self, path=name, findings=tuple(moved(f) for f in self.findings))


@dataclass(frozen=True, slots=True)
class ScanReport:
    roots: tuple[str, ...]
    files: tuple[FileReport, ...]
    seconds: float

    @property
    def findings(self) -> list[Finding]:
        return [f for report in self.files for f in report.findings]

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.files if r.error]

    @property
    def max_severity(self) -> Severity | None:
        return max((f.level for f in self.findings), default=None)

    def at_or_above(self, threshold: Severity) -> list[Finding]:
        return [f for f in self.findings if f.level >= threshold]

    def counts(self) -> dict[str, int]:
        found = Counter(f.level.label for f in self.findings)
        return {s.label: found.get(s.label, 0) for s in reversed(Severity)}

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON form (schema ``donjon.scan/v1``, see docs/scan.md)."""
        from donjon.core.events import finding_to_dict  # the events module loads uuid

        return {
            "schema": REPORT_SCHEMA,
            "roots": list(self.roots),
            "seconds": round(self.seconds, 3),
            "summary": {
                "files": len(self.files),
                "findings": len(self.findings),
                "errors": len(self.errors),
                "by_severity": self.counts(),
                "max_severity": self.max_severity.label if self.max_severity else None,
            },
            "files": [
                {
                    "path": r.path,
                    "format": r.format,
                    "size": r.size,
                    "seconds": round(r.seconds, 4),
                    "error": r.error,
                    "max_severity": r.max_severity.label if r.max_severity else None,
                    "findings": [finding_to_dict(f) for f in r.findings],
                }
                for r in self.files
            ],
        }
