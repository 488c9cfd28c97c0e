import dataclasses
import hashlib

import pytest

from donjon.core import ArtifactRef, Digest, Location, Severity, Subject
from tests.factories import DIGEST, SAMPLE_RULE, finding


def test_fingerprint_is_stable_across_runs() -> None:
    # A golden value: changing the fingerprint scheme breaks de-duplication in
    # every SIEM that stored old findings, so it must be a deliberate change.
    material = (
        '["DJ-TST-001","sha256:' + "ab" * 32 + '","member=archive/data.pkl|offset=12|opcode=3"]'
    )
    expected = hashlib.sha256(material.encode()).hexdigest()[:32]
    assert finding().fingerprint == expected == "a399022125c6b9450b3e24d53615b88a"


def test_fingerprint_ignores_message_and_evidence() -> None:
    base = finding()
    reworded = finding(message="another wording", evidence={"other": True})
    assert reworded.fingerprint == base.fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"location": Location(member="archive/data.pkl", offset=13, opcode_index=3)},
        {"subject": Subject(artifact=ArtifactRef("x", Digest("sha256", "cd" * 32)))},
        {"rule": dataclasses.replace(SAMPLE_RULE, id="DJ-TST-002")},
    ],
)
def test_fingerprint_changes_with_rule_subject_or_location(change: dict[str, object]) -> None:
    assert finding(**change).fingerprint != finding().fingerprint


def test_fingerprint_prefers_digest_over_path() -> None:
    moved = finding(subject=Subject(artifact=ArtifactRef("elsewhere/model.pkl", DIGEST)))
    assert moved.fingerprint == finding().fingerprint


def test_severity_defaults_to_the_rules() -> None:
    assert finding().level is Severity.HIGH
    assert finding(severity=Severity.LOW).level is Severity.LOW


def test_evidence_is_read_only_and_copied() -> None:
    evidence = {"global": "os.system"}
    f = finding(evidence=evidence)
    evidence["global"] = "changed"
    assert f.evidence["global"] == "os.system"
    with pytest.raises(TypeError):
        f.evidence["global"] = "x"  # type: ignore[index]


def test_findings_are_hashable_values() -> None:
    assert len({finding(), finding(evidence={"other": 1})}) == 1


def test_subject_needs_something_to_point_at() -> None:
    with pytest.raises(ValueError, match="subject needs"):
        Subject()


def test_digest_parsing_and_validation() -> None:
    assert str(Digest.parse("SHA256:" + "AB" * 32)) == "sha256:" + "ab" * 32
    with pytest.raises(ValueError, match="64 lower-case hex"):
        Digest("sha256", "abc")
    with pytest.raises(ValueError, match="unsupported digest algorithm"):
        Digest("md5", "ab" * 16)
    with pytest.raises(ValueError, match="must look like"):
        Digest.parse("ab" * 32)
