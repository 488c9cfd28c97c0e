"""``donjon report`` reads the facts the commands recorded: signatures, gates, verifications."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.core.artifacts import ArtifactRef
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.findings import Finding, Subject
from donjon.core.rules import Rule
from donjon.core.severity import Severity
from donjon.soc.report import assess, render_html


def test_report_after_real_sign_and_audit_verify(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}\n")
    assert main(["keys", "generate", "release"]) == 0
    assert (
        main(["sign", str(model), "--key", "release", "--signature", str(tmp_path / "m.sig")]) == 0
    )
    assert main(["audit", "verify"]) == 0
    capsys.readouterr()
    out = tmp_path / "report.html"
    assert main(["-f", "json", "report", "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unsigned_models"] == []
    assert summary["ledger_ok"] is True
    page = out.read_text()
    assert '<p id="ledger-status" class="ok">verified</p>' in page
    assert '<p id="denials" class="none">none</p>' in page  # no bare table headers
    assert '<p class="none">findings: none</p>' in page  # nothing to plot: said so


def _event(kind: EventKind, action: str, minutes: int, **extra: object) -> SecurityEvent:
    base = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    return SecurityEvent(kind, "registry", action, action, time=base + timedelta(minutes=minutes),
                         **extra)  # type: ignore[arg-type]  # fmt: skip


def test_gates_and_tamper_findings_are_read() -> None:
    tampered = Finding(
        Rule("DJ-LED-001", "Audit ledger tampered", "d", "r", Severity.CRITICAL),
        Subject(artifact=ArtifactRef("ledger:x", kind="ledger")),
        "first bad entry 3",
    )
    events = [
        _event(EventKind.ACTIVITY, "registry.gate.signature", 0, outcome=Outcome.SUCCESS,
               attributes={"resource": "models/digits-clf@1"}),
        _event(EventKind.ACTIVITY, "registry.gate.provenance", 1, outcome=Outcome.SUCCESS,
               attributes={"resource": "models/digits-clf@1"}),
        _event(EventKind.AUDIT, "audit.verify", 2, outcome=Outcome.SUCCESS),
        SecurityEvent.of_finding(tampered, "audit"),
    ]  # fmt: skip
    posture = assess(events)
    assert posture.unsigned == []
    assert posture.without_provenance == []
    assert posture.ledger_ok is False  # the last verification found tampering
    page = render_html(posture)
    assert "FAILED" in page
    assert "findings per hour" in page
    assert "<svg" in page
