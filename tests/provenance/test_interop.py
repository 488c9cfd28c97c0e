"""Interoperability with OpenSSF model signing (``model-signing`` 1.1.1), both ways.

A Donjon bundle verifies with model_signing, a model_signing bundle verifies
with Donjon, and both reject each tampering case.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import model_signing  # the peer, pinned in the test extra: a missing peer fails, not skips
import pytest
from cryptography.exceptions import InvalidSignature

from donjon.provenance import (
    CertificateTrust,
    FileKeySigner,
    KeyTrust,
    SignatureMismatch,
    sign_model,
    verify_model,
)
from donjon.provenance.certs import CertificateSigner, load_certificates
from donjon.provenance.keys import load_private_key, load_public_key
from tests.provenance.pki import Pki, make_model, make_pki, write_key, write_public


def tamper_change(model: Path, sig: Path, tmp: Path) -> None:
    data = bytearray((model / "weights.bin").read_bytes())
    data[10] ^= 1
    (model / "weights.bin").write_bytes(bytes(data))


def tamper_delete(model: Path, sig: Path, tmp: Path) -> None:
    (model / "tokenizer.txt").unlink()


def tamper_add(model: Path, sig: Path, tmp: Path) -> None:
    (model / "sub" / "payload.pkl").write_bytes(b"\x80\x04N.")


def tamper_signature(model: Path, sig: Path, tmp: Path) -> None:
    bundle = json.loads(sig.read_text())
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-2] ^= 0x01
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(bundle))


def tamper_payload(model: Path, sig: Path, tmp: Path) -> None:
    bundle = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"].pop()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(bundle))


TAMPERING: dict[str, Callable[[Path, Path, Path], None]] = {
    "changed file": tamper_change,
    "missing file": tamper_delete,
    "extra file": tamper_add,
    "corrupted signature": tamper_signature,
    "altered manifest": tamper_payload,
}


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    write_public(tmp_path / "pub.pem", write_key(tmp_path / "key.pem"))
    return tmp_path / "key.pem", tmp_path / "pub.pem"


def peer_sign_key(model: Path, key: Path, sig: Path) -> None:
    model_signing.signing.Config().use_elliptic_key_signer(private_key=key).sign(model, sig)


def peer_verify_key(model: Path, pub: Path, sig: Path) -> None:
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(model, sig)


def test_donjon_bundle_verifies_with_model_signing(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    model = make_model(tmp_path / "model")
    sign_model(model, FileKeySigner.from_file(keys[0]), tmp_path / "dj.sig")
    peer_verify_key(model, keys[1], tmp_path / "dj.sig")


def test_model_signing_bundle_verifies_with_donjon(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    model = make_model(tmp_path / "model")
    peer_sign_key(model, keys[0], tmp_path / "ms.sig")
    ours = verify_model(model, tmp_path / "ms.sig", KeyTrust(load_public_key(keys[1])))
    theirs = model_signing.hashing.Config().hash(model)
    assert ours.manifest.digests() == {
        rd.identifier: rd.digest.digest_hex for rd in theirs.resource_descriptors()
    }


def test_subject_digests_agree_for_the_same_model(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    model = make_model(tmp_path / "model")
    peer_sign_key(model, keys[0], tmp_path / "ms.sig")
    ours = sign_model(model, FileKeySigner.from_file(keys[0]), tmp_path / "dj.sig")

    def subject(sig: Path) -> str:
        payload = json.loads(sig.read_text())["dsseEnvelope"]["payload"]
        return str(json.loads(base64.b64decode(payload))["subject"][0]["digest"]["sha256"])

    assert subject(tmp_path / "ms.sig") == subject(tmp_path / "dj.sig") == ours.subject_digest


@pytest.mark.parametrize("case", sorted(TAMPERING))
@pytest.mark.parametrize("signed_by", ["donjon", "model_signing"])
def test_both_reject_every_tampering_case(
    tmp_path: Path, keys: tuple[Path, Path], case: str, signed_by: str
) -> None:
    model = make_model(tmp_path / "model")
    sig = tmp_path / "model.sig"
    if signed_by == "donjon":
        sign_model(model, FileKeySigner.from_file(keys[0]), sig)
    else:
        peer_sign_key(model, keys[0], sig)
    TAMPERING[case](model, sig, tmp_path)
    with pytest.raises(SignatureMismatch):
        verify_model(model, sig, KeyTrust(load_public_key(keys[1])))
    # model_signing raises ValueError, or cryptography's InvalidSignature for a bad signature
    with pytest.raises((ValueError, InvalidSignature)):
        peer_verify_key(model, keys[1], sig)


@pytest.mark.parametrize("signed_by", ["donjon", "model_signing"])
def test_both_reject_a_wrong_key(tmp_path: Path, keys: tuple[Path, Path], signed_by: str) -> None:
    model = make_model(tmp_path / "model")
    sig = tmp_path / "model.sig"
    if signed_by == "donjon":
        sign_model(model, FileKeySigner.from_file(keys[0]), sig)
    else:
        peer_sign_key(model, keys[0], sig)
    other = write_public(tmp_path / "o.pub", write_key(tmp_path / "o.key"))
    with pytest.raises(SignatureMismatch, match="key mismatch"):
        verify_model(model, sig, KeyTrust(load_public_key(other)))
    with pytest.raises(ValueError, match="Key mismatch"):
        peer_verify_key(model, other, sig)


def _certificate_pair(tmp_path: Path) -> tuple[Pki, Pki]:
    return make_pki(tmp_path, "ca"), make_pki(tmp_path, "other")


@pytest.mark.parametrize("signed_by", ["donjon", "model_signing"])
def test_certificate_bundles_interoperate(tmp_path: Path, signed_by: str) -> None:
    pki, other = _certificate_pair(tmp_path)
    model = make_model(tmp_path / "model")
    sig = tmp_path / "cert.sig"
    if signed_by == "donjon":
        signer = CertificateSigner(
            load_private_key(pki.leaf_key), pki.leaf, load_certificates([pki.ca_pem])
        )
        sign_model(model, signer, sig)
    else:
        model_signing.signing.Config().use_certificate_signer(
            private_key=pki.leaf_key,
            signing_certificate=pki.leaf_pem,
            certificate_chain=[pki.ca_pem],
        ).sign(model, sig)
    peer = model_signing.verifying.Config()
    peer.use_certificate_verifier(certificate_chain=[pki.ca_pem]).verify(model, sig)
    verify_model(model, sig, CertificateTrust(load_certificates([pki.ca_pem])))
    # another CA: both refuse
    with pytest.raises(SignatureMismatch, match="does not chain"):
        verify_model(model, sig, CertificateTrust(load_certificates([other.ca_pem])))
    with pytest.raises(Exception, match="certificate"):
        model_signing.verifying.Config().use_certificate_verifier(
            certificate_chain=[other.ca_pem]
        ).verify(model, sig)
    # a changed file after a certificate signature: both refuse
    tamper_change(model, sig, tmp_path)
    with pytest.raises(SignatureMismatch, match=r"weights\.bin"):
        verify_model(model, sig, CertificateTrust(load_certificates([pki.ca_pem])))
    with pytest.raises(ValueError, match=r"weights\.bin"):
        peer.verify(model, sig)


def test_the_peer_cli_verifies_a_bundle_from_the_donjon_cli(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    from donjon.cli.main import main

    model = make_model(tmp_path / "model")
    sig = tmp_path / "model.sig"
    assert main(["sign", str(model), "--private-key", str(keys[0]), "--signature", str(sig)]) == 0
    cli = shutil.which("model_signing") or str(Path(sys.executable).parent / "model_signing")
    done = subprocess.run(
        [cli, "verify", "key", str(model), "--signature", str(sig), "--public_key", str(keys[1])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verification succeeded" in done.stdout


@pytest.mark.parametrize("signed_by", ["donjon", "model_signing"])
def test_shard_serialization_interoperates(
    tmp_path: Path, keys: tuple[Path, Path], signed_by: str
) -> None:
    from donjon.provenance import HashOptions

    model = make_model(tmp_path / "model", big=250_000)
    sig = tmp_path / "shards.sig"
    if signed_by == "donjon":
        options = HashOptions(method="shards", shard_size=100_000)
        sign_model(model, FileKeySigner.from_file(keys[0]), sig, options)
    else:
        hashing = model_signing.hashing.Config().use_shard_serialization(shard_size=100_000)
        signing = model_signing.signing.Config().use_elliptic_key_signer(private_key=keys[0])
        signing.set_hashing_config(hashing).sign(model, sig)
    # model_signing 1.1.1 writes shard_size as a float (100000.0) and then cannot guess
    # the serialization from its own bundle, so its verifier is told it; ours is not.
    peer = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=keys[1])
    peer.set_hashing_config(
        model_signing.hashing.Config().use_shard_serialization(shard_size=100_000)
    )
    peer.verify(model, sig)
    verified = verify_model(model, sig, KeyTrust(load_public_key(keys[1])))
    assert "weights.bin:200000:250000" in verified.manifest.digests()
    tamper_change(model, sig, tmp_path)
    with pytest.raises(SignatureMismatch, match=r"weights\.bin:0:100000"):
        verify_model(model, sig, KeyTrust(load_public_key(keys[1])))
    with pytest.raises(ValueError, match=r"weights\.bin:0:100000"):
        peer.verify(model, sig)


@pytest.mark.parametrize("signed_by", ["donjon", "model_signing"])
def test_blake3_bundles_interoperate(
    tmp_path: Path, keys: tuple[Path, Path], signed_by: str
) -> None:
    from donjon.provenance import HashOptions

    model = make_model(tmp_path / "model")
    sig = tmp_path / "b3.sig"
    if signed_by == "donjon":
        sign_model(model, FileKeySigner.from_file(keys[0]), sig, HashOptions(algorithm="blake3"))
    else:
        hashing = model_signing.hashing.Config().use_file_serialization(hashing_algorithm="blake3")
        signing = model_signing.signing.Config().use_elliptic_key_signer(private_key=keys[0])
        signing.set_hashing_config(hashing).sign(model, sig)
    peer_verify_key(model, keys[1], sig)
    verify_model(model, sig, KeyTrust(load_public_key(keys[1])))
    tamper_change(model, sig, tmp_path)
    with pytest.raises(SignatureMismatch, match=r"weights\.bin"):
        verify_model(model, sig, KeyTrust(load_public_key(keys[1])))
    with pytest.raises(ValueError, match=r"weights\.bin"):
        peer_verify_key(model, keys[1], sig)
