"""Files saved by Windows editors (Notepad's byte-order mark, CRLF; PowerShell 5's UTF-16)
are read as the same settings and policies: the demo's own files, re-saved, feed the
commands that read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.cli.main import main


def _resave(path: Path, encoding: str) -> None:
    text = path.read_text(encoding="utf-8").replace("\n", "\r\n")
    path.write_bytes(text.encode(encoding))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_settings_and_policies_saved_by_windows_editors(
    encoding: str, workdir: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path = workdir
    assert main(["demo", str(tmp_path)]) == 0
    for name in ("sources.toml", "policy.toml", "gateway.toml", "policies.cedar"):
        _resave(tmp_path / name, encoding)
    donjon_home.mkdir(exist_ok=True)
    (donjon_home / "config.toml").write_bytes('[scan]\r\nfail_on = "high"\r\n'.encode(encoding))
    capsys.readouterr()

    assert main(["-f", "json", "config", "show"]) == 0
    assert '"fail_on": "high"' in capsys.readouterr().out
    split = ["data", "filter", str(tmp_path / "train.csv"), "--source-column", "source"]
    assert main([*split, "--policy", str(tmp_path / "sources.toml"), "-o", "split"]) == 0
    assert "admitted: 360  quarantined: 40" in capsys.readouterr().out
    assert main(["access", "policy", "check", str(tmp_path / "policies.cedar")]) == 0
    assert "2 policies valid" in capsys.readouterr().out
    profile = tmp_path / "profile.json"
    table = ["gateway", "profile", str(tmp_path / "train.csv"), "--drop", "label"]
    assert main([*table, "--drop", "source", "-o", str(profile)]) == 0
    keys = tmp_path / "keys.json"
    assert main(["gateway", "key", "app", "--principal", "alice", "--file", str(keys)]) == 0
    _resave(keys, encoding)  # an administrator looked at it in Notepad
    assert main(["gateway", "key", "ci", "--principal", "ci", "--file", str(keys)]) == 0
    _resave(keys, encoding)
    config = (tmp_path / "gateway.toml").read_bytes().decode(encoding)
    config = config.replace("vault_identities = true", f'api_keys_file = "{keys.name}"')
    (tmp_path / "gateway.toml").write_bytes(config.encode(encoding))
    assert main(["gateway", "--config", str(tmp_path / "gateway.toml"), "--check"]) == 0
    assert "gateway config OK" in capsys.readouterr().out

    model = tmp_path / "model"
    assert main(["keys", "generate", "release"]) == 0
    assert main(["keys", "export-public", "release", "-o", str(tmp_path / "release.pub")]) == 0
    assert main(["sign", str(model), "--key", "release", "--signature", "model.sig"]) == 0
    assert main(["scan", str(model), "-f", "json", "-o", "scan.json"]) == 0
    verify = ["verify", str(model), "--policy", str(tmp_path / "policy.toml")]
    capsys.readouterr()
    assert main([*verify, "--signature", "model.sig", "--scan-result", "scan.json"]) == 0
    assert "Policy passed" in capsys.readouterr().out
