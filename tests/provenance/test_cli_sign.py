"""``donjon sign | verify | keys`` end to end through ``main([...])``."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.soc import read_events
from tests.provenance.pki import make_model, make_pki, write_key, write_public


@pytest.fixture
def model(tmp_path: Path) -> Path:
    write_public(tmp_path / "pub.pem", write_key(tmp_path / "key.pem"))
    return make_model(tmp_path / "model")


def test_sign_then_verify_with_a_key_file(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], donjon_home: Path
) -> None:
    sig = str(tmp_path / "model.sig")
    assert (
        main(["sign", str(model), "--private-key", str(tmp_path / "key.pem"), "--signature", sig])
        == 0
    )
    assert "Signing succeeded" in capsys.readouterr().out
    argv = ["-f", "json", "verify", str(model), "--signature", sig]
    assert main([*argv, "--public-key", str(tmp_path / "pub.pem")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] is True
    events = list(read_events(donjon_home / "events.jsonl"))
    assert [e.action for e in events] == ["provenance.sign", "provenance.verify"]
    assert events[0].attributes["subject_digest"] == out["subject_digest"]


def test_a_failed_verification_exits_1_and_is_a_finding(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], donjon_home: Path
) -> None:
    sig = str(tmp_path / "model.sig")
    main(["sign", str(model), "--private-key", str(tmp_path / "key.pem"), "--signature", sig])
    (model / "weights.bin").write_bytes(b"swapped")
    capsys.readouterr()
    rc = main(["verify", str(model), "--signature", sig, "--public-key", str(tmp_path / "pub.pem")])
    assert rc == 1
    assert "changed file 'weights.bin'" in capsys.readouterr().err
    findings = [e.finding for e in read_events(donjon_home / "events.jsonl") if e.finding]
    assert len(findings) == 1
    assert findings[0].rule.id == "DJ-SIG-002"
    assert findings[0].location.member == "weights.bin"
    assert "AML.T0010" in findings[0].rule.atlas
    assert set(findings[0].rule.mitigations) >= {"AML.M0013", "AML.M0014"}


def test_wrong_key_is_dj_sig_001(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], donjon_home: Path
) -> None:
    sig = str(tmp_path / "model.sig")
    main(["sign", str(model), "--private-key", str(tmp_path / "key.pem"), "--signature", sig])
    other = write_public(tmp_path / "o.pub", write_key(tmp_path / "o.key"))
    capsys.readouterr()
    assert (
        main(["-f", "json", "verify", str(model), "--signature", sig, "--public-key", str(other)])
        == 1
    )
    out = json.loads(capsys.readouterr().out)
    assert out["problems"][0]["code"] == "wrong-key"
    findings = [e.finding for e in read_events(donjon_home / "events.jsonl") if e.finding]
    assert [f.rule.id for f in findings] == ["DJ-SIG-001"]


def test_certificate_mode_on_the_command_line(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki, other = make_pki(tmp_path, "ca"), make_pki(tmp_path, "other")
    sig = str(tmp_path / "cert.sig")
    argv = ["sign", str(model), "--private-key", str(pki.leaf_key), "--signature", sig]
    argv += ["--signing-certificate", str(pki.leaf_pem), "--certificate-chain", str(pki.ca_pem)]
    assert main(argv) == 0
    verify = ["verify", str(model), "--signature", sig, "--certificate-chain"]
    assert main([*verify, str(pki.ca_pem)]) == 0
    assert "CN=model-release" in capsys.readouterr().out
    assert main([*verify, str(other.ca_pem)]) == 1
    assert "does not chain to a trusted certificate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["sign", "{model}", "--signature", "{tmp}/s"],
            "exactly one of --private-key, --key and --sigstore",
        ),
        (["sign", "{tmp}/nope", "--private-key", "{tmp}/key.pem"], "does not exist"),
        (["sign", "{model}", "--private-key", "{tmp}/pub.pem"], "not a PEM private key"),
        (["sign", "{model}", "--private-key", "{tmp}/key.pem", "--hash", "md5"], "sha256, blake3"),
        (
            ["verify", "{model}", "--signature", "{tmp}/none.sig", "--public-key", "{tmp}/pub.pem"],
            "does not exist",
        ),
        (["verify", "{model}", "--signature", "{tmp}/key.pem"], "exactly one of --public-key"),
        (
            ["verify", "{model}", "--signature", "{tmp}/key.pem", "--public-key", "{tmp}/key.pem"],
            "not a PEM public key",
        ),
    ],
)
def test_usage_errors_exit_2(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    args = [a.format(model=model, tmp=tmp_path) for a in argv]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_keys_generate_list_export_and_sign_with_the_store(
    model: Path,
    tmp_path: Path,
    donjon_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELEASE_PASSPHRASE", "correct horse")
    assert main(["keys", "generate", "release", "--passphrase-env", "RELEASE_PASSPHRASE"]) == 0
    private = donjon_home / "keys" / "release.key.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"ENCRYPTED" in private.read_bytes()
    assert main(["keys", "generate", "release"]) == 2  # never overwrites
    capsys.readouterr()
    assert main(["-f", "json", "keys", "list"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["key_id"] == "release"
    assert row["encrypted"] is True
    assert main(["keys", "export-public", "release", "-o", str(tmp_path / "rel.pub")]) == 0
    out = capsys.readouterr()
    assert "PRIVATE" not in out.out + out.err
    sig = str(tmp_path / "m.sig")
    sign = ["sign", str(model), "--key", "release", "--signature", sig]
    assert main(sign) == 2  # encrypted: no passphrase given
    failed = [e for e in read_events(donjon_home / "events.jsonl") if e.action == "provenance.sign"]
    assert [e.outcome.value for e in failed] == ["failure"]
    assert "needs a passphrase" in failed[0].message
    assert main([*sign, "--passphrase-env", "RELEASE_PASSPHRASE"]) == 0
    assert (
        main(["verify", str(model), "--signature", sig, "--public-key", str(tmp_path / "rel.pub")])
        == 0
    )
    events = (donjon_home / "events.jsonl").read_text()
    assert "PRIVATE KEY" not in events
    assert "correct horse" not in events


def test_a_missing_extra_is_a_clear_error() -> None:
    from donjon.cli.sign import require
    from donjon.errors import ConfigError

    require("cryptography", "sign")
    with pytest.raises(ConfigError, match=r"pip install 'donjon\[sign\]'"):
        require("no_such_module_for_donjon", "sign")
