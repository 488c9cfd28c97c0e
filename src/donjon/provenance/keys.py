"""Signing keys: PEM loading, the curves OMS accepts, and a local key store.

OMS (``model-signing`` 1.1.1) accepts only ECDSA keys on P-256, P-384 and
P-521, hashed with SHA-256, SHA-384 and SHA-512 respectively; Donjon signs with
the same rule so each side verifies the other's signatures.

:class:`LocalKeyProvider` implements :class:`donjon.core.ports.KeyProvider`
over a folder (``$DONJON_HOME/keys``): ``<id>.key.pem`` (mode 0600, optionally
encrypted with a passphrase) and ``<id>.pub.pem``. Private material never
leaves the provider: it signs bytes and hands out public keys only. A KMS or
PKCS#11 provider implements the same three methods.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.core.ports import KeyProvider
from donjon.errors import InputError
from donjon.provenance.errors import SigningError

CURVES: dict[str, type[ec.EllipticCurve]] = {
    "p256": ec.SECP256R1,
    "p384": ec.SECP384R1,
    "p521": ec.SECP521R1,
}
_HASH_BY_SIZE: dict[int, type[hashes.HashAlgorithm]] = {
    256: hashes.SHA256,
    384: hashes.SHA384,
    521: hashes.SHA512,
}
KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def curve_hash(public_key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    """The hash OMS pairs with the key's curve; SigningError for other curves."""
    check_curve(public_key)
    return _HASH_BY_SIZE[public_key.curve.key_size]()


def check_curve(public_key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise SigningError(
            f"unsupported key type {type(public_key).__name__}: OMS signatures need an "
            "ECDSA key on P-256, P-384 or P-521"
        )
    if public_key.curve.key_size not in _HASH_BY_SIZE:
        raise SigningError(f"unsupported curve {public_key.curve.name}: use P-256, P-384 or P-521")
    return public_key


def public_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """OMS ``publicKey.hint``: SHA-256 hex of the PEM SubjectPublicKeyInfo."""
    return hashlib.sha256(public_pem(public_key)).hexdigest()


def load_private_key(path: Path, passphrase: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PEM private key; the error never echoes key material."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SigningError(f"cannot read private key {path}: {e.strerror}") from e
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except TypeError as e:
        hint = "needs a passphrase" if passphrase is None else "is not encrypted"
        raise SigningError(f"private key {path} {hint}") from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise SigningError(f"{path} is not a PEM private key, or the passphrase is wrong") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SigningError(f"{path}: OMS signatures need an ECDSA key on P-256, P-384 or P-521")
    check_curve(key.public_key())
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read public key {path}: {e.strerror}") from e
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InputError(f"{path} is not a PEM public key") from e
    try:
        return check_curve(key)
    except SigningError as e:
        raise InputError(f"{path}: {e}") from e


def generate_private_key(curve: str = "p256") -> ec.EllipticCurvePrivateKey:
    try:
        return ec.generate_private_key(CURVES[curve]())
    except KeyError:
        raise InputError(f"unknown curve {curve!r}; use one of {', '.join(CURVES)}") from None


def private_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the first byte; refuse to overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def sign_bytes(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """DER ECDSA signature over ``data`` with the curve's OMS hash."""
    return key.sign(data, ec.ECDSA(curve_hash(key.public_key())))


class LocalKeyProvider:
    """Keys in a folder; implements ``donjon.core.ports.KeyProvider``.

    ``passphrase`` is called with a key id when an encrypted key must be opened.
    """

    def __init__(
        self, folder: Path, passphrase: Callable[[str], bytes | None] | None = None
    ) -> None:
        self.folder = folder
        self._passphrase = passphrase

    def _private_path(self, key_id: str) -> Path:
        if not KEY_ID.match(key_id):
            raise InputError(f"invalid key id {key_id!r}: letters, digits, '.', '_', '-'")
        return self.folder / f"{key_id}.key.pem"

    def public_path(self, key_id: str) -> Path:
        self._private_path(key_id)
        return self.folder / f"{key_id}.pub.pem"

    def generate(self, key_id: str, curve: str = "p256", passphrase: bytes | None = None) -> Path:
        """Create a key pair; returns the public key's path. Never overwrites."""
        private_path = self._private_path(key_id)
        if private_path.exists() or self.public_path(key_id).exists():
            raise InputError(f"key {key_id!r} already exists in {self.folder}")
        key = generate_private_key(curve)
        write_secret(private_path, private_pem(key, passphrase))
        public_path = self.public_path(key_id)
        public_path.write_bytes(public_pem(key.public_key()))
        return public_path

    def key_ids(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name[: -len(".key.pem")] for p in self.folder.glob("*.key.pem"))

    def public_key_pem(self, key_id: str) -> bytes:
        path = self.public_path(key_id)
        if path.is_file():
            return path.read_bytes()
        return public_pem(self._load(key_id).public_key())

    def public_key(self, key_id: str) -> ec.EllipticCurvePublicKey:
        return self._load_public(key_id)

    def _load_public(self, key_id: str) -> ec.EllipticCurvePublicKey:
        key = serialization.load_pem_public_key(self.public_key_pem(key_id))
        return check_curve(key)

    def _load(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        path = self._private_path(key_id)
        if not path.is_file():
            raise InputError(f"no key {key_id!r} in {self.folder}")
        secret = self._passphrase(key_id) if self._passphrase else None
        return load_private_key(path, secret)

    def sign(self, key_id: str, data: bytes) -> bytes:
        return sign_bytes(self._load(key_id), data)


class FileKeySigner:
    """Signs with a PEM private key file (``--private-key``); the key stays in this object."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: Path, passphrase: bytes | None = None) -> FileKeySigner:
        return cls(load_private_key(path, passphrase))

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        return sign_bytes(self._key, data)

    def __repr__(self) -> str:  # never show key material
        return f"FileKeySigner({self._key.curve.name})"


class ProviderSigner:
    """Signs through a :class:`~donjon.core.ports.KeyProvider` (local folder, KMS, PKCS#11)."""

    def __init__(self, provider: KeyProvider, key_id: str) -> None:
        self._provider = provider
        self._key_id = key_id
        try:
            loaded = serialization.load_pem_public_key(provider.public_key_pem(key_id))
        except ValueError as e:
            raise SigningError(f"key provider returned a malformed public key for {key_id}") from e
        self.public_key = check_curve(loaded)

    def sign(self, data: bytes) -> bytes:
        return self._provider.sign(self._key_id, data)
