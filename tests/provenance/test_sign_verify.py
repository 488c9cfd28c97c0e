"""Signing and native verification: every tampering case is named, file and reason."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.provenance import (
    CertificateTrust,
    FileKeySigner,
    KeyTrust,
    SignatureMismatch,
    SigningError,
    sign_model,
    verify_model,
)
from donjon.provenance.bundle import PREDICATE_TYPE
from donjon.provenance.certs import CertificateSigner, load_certificates
from donjon.provenance.keys import load_private_key, load_public_key
from tests.provenance.pki import make_model, make_pki, write_key, write_public


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, Path]:
    model = make_model(tmp_path / "model")
    write_public(tmp_path / "pub.pem", write_key(tmp_path / "key.pem"))
    signature = tmp_path / "model.sig"
    sign_model(model, FileKeySigner.from_file(tmp_path / "key.pem"), signature)
    return model, signature, tmp_path / "pub.pem"


def codes(e: pytest.ExceptionInfo[SignatureMismatch]) -> list[tuple[str, str | None]]:
    return [(p.code, p.path) for p in e.value.problems]


def test_bundle_has_the_oms_layout(signed: tuple[Path, Path, Path]) -> None:
    model, signature, pub = signed
    bundle = json.loads(signature.read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"]["tlogEntries"] == []
    assert len(bundle["verificationMaterial"]["publicKey"]["hint"]) == 64
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["subject"][0]["name"] == "model"
    assert statement["predicate"]["serialization"]["method"] == "files"
    result = verify_model(model, signature, KeyTrust(load_public_key(pub)))
    assert statement["subject"][0]["digest"]["sha256"] == result.subject_digest


def test_changed_missing_and_extra_files_are_each_named(
    signed: tuple[Path, Path, Path],
) -> None:
    model, signature, pub = signed
    data = bytearray((model / "weights.bin").read_bytes())
    data[10] ^= 1
    (model / "weights.bin").write_bytes(bytes(data))
    (model / "tokenizer.txt").unlink()
    (model / "sub" / "evil.py").write_text("import os")
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, signature, KeyTrust(load_public_key(pub)))
    assert codes(e) == [
        ("extra", "sub/evil.py"),
        ("missing", "tokenizer.txt"),
        ("changed", "weights.bin"),
    ]
    assert "changed file 'weights.bin'" in str(e.value)


def test_ignore_unsigned_files_tolerates_only_additions(signed: tuple[Path, Path, Path]) -> None:
    model, signature, pub = signed
    (model / "README.md").write_text("added later")
    verify_model(model, signature, KeyTrust(load_public_key(pub)), ignore_unsigned_files=True)
    (model / "sub" / "config.json").write_text('{"layers": 3}')
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, signature, KeyTrust(load_public_key(pub)), ignore_unsigned_files=True)
    assert codes(e) == [("changed", "sub/config.json")]


def test_wrong_key_is_reported_as_a_key_mismatch(
    signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, signature, _ = signed
    other = write_public(tmp_path / "other.pub", write_key(tmp_path / "other.key"))
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, signature, KeyTrust(load_public_key(other)))
    assert codes(e) == [("wrong-key", None)]


def test_a_swapped_hint_still_fails_on_the_signature(
    signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, signature, _ = signed
    other = write_public(tmp_path / "other.pub", write_key(tmp_path / "other.key"))
    bundle = json.loads(signature.read_text())
    del bundle["verificationMaterial"]["publicKey"]["hint"]  # the hint is not trusted
    signature.write_text(json.dumps(bundle))
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, signature, KeyTrust(load_public_key(other)))
    assert codes(e) == [("bad-signature", None)]


@pytest.mark.parametrize("part", ["sig", "payload", "swap"])
def test_corrupted_or_swapped_signature_fails(
    signed: tuple[Path, Path, Path], tmp_path: Path, part: str
) -> None:
    model, signature, pub = signed
    bundle = json.loads(signature.read_text())
    envelope = bundle["dsseEnvelope"]
    if part == "sig":
        raw = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
        raw[-3] ^= 0x55
        envelope["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    elif part == "payload":
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["predicate"]["resources"][0]["digest"] = "00" * 32
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    else:  # the signature of another model signed with the same key
        other = make_model(tmp_path / "other")
        sign_model(other, FileKeySigner.from_file(tmp_path / "key.pem"), tmp_path / "o.sig")
        envelope["signatures"] = json.loads((tmp_path / "o.sig").read_text())["dsseEnvelope"][
            "signatures"
        ]
    signature.write_text(json.dumps(bundle))
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, signature, KeyTrust(load_public_key(pub)))
    assert codes(e) == [("bad-signature", None)]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"mediaType": "x"}',
        '{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}',
    ],
)
def test_malformed_signature_files_fail_closed(signed: tuple[Path, Path, Path], text: str) -> None:
    model, signature, pub = signed
    signature.write_text(text)
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, signature, KeyTrust(load_public_key(pub)))
    assert codes(e) == [("malformed-signature", None)]


def test_signature_inside_the_model_is_ignored(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    write_public(tmp_path / "pub.pem", write_key(tmp_path / "key.pem"))
    result = sign_model(model, FileKeySigner.from_file(tmp_path / "key.pem"), model / "model.sig")
    assert "model.sig" not in result.manifest.digests()
    assert "model.sig" in result.manifest.serialization["ignore_paths"]
    verify_model(model, model / "model.sig", KeyTrust(load_public_key(tmp_path / "pub.pem")))


def test_p384_keys_sign_with_sha384(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    key = write_key(tmp_path / "k.pem", ec.SECP384R1())
    sign_model(model, FileKeySigner.from_file(tmp_path / "k.pem"), tmp_path / "m.sig")
    verify_model(model, tmp_path / "m.sig", KeyTrust(key.public_key()))


def test_unsupported_keys_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "ed.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SigningError, match="ECDSA"):
        FileKeySigner.from_file(tmp_path / "ed.pem")


def test_certificate_chain_signing_and_untrusted_certificates(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    pki, other = make_pki(tmp_path, "ca"), make_pki(tmp_path, "other")
    signer = CertificateSigner(
        load_private_key(pki.leaf_key), pki.leaf, load_certificates([pki.ca_pem])
    )
    sign_model(model, signer, tmp_path / "c.sig")
    result = verify_model(
        model, tmp_path / "c.sig", CertificateTrust(load_certificates([pki.ca_pem]))
    )
    assert result.identity is not None
    assert result.identity.matches("ml@example.com")
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, tmp_path / "c.sig", CertificateTrust(load_certificates([other.ca_pem])))
    assert codes(e) == [("untrusted-certificate", None)]
    assert "CN=model-release" in str(e.value)


def test_a_leaf_that_may_not_sign_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "ca", leaf_can_sign=False)
    with pytest.raises(SigningError, match="not allowed to sign"):
        CertificateSigner(load_private_key(pki.leaf_key), pki.leaf)


def test_a_malformed_certificate_in_the_bundle_is_named(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    pki = make_pki(tmp_path, "ca")
    sign_model(
        model, CertificateSigner(load_private_key(pki.leaf_key), pki.leaf), tmp_path / "c.sig"
    )
    bundle = json.loads((tmp_path / "c.sig").read_text())
    bundle["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"] = (
        base64.b64encode(b"\x30\x03\x02\x01\x01").decode()
    )
    (tmp_path / "c.sig").write_text(json.dumps(bundle))
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, tmp_path / "c.sig", CertificateTrust(load_certificates([pki.ca_pem])))
    assert codes(e) == [("malformed-certificate", None)]


def test_the_signature_is_written_atomically(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    write_key(tmp_path / "key.pem")
    sign_model(model, FileKeySigner.from_file(tmp_path / "key.pem"), tmp_path / "out" / "m.sig")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.sig"]


def test_a_signed_but_unsupported_serialization_is_named(tmp_path: Path) -> None:
    from donjon.provenance.bundle import Bundle, manifest_payload
    from donjon.provenance.dsse import Envelope
    from donjon.provenance.hashing import Manifest, build_manifest
    from donjon.provenance.keys import key_hint

    model = make_model(tmp_path / "model")
    write_public(tmp_path / "pub.pem", write_key(tmp_path / "key.pem"))
    signer = FileKeySigner.from_file(tmp_path / "key.pem")
    real = build_manifest(model)
    serialization = {"method": "files", "hash_type": "md5", "allow_symlinks": False}
    odd = Manifest.of(real.model_name, real.items, serialization)
    envelope = Envelope.sign(signer, manifest_payload(odd))
    Bundle(envelope, key_hint=key_hint(signer.public_key)).write(tmp_path / "odd.sig")
    with pytest.raises(SignatureMismatch) as e:
        verify_model(model, tmp_path / "odd.sig", KeyTrust(load_public_key(tmp_path / "pub.pem")))
    assert codes(e) == [("unsupported", None)]


def test_resource_names_outside_the_model_are_never_read(tmp_path: Path) -> None:
    """A trusted but hostile manifest naming '../secret' only reports it missing."""
    from donjon.provenance.bundle import Bundle, manifest_payload
    from donjon.provenance.dsse import Envelope
    from donjon.provenance.hashing import Manifest, ManifestItem, build_manifest
    from donjon.provenance.keys import key_hint

    model = make_model(tmp_path / "model")
    (tmp_path / "secret").write_text("outside")
    write_public(tmp_path / "pub.pem", write_key(tmp_path / "key.pem"))
    signer = FileKeySigner.from_file(tmp_path / "key.pem")
    real = build_manifest(model)
    items = [*real.items, ManifestItem("../secret", "sha256", "00" * 32)]
    hostile = Manifest.of(real.model_name, items, real.serialization)
    envelope = Envelope.sign(signer, manifest_payload(hostile))
    Bundle(envelope, key_hint=key_hint(signer.public_key)).write(tmp_path / "h.sig")
    trust = KeyTrust(load_public_key(tmp_path / "pub.pem"))
    for only_signed in (False, True):
        with pytest.raises(SignatureMismatch) as e:
            verify_model(model, tmp_path / "h.sig", trust, ignore_unsigned_files=only_signed)
        assert codes(e) == [("missing", "../secret")]
