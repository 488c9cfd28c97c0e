"""Configuration files are validated as documents; an error names its file or variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.cli.main import main


def test_sources_toml_with_a_string_for_a_list_is_refused(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.csv").write_text("a,source\n1,vendor\n2,other\n")
    (tmp_path / "sources.toml").write_text('[sources]\ntrusted = "vendor"\n')
    argv = ["data", "filter", str(tmp_path / "t.csv"), "--policy", str(tmp_path / "sources.toml"),
            "--source-column", "source", "-o", str(tmp_path / "split")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sources.trusted" in err
    assert "valid list" in err
    assert not (tmp_path / "split").exists()


def test_verification_policy_with_a_string_for_a_list_is_refused(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "a.json").write_text("{}")
    (tmp_path / "policy.toml").write_text(
        '[signature]\npublic_keys = "release.pub"\n[scan]\nrequired = "yes"\n'
    )
    argv = ["verify", str(tmp_path / "model"), "--policy", str(tmp_path / "policy.toml")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "signature.public_keys: Input should be a valid list" in err
    assert "scan.required" in err


def test_a_bad_environment_variable_is_named(
    tmp_path: Path,
    donjon_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "a.json").write_text("{}")
    monkeypatch.setenv("DONJON_SCAN__FAIL_ON", "loud")
    assert main(["scan", str(tmp_path / "a.json")]) == 2
    err = capsys.readouterr().err
    assert "DONJON_SCAN__FAIL_ON='loud'" in err
    assert "config.toml" not in err
