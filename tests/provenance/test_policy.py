"""``donjon verify --policy``: pass, or every unmet requirement listed (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.errors import InputError
from donjon.provenance import FileKeySigner, sign_model
from donjon.provenance.attest import training_run
from donjon.provenance.certs import CertificateSigner, load_certificates
from donjon.provenance.keys import load_private_key
from donjon.provenance.policy import Policy, PolicyGate, ScanStatus, check_policy, gate
from donjon.soc import read_events
from tests.provenance.pki import make_model, make_pki, write_key, write_public

POLICY = """
[signature]
public_keys = ["release.pub"]

[provenance]
required = true
builder_keys = ["builder.pub"]
builders = ["https://ci.example/runner"]
datasets_need_manifest = true

[metrics]
accuracy = { min = 0.9 }
demographic_parity_difference = { max = 0.1 }

[scan]
required = true
max_severity = "low"
"""


class FakeScan:
    """A ScanGate port implementation, as the registry's wiring would provide."""

    def __init__(self, status: ScanStatus | None) -> None:
        self.status = status

    def scan_status(self, model: Path) -> ScanStatus | None:
        return self.status


def build(
    tmp_path: Path, *, accuracy_ok: bool = True, manifest: bool = True
) -> tuple[Path, Path, Path]:
    for name in ("release", "builder"):
        write_public(tmp_path / f"{name}.pub", write_key(tmp_path / f"{name}.key"))
    model = make_model(tmp_path / "model")
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("1,0\n0,1\n")
    (tmp_path / "rows.manifest.json").write_text("{}")
    y_true = [1, 0] * 6
    y_pred = list(y_true) if accuracy_ok else [1] * 6 + [0] * 6
    groups = ["a", "a", "b", "b"] * 3
    signer = FileKeySigner.from_file(tmp_path / "builder.key")
    with training_run(name="m", builder="https://ci.example/runner", signer=signer) as run:
        run.input_dataset(data, manifest=tmp_path / "rows.manifest.json" if manifest else None)
        run.evaluate(y_true, y_pred, sensitive_features=groups)
        run.output_model(model)
    sign_model(model, FileKeySigner.from_file(tmp_path / "release.key"), model / "model.sig")
    (tmp_path / "policy.toml").write_text(POLICY)
    return model, model / "model.sig", tmp_path / "policy.toml"


CLEAN = ScanStatus(findings=0, max_severity=None)


def test_a_model_meeting_every_requirement_passes(tmp_path: Path) -> None:
    model, sig, policy = build(tmp_path)
    result = gate(model, policy, signature=sig, scan=FakeScan(CLEAN))
    assert result.passed, [str(r) for r in result.unmet]
    assert len(result.met) == 5


def test_every_unmet_requirement_is_listed(tmp_path: Path) -> None:
    model, sig, policy = build(tmp_path, accuracy_ok=False, manifest=False)
    from donjon.core import Severity

    result = gate(model, policy, signature=sig, scan=FakeScan(ScanStatus(2, Severity.HIGH)))
    assert not result.passed
    sections = sorted(r.section for r in result.unmet)
    assert sections == ["datasets", "metrics", "metrics", "scan"]
    text = "\n".join(map(str, result.unmet))
    assert "accuracy = 0.5 is below 0.9" in text
    assert "demographic_parity_difference = 0.333333 is above 0.1" in text
    assert "input dataset 'data' has no manifest" in text
    assert "worst high" in text


def test_tampered_model_untrusted_builder_and_missing_scan(tmp_path: Path) -> None:
    model, sig, policy = build(tmp_path)
    (model / "weights.bin").write_bytes(b"replaced")
    text = POLICY.replace("https://ci.example/runner", "https://other.example")
    policy.write_text(text)
    result = gate(model, policy, signature=sig, scan=None)
    messages = [str(r) for r in result.unmet]
    assert any("changed file 'weights.bin'" in m for m in messages)
    assert any(
        "provenance is about another model" in m or "about another model" in m for m in messages
    )
    assert "scan: no scan result for this model" in messages


def test_certificate_identity_must_be_allowed(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    pki = make_pki(tmp_path, "ca", email="intern@example.com")
    signer = CertificateSigner(load_private_key(pki.leaf_key), pki.leaf)
    sign_model(model, signer, tmp_path / "c.sig")
    policy = tmp_path / "p.toml"
    policy.write_text(
        '[signature]\ncertificate_chain = ["ca.pem"]\nidentities = ["ml@example.com"]\n'
    )
    result = gate(model, policy, signature=tmp_path / "c.sig")
    assert [r.section for r in result.unmet] == ["signature"]
    assert "not an allowed identity" in str(result.unmet[0])
    policy.write_text(
        '[signature]\ncertificate_chain = ["ca.pem"]\nidentities = ["intern@example.com"]\n'
    )
    assert gate(model, policy, signature=tmp_path / "c.sig").passed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[signatures]\n", "unknown section"),
        ("[signature]\npublic_key = []\n", "unknown key"),
        ("[signature]\n", "needs public_keys or certificate_chain"),
        ('[signature]\npublic_keys = ["nope.pub"]\n', "cannot read public key"),
        ("not toml [", "not valid TOML"),
        (
            '[signature]\npublic_keys = ["release.pub"]\n[metrics]\naccuracy = 0.9\n',
            "metrics.accuracy",
        ),
    ],
)
def test_bad_policies_are_refused(tmp_path: Path, text: str, message: str) -> None:
    write_public(tmp_path / "release.pub", write_key(tmp_path / "release.key"))
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(InputError, match=message):
        Policy.load(tmp_path / "p.toml")


def test_verify_policy_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], donjon_home: Path
) -> None:
    model, sig, policy = build(tmp_path)
    scan = tmp_path / "scan.json"
    scan.write_text(json.dumps({"findings": []}))
    argv = ["verify", str(model), "--policy", str(policy), "--signature", str(sig)]
    assert main([*argv, "--scan-result", str(scan)]) == 0
    assert "Policy passed" in capsys.readouterr().out
    scan.write_text(json.dumps({"findings": [{"severity": "critical"}]}))
    assert main(["-f", "json", *argv, "--scan-result", str(scan)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] is False
    assert out["unmet"] == [
        {"section": "scan", "message": "1 finding(s), worst critical (allowed up to low)"}
    ]
    findings = [e.finding for e in read_events(donjon_home / "events.jsonl") if e.finding]
    assert [f.rule.id for f in findings] == ["DJ-PRV-002"]
    assert main([*argv, "--policy", str(tmp_path / "missing.toml")]) == 2


def test_check_policy_is_a_python_function(tmp_path: Path) -> None:
    model, sig, policy = build(tmp_path)
    loaded = Policy.load(policy)
    result = check_policy(model, loaded, signature=sig, scan=FakeScan(CLEAN))
    assert result.passed
    bound = PolicyGate(loaded, FakeScan(None))
    assert [r.section for r in bound.check(model, sig).unmet] == ["scan"]
    assert result.subject_digest is not None
    assert load_certificates([]) == []
