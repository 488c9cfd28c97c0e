"""Small builders of core values for tests."""

from __future__ import annotations

from typing import Any

from donjon.core import ArtifactRef, Digest, Finding, Location, Rule, Severity, Subject

SAMPLE_RULE = Rule(
    id="DJ-TST-001",
    title="Test rule",
    description="A rule used by the tests.",
    remediation="Nothing to do.",
    severity=Severity.HIGH,
    atlas=("AML.T0011.000",),
    owasp=("ML06",),
    mitigations=("AML.M0016",),
)

DIGEST = Digest("sha256", "ab" * 32)


def finding(**overrides: Any) -> Finding:
    values: dict[str, Any] = {
        "rule": SAMPLE_RULE,
        "subject": Subject(artifact=ArtifactRef("models/model.pkl", DIGEST)),
        "message": "os.system reached through REDUCE",
        "location": Location(member="archive/data.pkl", offset=12, opcode_index=3),
        "evidence": {"global": "os.system", "args": ["id"]},
    }
    values.update(overrides)
    return Finding(**values)
