"""Progress on long work: drawn on a terminal, silent off one and with --quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.cli.main import main


def _model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.safetensors").write_bytes(b"\0" * (4 << 20))
    return model


def test_sign_shows_progress_on_a_terminal_only(
    tmp_path: Path,
    donjon_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = _model(tmp_path)
    assert main(["keys", "generate", "release"]) == 0
    capsys.readouterr()
    argv = ["sign", str(model), "--key", "release", "--signature", str(tmp_path / "m.sig")]
    assert main(argv) == 0  # not a terminal: results only
    assert "signing model" not in capsys.readouterr().err
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich's own switch: standard error is a terminal
    assert main([*argv, "--force"]) == 0
    assert "signing model" in capsys.readouterr().err
    assert main(["--quiet", *argv, "--force"]) == 0
    assert "signing model" not in capsys.readouterr().err


def test_data_check_shows_progress_on_a_terminal_only(
    tmp_path: Path,
    donjon_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = tmp_path / "t.csv"
    table.write_text("a,b,label\n" + "".join(f"{i},{i * i % 7},{i % 2}\n" for i in range(40)))
    argv = ["data", "check", str(table), "--label-column", "label", "--detector", "outliers"]
    assert main(argv) in (0, 1)
    assert "check t.csv" not in capsys.readouterr().err
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert main(argv) in (0, 1)
    assert "check t.csv" in capsys.readouterr().err
