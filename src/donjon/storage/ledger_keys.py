"""Signing keys of the ledger (the ``KeyProvider`` port), ECDSA P-256.

:class:`LedgerKey` is the server's: one key, its id derived from the public
key, registered in the database, never created by a process when the
database already names another. :class:`FileKeyProvider` keeps named keys in
a folder: ``<keys dir>/<key id>.key.pem`` (PKCS#8, mode 0600, created on
first use, folder 0700) with the public half in ``<key id>.pub.pem``.
A private key is never logged, printed or returned.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

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


def key_id_of(public_key_pem: bytes) -> str:
    """A checkpoint key's id: SHA-256 of its DER SubjectPublicKeyInfo, 64 hex characters."""
    key = serialization.load_pem_public_key(public_key_pem)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


class KeyRegistry(Protocol):
    """Where the ledger's public keys are registered (``SqlLedgerStore``)."""

    def public_keys(self) -> dict[str, bytes]: ...

    def register_key(self, key_id: str, public_key_pem: bytes, *, first: bool = False) -> bool: ...


class LedgerKey:
    """The ledger's one signing key, checked against the keys the database registers.

    A ``KeyProvider`` with a single id, derived from the public key. The
    private key comes from ``$<env>`` (PEM text), else ``key_file``, else
    ``default_file``; it is looked up on first use (``verify`` never needs it).
    A key is created (``default_file``, 0600) only when none is configured
    and the database registers none; a process whose key is not the
    registered one refuses to sign instead of forking the ledger's identity.
    """

    def __init__(
        self,
        registry: KeyRegistry,
        *,
        default_file: Path,
        key_file: Path | None = None,
        env: str = "DONJON_LEDGER_KEY",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._registry = registry
        self._default = default_file
        self._file = key_file
        self._env = env
        self._environ = os.environ if environ is None else environ
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._id = ""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LedgerKey({self._id[:16] or 'not loaded'})"

    # -- the KeyProvider port ---------------------------------------------------

    def key_ids(self) -> list[str]:
        self._load()
        return [self._id]

    def public_key_pem(self, key_id: str) -> bytes:
        return _public_pem(self._checked(key_id))

    def sign(self, key_id: str, data: bytes) -> bytes:
        return self._checked(key_id).sign(data, ec.ECDSA(hashes.SHA256()))

    # -- loading and registration ---------------------------------------------

    def register(self) -> str:
        """Register this process's key even though the database names others (rotation)."""
        key, source = self._read()
        if key is None:
            raise ConfigError(f"no ledger key to register: {source}")
        pem = _public_pem(key)
        key_id = key_id_of(pem)
        self._registry.register_key(key_id, pem)
        return key_id

    def _checked(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        key = self._load()
        if key_id != self._id:
            raise StorageError(f"no ledger key {key_id[:16]!r} (this process has {self._id[:16]})")
        return key

    def _load(self) -> ec.EllipticCurvePrivateKey:
        with self._lock:
            if self._key is None:
                self._key = self._resolve()
                self._id = key_id_of(_public_pem(self._key))
            return self._key

    def _resolve(self) -> ec.EllipticCurvePrivateKey:
        registered = self._registry.public_keys()
        key, source = self._read()
        if key is None:
            if registered:
                raise ConfigError(
                    f"the database registers ledger key(s) {_ids(registered)} and this process "
                    f"has no private key ({source}): give it that key through audit.key_file or "
                    f"${self._env} (a process never creates its own when the database names one)"
                )
            return self._create()
        pem = _public_pem(key)
        key_id = key_id_of(pem)
        if key_id in registered:
            return key
        if pem in registered.values():  # registered under a name, before ids were derived
            self._registry.register_key(key_id, pem)
            return key
        if self._registry.register_key(key_id, pem, first=True):
            return key
        raise ConfigError(
            f"the ledger key of this process ({key_id[:16]}, from {source}) is not the one "
            f"the database registers ({_ids(self._registry.public_keys())}): replicas must "
            "share one ledger key (docs/audit.md); to add this key on purpose, run "
            "`donjon audit keys --register`"
        )

    def _read(self) -> tuple[ec.EllipticCurvePrivateKey | None, str]:
        """The configured private key and where it came from, or None and why not."""
        text = self._environ.get(self._env)
        if text:
            return _parse(text.encode("utf-8"), f"${self._env}"), f"${self._env}"
        path = self._file or self._default
        if not path.exists():
            if self._file is not None:
                raise ConfigError(f"audit.key_file {path} does not exist")
            return None, f"no ${self._env}, no audit.key_file, no {path}"
        try:
            if path.stat().st_mode & 0o077:
                raise StorageError(f"signing key {path} is readable by others: chmod 600 it")
            return _parse(path.read_bytes(), str(path)), str(path)
        except OSError as e:
            raise StorageError(f"cannot read ledger key {path}: {e}") from e

    def _create(self) -> ec.EllipticCurvePrivateKey:
        """First process on an empty database: make the key, keep it, then register it.

        Replicas starting at once on one home folder race here: the key file is
        written under a unique name and linked into place, so exactly one process
        creates it and the others read that one (and register the same key, which
        is idempotent). Replicas with separate folders each create one: the first
        to register wins, and the others remove theirs and refuse to start.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        created = self._keep(key)
        if not created:  # another process of this home created it first: use that one
            found, source = self._read()
            if found is None:
                raise StorageError(f"the ledger key {source} vanished while starting")
            key = found
        pem = _public_pem(key)
        if not self._registry.register_key(key_id_of(pem), pem, first=True):
            if created:  # never registered: leave no key behind that the database does not name
                self._default.unlink(missing_ok=True)
                self._public_file().unlink(missing_ok=True)
            winner = _ids(self._registry.public_keys())
            raise ConfigError(
                f"another process registered its ledger key first ({winner}): give this "
                f"process that key (audit.key_file or ${self._env}); replicas must share one"
            )
        if created:
            log.warning(
                "created the ledger signing key %s (id %s)", self._default, key_id_of(pem)[:16]
            )
        return key

    def _public_file(self) -> Path:
        return self._default.with_name(self._default.name.replace(".key.pem", ".pub.pem"))

    def _keep(self, key: ec.EllipticCurvePrivateKey) -> bool:
        """Write ``key`` to the default file, whole or not at all; False if one is there."""
        folder = self._default.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        partial = folder / f".{self._default.name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(private)
                out.flush()
                os.fsync(out.fileno())
            os.link(partial, self._default)
        except FileExistsError:
            return False
        finally:
            partial.unlink(missing_ok=True)
        self._public_file().write_bytes(_public_pem(key))
        return True


def _public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _parse(data: bytes, source: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"ledger key from {source} is not an unencrypted PEM private key") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"ledger key from {source} is not an ECDSA P-256 key")
    return key


def _ids(keys: Mapping[str, bytes]) -> str:
    return ", ".join(k[:16] for k in keys) or "none"
