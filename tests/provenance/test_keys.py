"""The key store and the KeyProvider port."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.core.ports import KeyProvider
from donjon.errors import InputError
from donjon.provenance import KeyTrust, ProviderSigner, SigningError, sign_model, verify_model
from donjon.provenance.keys import LocalKeyProvider, load_private_key, sign_bytes
from tests.provenance.pki import make_model


class MemoryProvider:
    """A stand-in for a KMS: the private key never leaves this object."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP384R1())

    def key_ids(self) -> list[str]:
        return ["kms-1"]

    def public_key_pem(self, key_id: str) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, key_id: str, data: bytes) -> bytes:
        return sign_bytes(self._key, data)


def test_local_provider_generates_private_keys_with_mode_0600(tmp_path: Path) -> None:
    provider: KeyProvider = LocalKeyProvider(tmp_path / "keys")
    assert isinstance(provider, LocalKeyProvider)
    provider.generate("ci", "p384", b"s3cret")
    assert provider.key_ids() == ["ci"]
    private = tmp_path / "keys" / "ci.key.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    with pytest.raises(SigningError, match="needs a passphrase"):
        provider.sign("ci", b"data")
    with pytest.raises(SigningError, match="passphrase is wrong"):
        load_private_key(private, b"wrong")
    unlocked = LocalKeyProvider(tmp_path / "keys", lambda _id: b"s3cret")
    assert unlocked.sign("ci", b"data")
    with pytest.raises(InputError, match="already exists"):
        unlocked.generate("ci")
    with pytest.raises(InputError, match="invalid key id"):
        unlocked.generate("../escape")


def test_any_provider_signs_models_through_the_port(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    provider = MemoryProvider()
    signer = ProviderSigner(provider, "kms-1")
    sign_model(model, signer, tmp_path / "m.sig")
    verify_model(model, tmp_path / "m.sig", KeyTrust(signer.public_key))
    assert "PRIVATE" not in repr(signer)
