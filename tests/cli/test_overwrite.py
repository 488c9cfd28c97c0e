"""One rule for outputs: an existing file is refused (exit 2) unless ``--force``."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.cli.main import main


def _refused_then_forced(
    argv: list[str], target: Path, capsys: pytest.CaptureFixture[str], ok: tuple[int, ...] = (0,)
) -> None:
    target.write_text("keep me\n")
    capsys.readouterr()
    assert main(argv) == 2
    assert "already exist" in capsys.readouterr().err
    assert target.read_text() == "keep me\n"
    assert main([*argv, "--force"]) in ok
    assert target.read_text() != "keep me\n"


def test_every_writer_refuses_to_overwrite_without_force(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"layers": 2}\n')
    assert main(["keys", "generate", "release"]) == 0
    pub = tmp_path / "release.pub"
    _refused_then_forced(["keys", "export-public", "release", "-o", str(pub)], pub, capsys)
    sig = tmp_path / "model.sig"
    _refused_then_forced(
        ["sign", str(model), "--key", "release", "--signature", str(sig)], sig, capsys
    )
    report = tmp_path / "scan.json"
    _refused_then_forced(["scan", str(model), "-f", "json", "-o", str(report)], report, capsys)
    _refused_then_forced(  # the Typer command, not the fast path
        ["-q", "scan", str(model), "--fail-on", "high", "-f", "json", "-o", str(report)],
        report,
        capsys,
    )
    bom = tmp_path / "bom.json"
    _refused_then_forced(["bom", str(model), "-o", str(bom)], bom, capsys)
    table = tmp_path / "t.csv"
    table.write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    manifest = tmp_path / "t.manifest.json"
    _refused_then_forced(["data", "manifest", str(table), "-o", str(manifest)], manifest, capsys)
    posture = tmp_path / "posture.html"
    _refused_then_forced(["report", "-o", str(posture)], posture, capsys)


def test_every_writer_makes_the_folder_of_its_output_and_the_next_command_reads_it(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o reports/2026 Q1/scan.json` in a fresh checkout: the folder is made before the
    work (a scan or a check never ends by failing to write what it found)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"layers": 2}\n')
    out = tmp_path / "new folder" / "ünï"
    assert main(["keys", "generate", "release"]) == 0
    assert main(["keys", "export-public", "release", "-o", str(out / "keys" / "r.pub")]) == 0
    assert (
        main(["sign", str(model), "--key", "release", "--signature", str(out / "s" / "m.sig")]) == 0
    )
    verify = ["verify", str(model), "--signature", str(out / "s" / "m.sig")]
    assert main([*verify, "--public-key", str(out / "keys" / "r.pub")]) == 0
    assert main(["scan", str(model), "-f", "json", "-o", str(out / "scan" / "fast.json")]) == 0
    typer_scan = ["-q", "scan", str(model), "--fail-on", "high", "-f", "sarif"]
    assert main([*typer_scan, "-o", str(out / "scan" / "typer.sarif")]) == 0
    assert main(["bom", str(model), "-o", str(out / "bom" / "bom.json")]) == 0
    table = tmp_path / "t.csv"
    table.write_text("a,b,label\n" + "".join(f"{i},{i * i % 7},{i % 2}\n" for i in range(30)))
    manifest = out / "manifests" / "t.json"
    assert main(["data", "manifest", str(table), "-o", str(manifest)]) == 0
    assert main(["data", "verify", str(manifest), "--data", str(table)]) == 0
    check = ["data", "check", str(table), "--label-column", "label", "--detector", "outliers"]
    assert main([*check, "-f", "json", "-o", str(out / "checks" / "t.json")]) == 0
    profile = ["gateway", "profile", str(table), "--drop", "label"]
    assert main([*profile, "-o", str(out / "gateway" / "profile.json")]) == 0
    keys = out / "gateway" / "keys" / "keys.json"
    assert main(["gateway", "key", "app", "--principal", "alice", "--file", str(keys)]) == 0
    head = out / "audit" / "head.json"
    assert main(["audit", "checkpoint", "--head", str(head)]) == 0
    assert main(["audit", "export", "-o", str(out / "audit" / "export" / "ledger.jsonl")]) == 0
    assert main(["audit", "verify", "--head", str(head)]) == 0
    assert main(["report", "-o", str(out / "report" / "posture.html")]) == 0
    capsys.readouterr()
    # a folder where a file stands is a clear error, not a traceback
    (tmp_path / "blocked").write_text("a file")
    assert main(["bom", str(model), "-o", str(tmp_path / "blocked" / "bom.json")]) == 2
    assert "cannot create the folder" in capsys.readouterr().err
