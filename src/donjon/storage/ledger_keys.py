"""The server's signing key on disk (the ``KeyProvider`` port), ECDSA P-256.

Each key is ``<keys dir>/<key id>.key.pem`` (PKCS#8, mode 0600, created on
first use, folder 0700) with its public half beside it in ``<key id>.pub.pem``.
The private key is never logged, printed or returned.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.errors import StorageError

KEY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class FileKeyProvider:
    def __init__(self, folder: Path, *, create: bool = True) -> None:
        self._folder = folder
        self._create = create
        self._loaded: dict[str, ec.EllipticCurvePrivateKey] = {}

    def __repr__(self) -> str:
        return f"FileKeyProvider({str(self._folder)!r})"

    def key_ids(self) -> list[str]:
        if not self._folder.is_dir():
            return []
        return sorted(p.name.removesuffix(".key.pem") for p in self._folder.glob("*.key.pem"))

    def _path(self, key_id: str, suffix: str) -> Path:
        if not KEY_ID.match(key_id):
            raise StorageError(f"bad key id {key_id!r}")
        return self._folder / f"{key_id}.{suffix}.pem"

    def _key(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        if key_id in self._loaded:
            return self._loaded[key_id]
        path = self._path(key_id, "key")
        try:
            if path.exists():
                if path.stat().st_mode & 0o077:
                    raise StorageError(f"signing key {path} is readable by others: chmod 600 it")
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
                if not isinstance(key, ec.EllipticCurvePrivateKey):
                    raise StorageError(f"signing key {path} is not an ECDSA key")
            elif self._create:
                key = self._generate(key_id, path)
            else:
                raise StorageError(f"no signing key {key_id!r} in {self._folder}")
        except (OSError, ValueError) as e:
            raise StorageError(f"cannot load signing key {key_id!r}: {e}") from e
        self._loaded[key_id] = key
        return key

    def _generate(self, key_id: str, path: Path) -> ec.EllipticCurvePrivateKey:
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Written under a unique name, then linked into place: another process
        # racing to create the key either wins whole or loses whole.
        partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            return self._key_from(path)
        finally:
            partial.unlink()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._path(key_id, "pub").write_bytes(public)
        return key

    @staticmethod
    def _key_from(path: Path) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise StorageError(f"signing key {path} is not an ECDSA key")
        return key

    def public_key_pem(self, key_id: str) -> bytes:
        return (
            self._key(key_id)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, key_id: str, data: bytes) -> bytes:
        return self._key(key_id).sign(data, ec.ECDSA(hashes.SHA256()))
