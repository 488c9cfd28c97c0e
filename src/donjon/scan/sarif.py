"""SARIF 2.1.0 output (GitHub code scanning): rule metadata, security-severity, locations."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from donjon import __version__
from donjon.core.rules import Rule
from donjon.core.severity import Severity
from donjon.scan.report import ScanReport

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}


def _rule(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": "".join(w.capitalize() for w in rule.title.split()[:8] if w.isalnum()),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.description},
        "help": {
            "text": rule.remediation,
            "markdown": f"{rule.description}\n\n**Remediation.** {rule.remediation}",
        },
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {
            "security-severity": _SECURITY_SEVERITY[rule.severity],
            "tags": ["security", "ml-supply-chain", *rule.atlas, *rule.owasp],
            "precision": "high",
        },
    }


def _uri(path: str) -> str:
    if path.startswith("hf://"):  # a Hugging Face snapshot file is named by its URI already
        return quote(path, safe=":/@")
    p = Path(path)
    try:
        p = p.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return p.resolve().as_uri()
    return quote(p.as_posix())


def _run_properties(report: ScanReport) -> dict[str, Any]:
    """The paths as given to the scan and, for Hugging Face references, the snapshots they
    resolved to (``hf://ORG/NAME@COMMIT``): which model a policy check may take the run
    for (``donjon verify --scan-result``), as the JSON report's ``roots`` and file paths."""
    snapshots = sorted(
        {
            f.path[: f.path.find("/", f.path.rfind("@"))]
            for f in report.files
            if f.path.startswith("hf://") and "@" in f.path and "/" in f.path[f.path.rfind("@") :]
        }
    )
    return {"roots": list(report.roots)} | ({"snapshots": snapshots} if snapshots else {})


def to_sarif(report: ScanReport, rules: list[Rule]) -> dict[str, Any]:
    """The report as one SARIF run; ``rules`` lists every rule the tool can report."""
    index = {rule.id: i for i, rule in enumerate(rules)}
    results: list[dict[str, Any]] = []
    for file_report in report.files:
        for finding in file_report.findings:
            loc = finding.location
            location: dict[str, Any] = {
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(file_report.path)},
                    "region": {"startLine": 1},
                }
            }
            if loc.member:
                location["logicalLocations"] = [
                    {"fullyQualifiedName": loc.member, "kind": "member"}
                ]
            result: dict[str, Any] = {
                "ruleId": finding.rule.id,
                "level": _LEVEL[finding.level],
                "message": {"text": finding.message},
                "locations": [location],
                "partialFingerprints": {"donjonFinding/v1": finding.fingerprint},
                "properties": {
                    "severity": finding.level.label,
                    "security-severity": _SECURITY_SEVERITY[finding.level],
                    "byteOffset": loc.offset,
                    "opcodeIndex": loc.opcode_index,
                },
            }
            if finding.rule.id in index:
                result["ruleIndex"] = index[finding.rule.id]
            results.append(result)
    notifications = [{"level": "error", "message": {"text": error}} for error in report.errors]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "donjon",
                        "version": __version__,
                        "informationUri": "https://github.com/donjon-sec/donjon",
                        "rules": [_rule(rule) for rule in rules],
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": not report.errors,
                        "toolExecutionNotifications": notifications,
                    }
                ],
                "results": results,
                "properties": _run_properties(report),
            }
        ],
    }
