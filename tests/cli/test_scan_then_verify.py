"""``donjon scan --format json`` writes what ``donjon verify --policy --scan-result`` reads."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from donjon.cli.main import main

POLICY = """
[signature]
public_keys = ["release.pub"]

[scan]
required = true
max_severity = "low"
"""


def _signed_model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"layers": 2}\n')
    (model / "README.md").write_text("# a tiny model\n")
    assert main(["keys", "generate", "release"]) == 0
    assert main(["keys", "export-public", "release", "-o", str(tmp_path / "release.pub")]) == 0
    sig = tmp_path / "model.sig"
    assert main(["sign", str(model), "--key", "release", "--signature", str(sig)]) == 0
    (tmp_path / "policy.toml").write_text(POLICY)
    return model


def test_verify_reads_the_real_scan_output(
    tmp_path: Path,
    donjon_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    model = _signed_model(tmp_path)
    assert main(["scan", "model", "--format", "json", "-o", "scan.json"]) == 0
    assert json.loads(Path("scan.json").read_text())["schema"] == "donjon.scan/v1"
    argv = ["verify", "model", "--policy", "policy.toml", "--signature", "model.sig"]
    capsys.readouterr()
    assert main([*argv, "--scan-result", "scan.json"]) == 0
    assert "scan: clean" in capsys.readouterr().out

    # a scan of another folder says nothing about this model
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.json").write_text("{}")
    assert main(["scan", "other", "--format", "json", "-o", "other.json"]) == 0
    assert main(["-f", "json", *argv, "--scan-result", "other.json"]) == 1
    unmet = json.loads(capsys.readouterr().out)["unmet"]
    assert unmet == [{"section": "scan", "message": "no scan result for this model"}]

    # a malicious file in the model: the real scan finds it and the policy fails
    (model / "extra.pkl").write_bytes(pickle.dumps(eval))
    assert main(["scan", "model", "--format", "json", "-o", "bad.json"]) == 1
    assert main(["-f", "json", *argv, "--scan-result", "bad.json"]) == 1
    unmet = json.loads(capsys.readouterr().out)["unmet"]
    assert {"section": "scan", "message": "1 finding(s), worst critical (allowed up to low)"} in (
        unmet
    )


def test_verify_says_how_to_make_a_scan_result(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _signed_model(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "donjon.scan/v1", "roots": [str(model)]}))
    argv = ["verify", str(model), "--policy", str(tmp_path / "policy.toml"),
            "--signature", str(tmp_path / "model.sig"), "--scan-result", str(bad)]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2
    assert "donjon scan MODEL --format json" in capsys.readouterr().err


@pytest.mark.parametrize("scan_format", ["sarif", "json"])
def test_verify_reads_the_sarif_and_a_powershell_redirect(
    scan_format: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SARIF a CI job uploads gates the release too; and a report redirected by
    PowerShell 5 (UTF-16 with a byte-order mark) reads as the file `-o` writes."""
    _signed_model(workdir)
    argv = ["verify", "model", "--policy", "policy.toml", "--signature", "model.sig"]
    capsys.readouterr()
    assert main(["-q", "scan", "model", "--format", scan_format]) == 0
    Path("clean.out").write_text(capsys.readouterr().out, encoding="utf-16")
    assert main(["-f", "json", *argv, "--scan-result", "clean.out"]) == 0
    assert json.loads(capsys.readouterr().out)["met"] == [
        "signature: signed by a trusted key or certificate identity",
        "scan: clean",
    ]

    (Path("model") / "extra.pkl").write_bytes(pickle.dumps(eval))
    assert main(["scan", "model", "--format", scan_format, "-o", "bad.out"]) == 1
    assert main(["-f", "json", *argv, "--scan-result", "bad.out"]) == 1
    unmet = json.loads(capsys.readouterr().out)["unmet"]
    assert {"section": "scan", "message": "1 finding(s), worst critical (allowed up to low)"} in (
        unmet
    )
    # a run over another folder says nothing about this model
    Path("other").mkdir()
    Path("other", "a.json").write_text("{}")
    assert main(["scan", "other", "--format", scan_format, "-o", "other.out"]) == 0
    assert main(["-f", "json", *argv, "--scan-result", "other.out"]) == 1
    unmet = json.loads(capsys.readouterr().out)["unmet"]
    assert {"section": "scan", "message": "no scan result for this model"} in unmet
