"""Keyless (Sigstore) signing and verification against a private instance, offline.

The instance (Fulcio CA, CT log, Rekor log) is made in code by
:mod:`tests.provenance.private_sigstore`; each bundle is checked by Donjon's CLI,
by sigstore-python's own ``Verifier`` and by model_signing's verifier.
``donjon sign --sigstore`` runs end to end against the instance's Fulcio and
Rekor served on loopback; against Sigstore's public instance it needs the
internet, which this machine lacks: there only its offline failure is tested
(a clear error, no signature file).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import model_signing  # the peer, pinned in the test extra
import pytest
from google.protobuf import json_format
from model_signing._signing.signing import Payload
from sigstore.models import Bundle as SigstoreBundle
from sigstore.models import TrustedRoot
from sigstore.verify import Verifier
from sigstore.verify.policy import Identity

from donjon.cli.main import main
from donjon.provenance.bundle import manifest_payload
from donjon.provenance.hashing import HashOptions, build_manifest
from tests.provenance.pki import make_model, make_pki
from tests.provenance.private_sigstore import PrivateSigstore, serving

ALICE = "alice@example.com"
ISSUER = "https://accounts.example.com"


@pytest.fixture(scope="module")
def instance() -> PrivateSigstore:
    return PrivateSigstore("private")


@pytest.fixture
def signed(tmp_path: Path, instance: PrivateSigstore) -> tuple[Path, Path, Path]:
    """(model, bundle, trusted_root.json): a model signed keylessly by Alice."""
    model = make_model(tmp_path / "model", big=4096)
    payload = manifest_payload(build_manifest(model, HashOptions()))
    return (
        model,
        _write(tmp_path / "model.sig", instance.sign(payload, ALICE, ISSUER)),
        _root(tmp_path, instance),
    )


def _write(path: Path, bundle: dict[str, Any]) -> Path:
    path.write_text(json.dumps(bundle), encoding="utf-8")
    return path


def _root(tmp_path: Path, instance: PrivateSigstore) -> Path:
    return instance.write_trusted_root(tmp_path / "trusted_root.json")


def _run(
    capsys: pytest.CaptureFixture[str],
    model: Path,
    sig: Path,
    root: Path,
    *,
    identity: str = ALICE,
    issuer: str = ISSUER,
) -> tuple[int, dict[str, Any]]:
    """``donjon verify`` with a keyless identity: its exit code and JSON answer."""
    args = ["--format", "json", "verify", str(model), "--signature", str(sig)]
    code = main([*args, "--identity", identity, "--issuer", issuer, "--trust-root", str(root)])
    return code, json.loads(capsys.readouterr().out)


def _codes(result: dict[str, Any]) -> list[str]:
    return [p["code"] for p in result["problems"]]


def test_a_keyless_bundle_verifies_offline_with_donjon_sigstore_and_model_signing(
    signed: tuple[Path, Path, Path],
    instance: PrivateSigstore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, sig, root = signed
    code, result = _run(capsys, model, sig, root)
    assert code == 0, result
    assert result["verified"] is True
    assert result["signer"] == f"{ALICE} (OIDC issuer {ISSUER}, Sigstore)"
    assert result["files"] == 3  # .git left out, as when hashing
    # sigstore-python's own verifier, on the same bytes
    bundle = SigstoreBundle.from_json(sig.read_text())
    verifier = Verifier(trusted_root=TrustedRoot.from_file(str(root)))
    kind, payload = verifier.verify_dsse(bundle, Identity(identity=ALICE, issuer=ISSUER))
    assert kind == "application/vnd.in-toto+json"
    assert json.loads(payload)["predicateType"] == "https://model_signing/signature/v1.0"
    # model_signing's keyless verifier, given the instance as its trust config
    config = instance.write_client_trust_config(tmp_path / "trust_config.json")
    model_signing.verifying.Config().use_sigstore_verifier(
        identity=ALICE, oidc_issuer=ISSUER, trust_config=config
    ).verify(model, sig)


def test_a_keyless_bundle_over_model_signings_own_statement_verifies_with_donjon(
    tmp_path: Path, instance: PrivateSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "model", big=4096)
    manifest = model_signing.hashing.Config().hash(model)
    statement = json_format.MessageToJson(Payload(manifest).statement.pb).encode()
    sig = _write(tmp_path / "ms.sig", instance.sign(statement, ALICE, ISSUER))
    code, result = _run(capsys, model, sig, _root(tmp_path, instance))
    assert code == 0, result


@pytest.mark.parametrize(
    ("who", "code", "says"),
    [
        (
            {"identity": "mallory@example.com"},
            "wrong-identity",
            f"names {ALICE}, not the expected identity 'mallory@example.com'",
        ),
        (
            {"issuer": "https://token.actions.githubusercontent.com"},
            "wrong-issuer",
            f"OIDC issuer is '{ISSUER}', not the expected",
        ),
    ],
)
def test_another_identity_or_issuer_fails(
    who: dict[str, str],
    code: str,
    says: str,
    signed: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    exit_code, result = _run(capsys, *signed, **who)
    assert exit_code == 1
    assert _codes(result) == [code]
    assert says in result["problems"][0]["message"]


def test_a_tampered_model_file_fails(
    signed: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, sig, root = signed
    (model / "sub" / "config.json").write_text('{"layers": 3}')
    code, result = _run(capsys, model, sig, root)
    assert code == 1
    assert _codes(result) == ["changed"]
    assert result["problems"][0]["path"] == "sub/config.json"


def test_a_certificate_from_another_ca_fails(
    signed: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _, root = signed
    rogue = PrivateSigstore("rogue")  # its own Fulcio, CT log and Rekor: not in the trust root
    payload = manifest_payload(build_manifest(model, HashOptions()))
    sig = _write(tmp_path / "rogue.sig", rogue.sign(payload, ALICE, ISSUER))
    code, result = _run(capsys, model, sig, root)
    assert code == 1
    assert _codes(result) == ["untrusted-certificate"]
    assert "does not come from the trust root's Fulcio CA" in str(result)


def test_a_certificate_expired_when_the_log_recorded_it_fails(
    tmp_path: Path, instance: PrivateSigstore, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "model", big=4096)
    payload = manifest_payload(build_manifest(model, HashOptions()))
    signed_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    late = signed_at + dt.timedelta(minutes=25)  # the certificate lived 10 minutes
    sig = _write(
        tmp_path / "late.sig",
        instance.sign(payload, ALICE, ISSUER, signed_at=signed_at, logged_at=late),
    )
    code, result = _run(capsys, model, sig, _root(tmp_path, instance))
    assert code == 1
    assert _codes(result) == ["expired-certificate"]
    assert "was not valid when the transparency log recorded the signature" in str(result)


def test_an_altered_log_entry_fails(
    signed: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, sig, root = signed
    bundle = json.loads(sig.read_text())
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)  # the promise covers it
    code, result = _run(capsys, model, _write(tmp_path / "moved.sig", bundle), root)
    assert code == 1
    assert _codes(result) == ["invalid-log-entry"]


def test_an_altered_payload_fails(
    signed: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, sig, root = signed
    bundle = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"].pop()  # drop a file from the signed manifest
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    code, result = _run(capsys, model, _write(tmp_path / "edited.sig", bundle), root)
    assert code == 1
    assert result["problems"], result


def test_a_keyless_bundle_is_not_mistaken_for_another_mode(
    signed: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, sig, _ = signed
    pki = make_pki(tmp_path)
    code = main(
        ["verify", str(model), "--signature", str(sig), "--certificate-chain", str(pki.ca_pem)]
    )
    assert code == 1
    assert "keyless (Sigstore) bundle: verify it with --identity and --issuer" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "extra",
    [
        ["--identity", ALICE],  # no issuer
        ["--issuer", ISSUER],  # no identity
        ["--identity", ALICE, "--issuer", ISSUER, "--public-key", "{root}"],
        ["--identity", ALICE, "--issuer", ISSUER, "--trust-root", "{root}", "--offline"],
        ["--identity", ALICE, "--issuer", ISSUER, "--trust-root", "{model}/tokenizer.txt"],
    ],
)
def test_keyless_usage_errors_exit_2(
    extra: list[str], signed: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, sig, root = signed
    args = [a.format(root=root, model=model) for a in extra]
    assert main(["verify", str(model), "--signature", str(sig), *args]) == 2
    assert capsys.readouterr().err.strip()


def _token(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_keyless_signing_offline_is_a_clear_error_and_writes_nothing(
    tmp_path: Path,
    instance: PrivateSigstore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = make_model(tmp_path / "model", big=64)
    config = instance.write_client_trust_config(tmp_path / "trust_config.json")
    sig = tmp_path / "model.sig"
    sign = [
        "sign",
        str(model),
        "--signature",
        str(sig),
        "--sigstore",
        "--trust-config",
        str(config),
    ]
    for name in ("SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    assert main(sign) == 2  # no identity token, and no terminal for a browser sign-in
    assert "needs an OIDC identity token" in capsys.readouterr().err
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": ALICE, "email": ALICE, "aud": "sigstore"}
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", _token({**claims, "iat": now, "exp": now + 600}))
    assert main(sign) == 2  # the instance's Fulcio is nowhere this machine can reach
    assert "keyless signing failed (is Sigstore reachable?)" in capsys.readouterr().err
    assert not sig.exists()
    assert not list(tmp_path.glob(".model.sig.*"))


def test_verify_files_checks_a_keyless_signature_too(
    tmp_path: Path,
    instance: PrivateSigstore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = make_model(tmp_path / "model", big=4096)
    payload = manifest_payload(build_manifest(model, HashOptions()))
    _write(model / "model.sig", instance.sign(payload, ALICE, ISSUER))
    root = _root(tmp_path, instance)
    monkeypatch.chdir(tmp_path)  # pre-commit runs hooks at the repository's root
    keyless = ["--identity", ALICE, "--issuer", ISSUER, "--trust-root", str(root)]
    assert main(["verify-files", "model/weights.bin", *keyless]) == 0
    assert f"signer {ALICE}" in capsys.readouterr().out
    (model / "weights.bin").write_bytes(b"swapped")
    assert main(["verify-files", "model/weights.bin", *keyless]) == 1
    assert "changed file 'weights.bin'" in capsys.readouterr().err


def test_keyless_signing_through_a_private_instance_round_trips(
    tmp_path: Path,
    instance: PrivateSigstore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``sign --sigstore`` end to end, with the instance's Fulcio and Rekor on loopback: the
    path that needs the network, given a network it can reach here."""
    model = make_model(tmp_path / "model", big=4096)
    sig = model / "model.sig"
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": ALICE, "email": ALICE, "aud": "sigstore"}
    monkeypatch.setenv("CI_OIDC_TOKEN", _token({**claims, "iat": now, "exp": now + 600}))
    with serving(instance) as url:
        config = instance.write_client_trust_config(tmp_path / "trust_config.json", url)
        args = ["sign", str(model), "--signature", str(sig), "--sigstore"]
        code = main([*args, "--trust-config", str(config), "--identity-token-env", "CI_OIDC_TOKEN"])
    assert code == 0, capsys.readouterr().err
    assert "Signing succeeded (keyless)" in capsys.readouterr().out
    bundle = json.loads(sig.read_text())
    assert set(bundle["verificationMaterial"]) >= {"certificate", "tlogEntries"}
    code, result = _run(capsys, model, sig, _root(tmp_path, instance))
    assert code == 0, result
    model_signing.verifying.Config().use_sigstore_verifier(
        identity=ALICE, oidc_issuer=ISSUER, trust_config=config
    ).verify(model, sig)
