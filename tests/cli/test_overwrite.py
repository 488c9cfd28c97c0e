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
